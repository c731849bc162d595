//! `zrobot demo`: first contact. Starts two robots on loopback (child
//! processes of this binary, each with its own temporary data directory),
//! serves them the example templates from a git repository made of the
//! `examples/` folder, and tells robot 1 about robot 2 (`--robot edge=URL`).
//! It executes the demo blueprint on robot 1, whose vms get their node on
//! robot 2, follows its tasks and prints what each robot holds; then leaves
//! the robots running until Ctrl-C.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use comfy_table::Cell;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use zrobot_client::{Client, Credentials, Service, ServiceFilter, Task, TaskState};

use super::config::RobotEntry;
use super::context::{explain, Need, Target};
use super::{blueprints, follow, output};
use crate::paths;

/// The identity the example repository is given (its `origin`), so its
/// templates get the UIDs the demo blueprint names.
const EXAMPLES_ORIGIN: &str = "https://github.com/zrobot/examples";
/// The name robot 1 knows robot 2 by: the `robot` of the demo blueprint's vms.
const EDGE: &str = "edge";
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
    /// status: 0 if every task ended ok and robot 2's node lists the vms of
    /// robot 1 (for scripts and CI).
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
    // Robot 2 first: robot 1 is told its address when it starts.
    let two = Robot::start(2, work.path(), &repo_url, &[]).await?;
    let one = Robot::start(
        1,
        work.path(),
        &repo_url,
        &["--robot".to_owned(), format!("{EDGE}={}", two.url)],
    )
    .await?;
    println!(
        "  robot 2 listens on {}  (log: {})",
        two.url,
        two.log.display()
    );
    println!(
        "  robot 1 listens on {}  (log: {}), started with `--robot {EDGE}={}`: it knows robot 2 as `{EDGE}`",
        one.url,
        one.log.display(),
        two.url
    );
    println!(
        "\nExecuting blueprints/demo.yaml on robot 1: its vms are services of robot 1, and their \
         install asks robot `{EDGE}` (robot 2) for their node, creating it there the first time, \
         then waits there for an address."
    );

    // Ctrl-C while the blueprint runs stops the robots too, and cleans up.
    let code = tokio::select! {
        code = show(&one, &two, &blueprint) => code,
        _ = wait_for_stop() => {
            println!("\nstopping the robots");
            one.stop().await;
            two.stop().await;
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
    };
    println!("\nThe API of each robot (open on loopback, no credentials needed):");
    println!("  robot 1: {}", one.url);
    println!("  robot 2 ({EDGE}): {}", two.url);
    println!(
        "Try, from another terminal:\n  ZROBOT_URL={one} zrobot service list        (web, db, capacity)\n  ZROBOT_URL={two} zrobot service list        (node1)\n  ZROBOT_URL={one} zrobot task list web --all\n  ZROBOT_URL={two} zrobot task list node1 --all\n  ZROBOT_URL={one} zrobot task schedule capacity report --wait",
        one = one.url,
        two = two.url
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
    one.stop().await;
    two.stop().await;
    drop(work);
    Ok(code)
}

/// A client of `robot` with its god token (the only credential that shows
/// service data), and how errors name it.
fn god_client(robot: &Robot) -> Result<(Client, Target)> {
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
    Ok((client, target))
}

/// Executes the blueprint on robot `one`, follows its tasks, then prints
/// the services of both robots: the vms of robot 1 with the addresses they
/// got, and the node of robot 2 with what it recorded for them. The exit
/// code is that of the blueprint's tasks, or 1 if the two robots disagree.
/// Long (about 100 lines) because it is the demo's script, read top down.
async fn show(one: &Robot, two: &Robot, blueprint: &Path) -> Result<ExitCode> {
    let (client, target) = god_client(one)?;
    let (edge, edge_target) = god_client(two)?;
    let result = blueprints::send(&client, &target, blueprint).await?;
    println!(
        "{} service(s) created on robot 1, {} task(s) scheduled; following them:",
        result.services.len(),
        result.tasks.len()
    );
    let followed = follow::follow(&client, result.tasks.clone()).await;

    println!("\nTasks of the blueprint (on robot 1):");
    let mut code = follow::summary(&followed);

    // The report in the blueprint ran beside the installs, maybe before the
    // node existed; one asked now counts it. Asked before the services are
    // listed, so that the planner's state table is today's.
    let capacity = capacity_report(&client, &target).await?;
    // The tasks of robot 1, by guid: robot 2 records which one asked for each
    // of its tasks.
    let callers: HashMap<String, String> = followed
        .iter()
        .map(|f| f.last())
        .chain(capacity.as_ref().map(|(_, task)| task))
        .map(|t| {
            (
                t.guid.to_string(),
                format!("{}.{}", t.service_name, t.action_name),
            )
        })
        .collect();

    let services = client
        .services(&ServiceFilter::default())
        .await
        .map_err(|e| explain(&target, e, Need::Anyone))?;
    println!("\nServices on robot 1:");
    println!("{}", output::services_table(&services));

    let vms: Vec<&Service> = services.iter().filter(|s| is_template(s, "vm")).collect();
    println!("\nThe vms of robot 1 and the address each got from its node:");
    for vm in &vms {
        let data = vm.data.clone().unwrap_or_default();
        let ip = data["ip"].as_str().filter(|ip| !ip.is_empty());
        let node = data["node"].as_str().unwrap_or("?");
        let robot = match data["robot"].as_str() {
            Some(EDGE) => format!("robot 2 (`{EDGE}`)"),
            Some("") | None => "robot 1".to_owned(),
            Some(other) => format!("robot `{other}`"),
        };
        println!(
            "  {}: {} from {node} on {robot}",
            vm.name,
            ip.unwrap_or("no address (install did not end well)")
        );
    }

    let remote = edge
        .services(&ServiceFilter::default())
        .await
        .map_err(|e| explain(&edge_target, e, Need::Anyone))?;
    println!("\nServices on robot 2 (`{EDGE}`), as robot 2 reports them:");
    println!("{}", output::services_table(&remote));
    for node in remote.iter().filter(|s| is_template(s, "node")) {
        println!("  {}", node_line(node));
        let tasks = edge
            .tasks(node.guid, true)
            .await
            .map_err(|e| explain(&edge_target, e, Need::Service(&node.name)))?;
        let asked: Vec<_> = tasks
            .into_iter()
            .filter(|t| t.action_name != "monitor")
            .collect();
        if !asked.is_empty() {
            println!(
                "\nTasks {} of robot 2 ran (its recurring monitor left out), and the task of robot 1 that asked for each:",
                node.name
            );
            println!("{}", asked_table(&asked, &callers));
        }
    }

    // What each side says must agree: every vm of robot 1 placed on a node
    // of robot 2 is in that node's data, at the vm's own address.
    let mismatches = mismatches(&vms, &remote);
    if mismatches.is_empty() {
        println!(
            "\n✓ every vm of robot 1 is in the data of its node on robot 2, at the address the vm has"
        );
    } else {
        for m in &mismatches {
            println!("\n✗ {m}");
        }
        if code == ExitCode::SUCCESS {
            code = ExitCode::from(1);
        }
    }

    if let Some((line, _)) = capacity {
        println!("\n{line}");
    }
    Ok(code)
}

/// The tasks of a node of robot 2, each with the task of robot 1 that asked
/// for it (`callers`, by guid).
fn asked_table(tasks: &[Task], callers: &HashMap<String, String>) -> comfy_table::Table {
    let mut t = output::table(&["ACTION", "ARGS", "STATE", "RESULT / ERROR", "ASKED BY"]);
    for task in tasks {
        let asked_by = match &task.caller_task {
            Some(guid) => callers
                .get(guid)
                .map(|c| format!("{c} on robot 1"))
                .unwrap_or_else(|| format!("task {guid}")),
            None => "-".to_owned(),
        };
        t.add_row(vec![
            Cell::new(&task.action_name),
            Cell::new(output::shorten(&task.args.to_string(), 60)),
            output::state_cell(output::task_state(task.state)),
            Cell::new(output::outcome(task)),
            Cell::new(asked_by),
        ]);
    }
    t
}

/// Asks the planner of robot 1, if there is one, for a report now; says
/// what it found in one line, and gives the task.
async fn capacity_report(client: &Client, target: &Target) -> Result<Option<(String, Task)>> {
    let filter = ServiceFilter {
        name: Some("capacity".to_owned()),
        ..Default::default()
    };
    let found = client
        .services(&filter)
        .await
        .map_err(|e| explain(target, e, Need::Anyone))?;
    let Some(capacity) = found.first() else {
        return Ok(None);
    };
    let task = client
        .schedule(capacity.guid, "report", serde_json::json!({}))
        .await
        .map_err(|e| explain(target, e, Need::Service("capacity")))?;
    let done = client
        .wait_done(capacity.guid, task.guid, REPORT_TIMEOUT)
        .await
        .map_err(|e| explain(target, e, Need::Service("capacity")))?;
    let line = match done.result_value() {
        Some(report) if done.state == TaskState::Ok => {
            let total = &report["total"];
            let mut line = format!(
                "Capacity now (the planner of robot 1 counts the nodes of robot `{EDGE}` too): {} node(s), {} vm(s); memory {} MiB used, {} MiB free; cpu {} used, {} free",
                total["nodes"],
                total["vms"],
                total["memory"]["used"],
                total["memory"]["free"],
                total["cpu"]["used"],
                total["cpu"]["free"]
            );
            if let Some(problems) = report["problems"].as_object().filter(|p| !p.is_empty()) {
                for (what, why) in problems {
                    line.push_str(&format!("\n  {what}: {}", why.as_str().unwrap_or("?")));
                }
            }
            line
        }
        _ => format!("The capacity report failed: {}", output::outcome(&done)),
    };
    Ok(Some((line, done)))
}

/// Whether `service` is of the example template `name` (any version).
fn is_template(service: &Service, name: &str) -> bool {
    service
        .template
        .rsplit('/')
        .nth(1)
        .is_some_and(|n| n == name)
}

/// A node's data in one line: what it hosts, for whom, and its size.
fn node_line(node: &Service) -> String {
    let data = node.data.clone().unwrap_or_default();
    let vms = data["vms"].as_object().cloned().unwrap_or_default();
    let placed: Vec<String> = vms
        .iter()
        .map(|(name, vm)| {
            format!(
                "{name} at {} ({} MiB, {} cpu)",
                vm["ip"].as_str().unwrap_or("?"),
                vm["memory"],
                vm["cpu"]
            )
        })
        .collect();
    format!(
        "{} on robot 2 hosts {} vm(s){}{}; capacity {} MiB, {} cpu; monitor ran {} time(s)",
        node.name,
        vms.len(),
        if placed.is_empty() { "" } else { ": " },
        placed.join(", "),
        data["capacity"]["memory"],
        data["capacity"]["cpu"],
        data["checks"]
    )
}

/// How the vms of robot 1 placed on robot 2 and the nodes of robot 2
/// disagree, in sentences (none: they agree).
fn mismatches(vms: &[&Service], nodes: &[Service]) -> Vec<String> {
    let mut out = Vec::new();
    let mut placed_there = 0;
    for vm in vms {
        let data = vm.data.clone().unwrap_or_default();
        if data["robot"].as_str() != Some(EDGE) {
            continue;
        }
        placed_there += 1;
        let node_name = data["node"].as_str().unwrap_or_default();
        if data["ip"].as_str().is_none_or(str::is_empty) {
            out.push(format!(
                "vm {} of robot 1 has no address: its install did not end well",
                vm.name
            ));
            continue;
        }
        let Some(node) = nodes.iter().find(|n| n.name == node_name) else {
            out.push(format!(
                "robot 2 has no service {node_name}, the node of vm {}",
                vm.name
            ));
            continue;
        };
        let placed = node
            .data
            .as_ref()
            .map(|d| d["vms"][&vm.name]["ip"].clone())
            .unwrap_or(Value::Null);
        if placed != data["ip"] {
            out.push(format!(
                "vm {} of robot 1 has address {}, but {node_name} on robot 2 records {placed}",
                vm.name, data["ip"]
            ));
        }
    }
    if placed_there == 0 {
        out.push(format!(
            "no vm of robot 1 has its node on robot 2: the blueprint names no `robot: {EDGE}`"
        ));
    }
    out
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
    let author = zrobot_git::Author {
        name: "zrobot demo",
        email: "demo@zrobot.invalid",
    };
    zrobot_git::commit_folder(
        repo,
        &author,
        "the example templates",
        Some(EXAMPLES_ORIGIN),
    )
    .context("cannot make the demo's template repository")?;
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
    /// Starts robot `number` with the example templates and `extra` flags of
    /// `zrobot server start`.
    async fn start(number: u32, work: &Path, repo_url: &str, extra: &[String]) -> Result<Robot> {
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
        .args(extra)
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
