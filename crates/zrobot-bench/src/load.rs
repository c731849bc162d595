//! The load generator, run as a second process of the benchmark (`zrobot-bench
//! load`, hidden) so that the robot under test shares nothing with it but the
//! machine: N keep-alive connections, each sending one request after the
//! other for a while, then requests per second and latency percentiles as
//! one JSON line on stdout. The plan comes on stdin, so that the services'
//! secrets never show in a process list.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// One URL a connection sends its requests to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    pub url: String,
    /// Sent as `ZrobotSecret: Bearer <secret>`.
    pub secret: Option<String>,
}

/// What to send.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub connections: usize,
    pub seconds: f64,
    /// `GET` or `POST`.
    pub method: String,
    /// A JSON body, sent with `content-type: application/json`.
    pub body: Option<String>,
    /// The status every answer must have.
    pub status: u16,
    /// Connection `c` sends to `targets[c % len]`.
    pub targets: Vec<Target>,
}

/// What the load measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    /// Answers with the expected status, per target.
    pub accepted: Vec<u64>,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The `load` subcommand: reads a [`Plan`] on stdin, prints an [`Outcome`].
pub fn main() -> anyhow::Result<()> {
    crate::helper::serve("load", |plan: Plan| async move {
        if plan.targets.is_empty() || plan.connections == 0 {
            bail!("the load plan has no targets or no connections");
        }
        run(plan).await
    })
}

async fn run(plan: Plan) -> anyhow::Result<Outcome> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let method: reqwest::Method = plan.method.parse().context("bad method in the load plan")?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for c in 0..plan.connections {
        // A client each, holding one connection: N connections, as wrk's -c.
        let client = reqwest::Client::builder()
            .http1_only()
            .pool_max_idle_per_host(1)
            .build()
            .context("cannot make an HTTP client")?;
        let target = plan.targets[c % plan.targets.len()].clone();
        let (method, body, status, stop) =
            (method.clone(), plan.body.clone(), plan.status, stop.clone());
        handles.push(tokio::spawn(async move {
            let mut lat: Vec<u32> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let mut req = client.request(method.clone(), &target.url);
                if let Some(s) = &target.secret {
                    req = req.header(zrobot_client::SECRET_HEADER, format!("Bearer {s}"));
                }
                if let Some(b) = &body {
                    req = req
                        .header("content-type", "application/json")
                        .body(b.clone());
                }
                let t = Instant::now();
                let r = req
                    .send()
                    .await
                    .with_context(|| format!("{method} {}: no answer", target.url))?;
                let got = r.status().as_u16();
                let answer = r.bytes().await.unwrap_or_default();
                if got != status {
                    bail!(
                        "{method} {} answered {got}, not {status}: {}",
                        target.url,
                        String::from_utf8_lossy(&answer)
                    );
                }
                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            anyhow::Ok(lat)
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(plan.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut accepted = vec![0u64; plan.targets.len()];
    for (c, h) in handles.into_iter().enumerate() {
        let lat = h.await.context("a connection's task panicked")??;
        accepted[c % plan.targets.len()] += lat.len() as u64;
        all.extend(lat);
    }
    let took = start.elapsed().as_secs_f64();
    if all.is_empty() {
        bail!("no request was answered in {took:.1}s");
    }
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64 / 1000.0;
    Ok(Outcome {
        accepted,
        per_second: all.len() as f64 / took,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    })
}

/// Runs `plan` in a second process of this program and returns its outcome.
pub async fn in_child(plan: &Plan) -> anyhow::Result<Outcome> {
    let child = crate::helper::start("load", plan).await?;
    let out = child
        .wait_with_output()
        .await
        .context("the load process did not finish")?;
    if !out.status.success() {
        bail!(
            "the load process failed ({}); its error is above",
            out.status
        );
    }
    serde_json::from_slice(&out.stdout).context("the load process printed no outcome")
}
