//! What readers of the event stream cost task execution: the robot of this
//! process serves its API on loopback, and a second process of the benchmark
//! (`zrobot-bench subscribe`, hidden) follows `GET /events` with one stream
//! per service (`?service=`) and one of everything, while no-op tasks run.
//! Its tasks per second are compared with the same robot's without readers,
//! measured in the same run, before and after.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::local::{LocalRobot, StoreKind};

/// What the reading process is to follow.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub url: String,
    pub token: String,
    /// One stream each.
    pub services: Vec<String>,
    /// How many `task.finished` events each of `services` will see.
    pub finished_each: u64,
    /// Streams of every event.
    pub unfiltered: usize,
    /// The last event before the run: the streams start after it.
    pub after: Option<u64>,
}

/// What the readers saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Seen {
    /// Events missed by the one-service streams (their `gap` events).
    pub filtered_missed: u64,
    /// Events the one-service streams received.
    pub filtered_events: u64,
    /// Events missed by the streams of everything.
    pub unfiltered_missed: u64,
    pub unfiltered_events: u64,
}

/// One stream's counts.
#[derive(Default)]
struct Counts {
    events: AtomicU64,
    missed: AtomicU64,
    finished: AtomicU64,
}

/// Where `needle` starts in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// Counts one Server-Sent Event frame (comments are not events).
fn count_frame(frame: &[u8], counts: &Counts) -> anyhow::Result<()> {
    let mut kind: &[u8] = b"";
    let mut data: &[u8] = b"";
    for line in frame.split(|b| *b == b'\n') {
        if let Some(k) = line.strip_prefix(b"event: ") {
            kind = k;
        } else if let Some(d) = line.strip_prefix(b"data: ") {
            data = d;
        }
    }
    match kind {
        b"" => return Ok(()),
        b"task.finished" => {
            counts.finished.fetch_add(1, Ordering::Relaxed);
        }
        b"gap" => {
            let gap: zrobot_client::wire::StreamEvent =
                serde_json::from_slice(data).context("a gap event does not parse")?;
            counts
                .missed
                .fetch_add(gap.missed.unwrap_or(1), Ordering::Relaxed);
        }
        _ => {}
    }
    counts.events.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// How long the readers may take, after the tasks ended, to receive the
/// last events.
const DRAIN: Duration = Duration::from_secs(30);

/// The `subscribe` subcommand: reads a [`Plan`] on stdin, says `ready` once
/// every stream is open, follows them until every one-service stream has
/// seen its tasks finish, then prints what was seen as one JSON line.
pub fn main() -> anyhow::Result<()> {
    crate::helper::serve("subscribers'", follow)
}

async fn follow(plan: Plan) -> anyhow::Result<Seen> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .http1_only()
        .build()
        .context("cannot make an HTTP client")?;
    let mut streams = Vec::new();
    let wanted = plan
        .services
        .iter()
        .map(|s| Some(s.clone()))
        .chain(std::iter::repeat_n(None, plan.unfiltered));
    for service in wanted {
        // The benchmark's service names need no escaping.
        let url = match &service {
            Some(s) => format!("{}/events?service={s}", plan.url),
            None => format!("{}/events", plan.url),
        };
        let mut req = http.get(url).header(
            zrobot_client::ADMIN_HEADER,
            format!("Bearer {}", plan.token),
        );
        if let Some(after) = plan.after {
            req = req.header("last-event-id", after.to_string());
        }
        let response = req
            .send()
            .await
            .with_context(|| format!("cannot follow the events of {service:?}"))?;
        if !response.status().is_success() {
            bail!("GET /events of {service:?} answered {}", response.status());
        }
        streams.push((service, response));
    }
    println!("ready");
    let total = plan.finished_each * plan.services.len() as u64;
    let mut readers = Vec::new();
    let mut everything = Vec::new();
    for (service, mut response) in streams {
        let counts = Arc::new(Counts::default());
        let want = if service.is_some() {
            plan.finished_each
        } else {
            total
        };
        let task = {
            let counts = counts.clone();
            // Frames are counted by their `event:` line, as a load generator
            // reads answers: cheap, so that the readers leave the machine to
            // the robot. Only a gap's data is parsed, for its count.
            tokio::spawn(async move {
                let mut buffer: Vec<u8> = Vec::new();
                while counts.finished.load(Ordering::Relaxed) < want {
                    let Some(chunk) = response.chunk().await? else {
                        bail!("the event stream of {service:?} ended early");
                    };
                    buffer.extend_from_slice(&chunk);
                    let mut start = 0;
                    while let Some(end) = find(&buffer[start..], b"\n\n") {
                        count_frame(&buffer[start..start + end], &counts)?;
                        start += end + 2;
                    }
                    buffer.drain(..start);
                }
                anyhow::Ok(())
            })
        };
        if readers.len() < plan.services.len() {
            readers.push((task, counts));
        } else {
            everything.push((task, counts));
        }
    }
    // The one-service readers must see all their tasks finish; those of
    // everything too, unless they missed events (then they get a while).
    let mut seen = Seen::default();
    let deadline = tokio::time::Instant::now() + DRAIN;
    for (task, counts) in readers {
        tokio::time::timeout_at(deadline, task)
            .await
            .context("the one-service readers did not see their tasks finish in time")?
            .context("a reader panicked")??;
        seen.filtered_events += counts.events.load(Ordering::Relaxed);
        seen.filtered_missed += counts.missed.load(Ordering::Relaxed);
    }
    let grace = tokio::time::Instant::now() + Duration::from_secs(2);
    for (mut task, counts) in everything {
        match tokio::time::timeout_at(grace, &mut task).await {
            Ok(done) => done.context("a reader panicked")??,
            Err(_) => {
                task.abort();
                if counts.missed.load(Ordering::Relaxed) == 0 {
                    bail!("the reader of every event neither saw all tasks finish nor missed any");
                }
            }
        }
        seen.unfiltered_events += counts.events.load(Ordering::Relaxed);
        seen.unfiltered_missed += counts.missed.load(Ordering::Relaxed);
    }
    Ok(seen)
}

