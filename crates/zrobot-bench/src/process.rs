//! Robots as real `zrobot server start` processes, for the figures measured
//! where a user stands: the binary found next to this one (same build
//! profile) or given by `--zrobot`, a data directory of its own on SQLite,
//! JWTs checked, and every failed task reported back through a webhook so
//! that a figure fails with the task's eco.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use zrobot_client::wire::WebhookEco;
use zrobot_client::{Client, Credentials};

use crate::template;

/// The organization whose members are the robots' admins.
const ADMIN_ORG: &str = "bench-admins";
/// The organization whose members are the robots' users.
const USER_ORG: &str = "bench-users";
/// How long a robot may take to say where it listens (a restart reads the
/// whole store first).
const START_LIMIT: Duration = Duration::from_secs(300);

/// Where the robot binary is: `--zrobot`, else next to this executable.
pub fn zrobot_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        if !p.is_file() {
            bail!(
                "--zrobot {}: no such file; give the path of a built `zrobot`",
                p.display()
            );
        }
        return Ok(p.to_path_buf());
    }
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    let dir = exe.parent().context("this program's path has no folder")?;
    let bin = dir.join("zrobot");
    if !bin.is_file() {
        let build = if cfg!(debug_assertions) {
            "cargo build -p zrobot"
        } else {
            "cargo build --release -p zrobot"
        };
        bail!(
            "no robot binary at {}: this figure runs the real `zrobot server start`; build it with \
             `{build}` (the same profile as the benchmark), or give one with --zrobot PATH",
            bin.display()
        );
    }
    Ok(bin)
}

/// A JWT signed with `key` (HS256) whose holder belongs to `org`.
fn jwt(key: &str, org: &str) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"scope": [format!("user:memberof:{org}")], "exp": now + 86_400}),
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .context("cannot sign a JWT")
}

/// The ecos of failed tasks, as the robots' webhooks deliver them.
#[derive(Clone, Default)]
pub struct Ecos(Arc<Mutex<Vec<WebhookEco>>>);

