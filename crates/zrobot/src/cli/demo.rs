//! `zrobot demo`: first contact. Starts two robots on loopback (child
//! processes of this binary, each with its own temporary data directory),
//! serves them the example templates from a git repository made of the
//! `examples/` folder, executes the demo blueprint, follows its tasks and
//! prints what happened; then leaves the robots running until Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use zrobot_client::{Client, Credentials, ServiceFilter};

use super::config::RobotEntry;
use super::context::{explain, Need, Target};
use super::{blueprints, follow, output};
use crate::paths;

/// The identity the example repository is given (its `origin`), so its
/// templates get the UIDs the demo blueprint names.
const EXAMPLES_ORIGIN: &str = "https://github.com/zrobot/examples";
/// How long a robot may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a robot may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The exit code of a demo stopped before its summary, as a shell reports SIGINT.
const EXIT_INTERRUPTED: u8 = 130;
/// How long the capacity report the demo asks for at the end may take.
const REPORT_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// The examples folder (with `templates/` and `blueprints/demo.yaml`);
    /// by default `examples/` of the current directory, else of the source
    /// tree this binary was built from.
    #[arg(long, value_name = "DIR")]
    pub examples: Option<PathBuf>,
    /// Stop the robots and exit once the summary is printed, with its
    /// status: 0 if every task ended ok (for scripts and CI).
    #[arg(long, visible_alias = "no-wait-for-ctrl-c")]
    pub once: bool,
}

pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    let examples = examples_dir(args.examples)?;
    let blueprint = examples.join("blueprints/demo.yaml");
    let work = tempfile::Builder::new()
        .prefix("zrobot-demo-")
        .tempdir()
        .context("cannot make a temporary directory for the demo")?;
    let repo = work.path().join("examples");
    make_template_repo(&examples, &repo)?;
    let repo_url = format!("file://{}", repo.display());

    println!("Starting two robots on loopback with the example templates...");
    let (one, two) = tokio::try_join!(
        Robot::start(1, work.path(), &repo_url),
        Robot::start(2, work.path(), &repo_url)
    )?;
    let robots = [one, two];
    for r in &robots {
        println!(
            "  robot {} listens on {}  (log: {})",
            r.number,
            r.url,
            r.log.display()
        );
    }
    println!(
        "\nExecuting blueprints/demo.yaml on robot 1. The blueprint runs on one robot for now: \
         calls across the two robots are being wired, and robot 2 stays up, empty, to try the CLI on."
    );

    // Ctrl-C while the blueprint runs stops the robots too, and cleans up.
    let code = tokio::select! {
        code = show(&robots[0], &blueprint) => code,
        _ = wait_for_stop() => {
            println!("\nstopping the robots");
            for r in robots {
                r.stop().await;
            }
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
    };
    println!("\nThe API of each robot (open on loopback, no credentials needed):");
    for r in &robots {
        println!("  robot {}: {}", r.number, r.url);
    }
    println!(
        "Try, from another terminal:\n  ZROBOT_URL={url} zrobot service list\n  ZROBOT_URL={url} zrobot task list web --all   (or db, node1, capacity)\n  ZROBOT_URL={url} zrobot task schedule capacity report --wait",
        url = robots[0].url
    );
    let code = match code {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(super::context::exit_code(&e))
        }
    };
    if !args.once {
        println!("\nThe robots keep running: press Ctrl-C to stop them.");
        wait_for_stop().await;
        println!("stopping the robots");
    }
    for r in robots {
        r.stop().await;
    }
    drop(work);
    Ok(code)
}