/// No-op tasks per second on one robot of this process with `n_services`
/// services, without readers then with them (one stream per service and one
/// of everything, in a second process), twice over:
/// `[with, without, with / without, the robot's CPU µs per task with and
/// without, the readers' CPU µs per task, events missed by one-service streams, events missed by the
/// stream of everything]`.
pub async fn tasks_with_subscribers(n_services: usize, n_tasks: usize) -> anyhow::Result<Vec<f64>> {
    let robot = LocalRobot::new(StoreKind::Sqlite)?;
    let services = robot.services("s", n_services).await?;
    let token = uuid::Uuid::new_v4().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on loopback")?;
    let url = format!("http://{}", listener.local_addr()?);
    let config = zrobot_api::ApiConfig {
        auth: zrobot_api::AuthConfig {
            god_token: Some(token.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(zrobot_api::serve(
        listener,
        robot.robot.clone(),
        config,
        async move {
            let _ = stopped.await;
        },
    ));
    let per_round = n_tasks / 2;
    let finished_each = (per_round / n_services) as u64;
    let per_round = finished_each as usize * n_services;
    let mut with = Vec::new();
    let mut without = Vec::new();
    let (mut cpu_with, mut cpu_without, mut cpu_readers) = (0.0, 0.0, 0.0);
    let mut seen = Seen::default();
    for _ in 0..2 {
        let cpu = cpu_seconds();
        without.push(robot.run_noops(&services, per_round).await?.per_second);
        cpu_without += cpu_seconds() - cpu;
        // The last tasks' events are published just after they count as
        // done: the readers start after them.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let plan = Plan {
            url: url.clone(),
            token: token.clone(),
            services: services.iter().map(|s| s.name.clone()).collect(),
            finished_each,
            unfiltered: 1,
            after: robot.robot.events().next_id().checked_sub(1),
        };
        let readers = Readers::start(&plan).await?;
        let cpu = cpu_seconds();
        with.push(robot.run_noops(&services, per_round).await?.per_second);
        cpu_with += cpu_seconds() - cpu;
        let children = children_cpu_seconds();
        let round = readers.finish().await?;
        cpu_readers += children_cpu_seconds() - children;
        // Scheduled, started and finished: three events a task.
        if round.filtered_events < 3 * per_round as u64 {
            bail!(
                "the one-service readers received {} events, fewer than the {} of their tasks",
                round.filtered_events,
                3 * per_round
            );
        }
        seen.filtered_missed += round.filtered_missed;
        seen.unfiltered_missed += round.unfiltered_missed;
    }
    let _ = stop.send(());
    server
        .await
        .context("the API task panicked")?
        .context("the API failed")?;
    let (with, without) = (
        with.iter().sum::<f64>() / 2.0,
        without.iter().sum::<f64>() / 2.0,
    );
    let per_task = |cpu: f64| cpu * 1e6 / (2 * per_round) as f64;
    Ok(vec![
        with,
        without,
        with / without,
        per_task(cpu_with),
        per_task(cpu_without),
        per_task(cpu_readers),
        seen.filtered_missed as f64,
        seen.unfiltered_missed as f64,
    ])
}

/// CPU time this process has used (user and system), in seconds.
fn cpu_seconds() -> f64 {
    rusage(libc::RUSAGE_SELF)
}

/// CPU time of the finished child processes (the readers), in seconds.
fn children_cpu_seconds() -> f64 {
    rusage(libc::RUSAGE_CHILDREN)
}

fn rusage(who: libc::c_int) -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The reading process, its streams open.
struct Readers {
    child: tokio::process::Child,
    stdout: BufReader<tokio::process::ChildStdout>,
}

impl Readers {
    async fn start(plan: &Plan) -> anyhow::Result<Readers> {
        let mut child = crate::helper::start("subscribe", plan).await?;
        let mut stdout = BufReader::new(child.stdout.take().context("no stdout of the readers")?);
        let mut line = String::new();
        tokio::time::timeout(DRAIN, stdout.read_line(&mut line))
            .await
            .context("the readers did not open their streams in time")??;
        if line.trim() != "ready" {
            bail!("the readers' process failed before its streams were open; its error is above");
        }
        Ok(Readers { child, stdout })
    }

    async fn finish(mut self) -> anyhow::Result<Seen> {
        let mut line = String::new();
        tokio::time::timeout(DRAIN, self.stdout.read_line(&mut line))
            .await
            .context("the readers did not receive their tasks' events in time")??;
        let status = self.child.wait().await?;
        if !status.success() {
            bail!("the readers' process failed ({status}); its error is above");
        }
        serde_json::from_str(&line).context("the readers printed no outcome")
    }
}