impl Ecos {
    /// Serves a webhook on a loopback port for as long as this process runs
    /// and returns its URL.
    pub async fn listen(&self) -> anyhow::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot listen for webhooks on loopback")?;
        let url = format!("http://{}/eco", listener.local_addr()?);
        let ecos = self.0.clone();
        let app = axum::Router::new().route(
            "/eco",
            axum::routing::post(move |axum::Json(eco): axum::Json<WebhookEco>| {
                let ecos = ecos.clone();
                async move { ecos.lock().unwrap_or_else(|e| e.into_inner()).push(eco) }
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("error: the benchmark's webhook stopped: {e}");
            }
        });
        Ok(url)
    }

    /// The first eco delivered, waiting up to `limit` for one.
    pub async fn first(&self, limit: Duration) -> Option<WebhookEco> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(e) = self.0.lock().unwrap_or_else(|e| e.into_inner()).first() {
                return Some(e.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// How to start a robot.
pub struct Setup {
    /// Its name in messages (`robot a`).
    pub name: &'static str,
    /// Extra arguments of `zrobot server start`.
    pub args: Vec<String>,
}

/// A `zrobot server start` process and what the benchmark holds to talk to it.
pub struct RobotProcess {
    pub name: &'static str,
    bin: PathBuf,
    child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    args: Vec<String>,
    /// A client with an admin JWT.
    pub admin: Client,
    /// An admin JWT of this robot, for another robot to present.
    pub admin_jwt: String,
}

impl RobotProcess {
    /// Starts a robot on `data_dir` with the template repository at `repo`,
    /// JWTs checked (admins and users of the benchmark's organizations),
    /// and registers `webhook` for its failed tasks.
    pub async fn start(
        bin: &Path,
        data_dir: &Path,
        repo: &Path,
        setup: Setup,
        webhook: &str,
    ) -> anyhow::Result<RobotProcess> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let key = format!(
            "the HS256 key of bench robot {} {}",
            setup.name,
            uuid::Uuid::new_v4()
        );
        let key_file = data_dir.join("jwt.key");
        std::fs::write(&key_file, &key)
            .with_context(|| format!("cannot write {}", key_file.display()))?;
        let mut args = vec![
            "-T".to_owned(),
            repo.display().to_string(),
            "--jwt-key".into(),
            key_file.display().to_string(),
            "--admin-organization".into(),
            ADMIN_ORG.into(),
            "--user-organization".into(),
            USER_ORG.into(),
        ];
        args.extend(setup.args);
        let (child, url) = spawn(bin, setup.name, data_dir, &args, "127.0.0.1:0").await?;
        let admin_jwt = jwt(&key, ADMIN_ORG)?;
        let admin = Client::new(&url, Credentials::admin(admin_jwt.clone()))
            .context("cannot make a client of the robot")?;
        let robot = RobotProcess {
            name: setup.name,
            bin: bin.to_path_buf(),
            child,
            url,
            data_dir: data_dir.to_path_buf(),
            args,
            admin,
            admin_jwt,
        };
        robot
            .admin
            .add_webhook(webhook)
            .await
            .with_context(|| format!("robot {}: cannot add the benchmark's webhook", robot.name))?;
        Ok(robot)
    }

    /// The process id.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .id()
            .with_context(|| format!("robot {} has exited", self.name))
    }

    /// Resident memory of the process, from `/proc/PID/status`.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        let path = format!("/proc/{}/status", self.pid()?);
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("{path} has no VmRSS line"))?;
        Ok(kib * 1024)
    }

    /// Kills the robot for real (SIGKILL) and reaps it.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child
            .kill()
            .await
            .with_context(|| format!("cannot kill robot {}", self.name))
    }

    /// After [`Self::kill`]: starts `zrobot server start` again with the same
    /// arguments and data directory, on a new port; returns once it says
    /// where it listens.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        let (child, url) = spawn(
            &self.bin,
            self.name,
            &self.data_dir,
            &self.args,
            "127.0.0.1:0",
        )
        .await?;
        self.child = child;
        self.admin = Client::new(&url, Credentials::admin(self.admin_jwt.clone()))
            .context("cannot make a client of the robot")?;
        self.url = url;
        Ok(())
    }

    /// The UID of the bench template, as the robot loaded it.
    pub async fn template_uid(&self) -> anyhow::Result<String> {
        let templates = self
            .admin
            .templates()
            .await
            .with_context(|| format!("robot {}: cannot list templates", self.name))?;
        templates
            .iter()
            .find(|t| t.name == template::NAME)
            .map(|t| t.uid.clone())
            .with_context(|| {
                format!(
                    "robot {} did not load the bench template (see its log above)",
                    self.name
                )
            })
    }

    /// Waits until `n` tasks of `action` have ended `ok` in all (counted by
    /// the robot's `/metrics`), failing at the first that ended in error
    /// (with the eco its webhook delivered), or past `limit`.
    pub async fn all_ok(
        &self,
        ecos: &Ecos,
        action: &str,
        n: u64,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let text = self
                .admin
                .prometheus_metrics()
                .await
                .with_context(|| format!("robot {}: cannot read /metrics", self.name))?;
            let failed = metric_sum(&text, "zrobot_tasks_failed_total", None);
            if failed > 0 {
                let eco = ecos.first(Duration::from_secs(5)).await.map_or_else(
                    || "its eco did not reach the benchmark's webhook".to_owned(),
                    |e| {
                        format!(
                            "task `{}` of service `{}` ended in error: {}: {}",
                            e.action_name, e.service_name, e.eco.cat, e.eco.message
                        )
                    },
                );
                bail!(
                    "robot {}: {failed} task(s) ended in error; {eco}",
                    self.name
                );
            }
            let done = metric_sum(&text, "zrobot_task_duration_seconds_count", Some(action));
            if done >= n {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "robot {}: only {done} of {n} accepted `{action}` tasks ended ok within {}s",
                    self.name,
                    limit.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The sum of the samples of `metric` (of `action` if given) in Prometheus text.
fn metric_sum(text: &str, metric: &str, action: Option<&str>) -> u64 {
    let action = action.map(|a| format!("action=\"{a}\""));
    text.lines()
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| action.as_ref().is_none_or(|a| l.contains(a.as_str())))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Spawns `zrobot server start` and reads the line that says where it listens.
async fn spawn(
    bin: &Path,
    name: &str,
    data_dir: &Path,
    args: &[String],
    listen: &str,
) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(bin)
        .args(["server", "start", "-L", listen, "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let stdout = child.stdout.take().context("no stdout of the robot")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(START_LIMIT, lines.next_line()).await;
    let line = match first {
        Ok(Ok(Some(line))) => line,
        Ok(_) => {
            let status = child.wait().await.ok();
            bail!(
                "robot {name} exited before it listened ({}); its log is above",
                status.map_or("status unknown".to_owned(), |s| s.to_string())
            );
        }
        Err(_) => bail!(
            "robot {name} did not say where it listens within {}s",
            START_LIMIT.as_secs()
        ),
    };
    let url = line
        .strip_prefix("zrobot listening on ")
        .with_context(|| format!("robot {name} began with an unexpected line: {line}"))?
        .to_owned();
    // Keep draining, so that the robot never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, url))
}