/// Executes the blueprint on `robot`, follows its tasks, then prints the
/// services, the task results and a fresh capacity report. The exit code is
/// that of the blueprint's tasks.
async fn show(robot: &Robot, blueprint: &Path) -> Result<ExitCode> {
    let client = Client::new(&robot.url, Credentials::god(&robot.god_token))?;
    let target = Target {
        name: Some(format!("demo robot {}", robot.number)),
        url: robot.url.clone(),
        entry: RobotEntry {
            url: robot.url.clone(),
            god_token: Some(robot.god_token.clone()),
            ..Default::default()
        },
    };
    let result = blueprints::send(&client, &target, blueprint).await?;
    println!(
        "{} service(s) created, {} task(s) scheduled; following them:",
        result.services.len(),
        result.tasks.len()
    );
    let followed = follow::follow(&client, result.tasks.clone()).await;

    println!("\nServices on robot 1:");
    let services = client
        .services(&ServiceFilter::default())
        .await
        .map_err(|e| explain(&target, e, Need::Anyone))?;
    println!("{}", output::services_table(&services));

    println!("\nTasks of the blueprint:");
    let code = follow::summary(&followed);

    // The report in the blueprint ran beside the installs; one asked now
    // counts every vm.
    if let Some(capacity) = services.iter().find(|s| s.name == "capacity") {
        let task = client
            .schedule(capacity.guid, "report", serde_json::json!({}))
            .await
            .map_err(|e| explain(&target, e, Need::Service("capacity")))?;
        let done = client
            .wait_done(capacity.guid, task.guid, REPORT_TIMEOUT)
            .await
            .map_err(|e| explain(&target, e, Need::Service("capacity")))?;
        match done.result_value() {
            Some(report) if done.state == zrobot_client::TaskState::Ok => {
                let total = &report["total"];
                println!(
                    "\nCapacity now: {} node(s), {} vm(s); memory {} MiB used, {} MiB free; cpu {} used, {} free",
                    total["nodes"],
                    total["vms"],
                    total["memory"]["used"],
                    total["memory"]["free"],
                    total["cpu"]["used"],
                    total["cpu"]["free"]
                );
            }
            _ => println!("\nThe capacity report failed: {}", output::outcome(&done)),
        }
    }
    Ok(code)
}

/// `--examples`, else `./examples`, else the source tree's.
fn examples_dir(given: Option<PathBuf>) -> Result<PathBuf> {
    let candidates = match given {
        Some(dir) => vec![dir],
        None => vec![
            PathBuf::from("examples"),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples"),
        ],
    };
    for dir in &candidates {
        if dir.join("templates").is_dir() && dir.join("blueprints/demo.yaml").is_file() {
            return std::path::absolute(dir)
                .with_context(|| format!("cannot make {} absolute", dir.display()));
        }
    }
    bail!(
        "no examples folder (with templates/ and blueprints/demo.yaml) at {}: run the demo from the zrobot source tree, or give --examples DIR",
        candidates
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(" or ")
    )
}

/// Copies `examples` to `repo` and commits it, with the
/// `origin` the blueprint's UIDs name: robots load only git repositories.
fn make_template_repo(examples: &Path, repo: &Path) -> Result<()> {
    copy_dir(examples, repo)?;
    let git = git2::Repository::init(repo).context("cannot make the demo's template repository")?;
    let mut index = git.index()?;
    index.add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree = git.find_tree(index.write_tree()?)?;
    let sig = git2::Signature::now("zrobot demo", "demo@zrobot.invalid")?;
    git.commit(
        Some("HEAD"),
        &sig,
        &sig,
        "the example templates",
        &tree,
        &[],
    )?;
    git.remote("origin", EXAMPLES_ORIGIN)?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).with_context(|| {
                format!(
                    "cannot copy {} to {}",
                    entry.path().display(),
                    target.display()
                )
            })?;
        }
    }
    Ok(())
}

/// One robot process of the demo.
struct Robot {
    number: u32,
    url: String,
    god_token: String,
    log: PathBuf,
    child: Child,
}

impl Robot {
    async fn start(number: u32, work: &Path, repo_url: &str) -> Result<Robot> {
        let data_dir = work.join(format!("robot{number}"));
        paths::ensure_private_dir(&data_dir)?;
        let log = work.join(format!("robot{number}.log"));
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let exe =
            std::env::current_exe().context("cannot find the zrobot binary to start robots")?;
        let mut cmd = Command::new(exe);
        cmd.args([
            "server",
            "start",
            "-L",
            "127.0.0.1:0",
            "--god",
            "-T",
            repo_url,
            "--data-dir",
        ])
        .arg(&data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        // An early return or a panic must not leave robots behind.
        .kill_on_drop(true);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe; the closure touches nothing else.
        unsafe {
            // If the demo itself is killed, its robots go too.
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd.spawn().context("cannot start a robot")?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(START_TIMEOUT, lines.next_line()).await;
        let line = match first {
            Ok(Ok(Some(line))) => line,
            _ => {
                let _ = child.kill().await;
                let log_text = std::fs::read_to_string(&log).unwrap_or_default();
                bail!(
                    "robot {number} did not start; its log:\n{}",
                    log_text
                        .lines()
                        .rev()
                        .take(20)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
        };
        // Keep reading so the robot never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let url = line
            .strip_prefix("zrobot listening on ")
            .with_context(|| format!("robot {number} said `{line}` instead of its address"))?
            .to_owned();
        let god_token = paths::read_god_token(&data_dir)?;
        Ok(Robot {
            number,
            url,
            god_token,
            log,
            child,
        })
    }

    /// SIGTERM, then SIGKILL if it does not stop in time.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: signals a child this process started and has not reaped.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

async fn wait_for_stop() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
