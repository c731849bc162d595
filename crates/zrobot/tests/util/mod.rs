//! Shared harness of the binary's tests: real robot processes started,
//! killed and restarted; the rest comes from `zrobot-testkit`.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use zrobot_testkit::eventually_async;
#[allow(unused_imports)]
pub use zrobot_testkit::git::{commit_files, tag_head, template_repo};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zrobot_client::{Client, Credentials};

pub fn zrobot_bin() -> &'static str {
    env!("CARGO_BIN_EXE_zrobot")
}

/// A robot process.
pub struct RobotProcess {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    pub args: Vec<String>,
    /// Where its stderr goes (appended, across restarts); inherited if none.
    pub log: Option<PathBuf>,
}

impl RobotProcess {
    /// Starts `zrobot server start --data-dir DIR -L 127.0.0.1:0 ARGS...` and
    /// waits for the line that gives its address.
    pub fn start(data_dir: &Path, args: &[&str]) -> RobotProcess {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Self::spawn(data_dir, args, "127.0.0.1:0", None)
    }

    /// Like [`RobotProcess::start`], its log (`info` and up) appended to
    /// `log`, this start's and those of its restarts.
    pub fn start_logged(data_dir: &Path, args: &[&str], log: &Path) -> RobotProcess {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Self::spawn(data_dir, args, "127.0.0.1:0", Some(log.to_path_buf()))
    }

    fn spawn(
        data_dir: &Path,
        args: Vec<String>,
        listen: &str,
        log: Option<PathBuf>,
    ) -> RobotProcess {
        let (stderr, level) = match &log {
            Some(path) => (
                Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .unwrap(),
                ),
                "info",
            ),
            None => (Stdio::inherit(), "warn"),
        };
        let mut child = Command::new(zrobot_bin())
            .args(["server", "start", "-L", listen, "--data-dir"])
            .arg(data_dir)
            .args(&args)
            .env("RUST_LOG", level)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the robot never blocks on a full pipe.
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the robot did not say where it listens within 60s");
        let url = line
            .strip_prefix("zrobot listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_owned();
        RobotProcess {
            child,
            url,
            data_dir: data_dir.to_path_buf(),
            args,
            log,
        }
    }

    /// Kills the robot for real (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same data directory and port.
    pub fn restart(&mut self) {
        self.kill();
        let listen = self.url.trim_start_matches("http://").to_owned();
        let deadline = Instant::now() + Duration::from_secs(30);
        // The port may take a moment to be free again.
        loop {
            let attempt = std::panic::catch_unwind(|| {
                Self::spawn(&self.data_dir, self.args.clone(), &listen, self.log.clone())
            });
            match attempt {
                Ok(p) => {
                    *self = p;
                    return;
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => std::panic::resume_unwind(e),
            }
        }
    }

    pub fn god_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("god.token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    pub fn god_client(&self) -> Client {
        Client::new(&self.url, Credentials::god(self.god_token())).unwrap()
    }
}

impl Drop for RobotProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

impl RobotProcess {
    /// Stops the robot the polite way (SIGTERM) and waits for it to exit.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

/// Creates service `name` from `template` with no data (its defaults), private;
/// panics with the robot's answer if it refuses.
pub async fn new_service(client: &Client, template: &str, name: &str) -> uuid::Uuid {
    let created = client
        .create_service(&zrobot_client::wire::ServiceCreate {
            template: template.into(),
            name: name.into(),
            data: serde_json::json!({}),
            public: false,
        })
        .await
        .unwrap_or_else(|e| panic!("creating service {name} from {template}: {e}"));
    created.service.guid
}
