//! Template code never holds the threads that serve the API, and a stop
//! always ends the process: a real `zrobot server start` process, real Lua
//! loops that never end, real SIGTERM.

mod util;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use util::*;
use uuid::Uuid;
use zrobot_client::wire::{ServiceCreate, TaskState};
use zrobot_client::Client;

const SPIN_YAML: &str =
    "version: 1.0.0\nactions:\n  spin: {timeout: 5}\n  spin_long: {timeout: 3600}\n";
const SPIN_LUA: &str = r#"
local t = {}
function t.spin(self) while true do end end
function t.spin_long(self) while true do end end
function t.nap(self) robot.sleep(3600) end
function t.noop(self) return "done" end
return t
"#;
const SPIN_INIT_YAML: &str = "version: 1.0.0\n";
const SPIN_INIT_LUA: &str = r#"
local t = {}
function t.init(self) while true do end end
return t
"#;

fn repo(dir: &std::path::Path) -> String {
    let repo = template_repo(
        dir,
        &[
            ("templates/spin/template.yaml", SPIN_YAML),
            ("templates/spin/spin.lua", SPIN_LUA),
            ("templates/spin_init/template.yaml", SPIN_INIT_YAML),
            ("templates/spin_init/spin_init.lua", SPIN_INIT_LUA),
        ],
    );
    format!("file://{}", repo.display())
}

async fn service(client: &Client, template: &str, name: &str) -> Uuid {
    new_service(client, template, name).await
}

/// Waits until the task runs (its action has started).
async fn running(client: &Client, svc: Uuid, task: Uuid) {
    let started = eventually_async(Duration::from_secs(20), || async {
        client
            .task(svc, task)
            .await
            .is_ok_and(|t| t.state == TaskState::Running)
    })
    .await;
    assert!(started, "task {task} never started");
}

/// `GET /robot/info` `n` times in a row; the latencies, sorted.
async fn info_latencies(client: &Client, n: usize) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        client.robot_info().await.unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    lat
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)]
}

/// The attack: four actions in `while true do end` (timeout 5) once stalled
/// `GET /robot/info` for seconds, because Lua ran on the API's async
/// workers, and a no-op of another service waited behind the loops. The API
/// must keep a p99 <= 50 ms during the spin, and the no-op end within 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_actions_stall_neither_the_api_nor_other_services() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(&tmp.path().join("repo"));
    let robot = RobotProcess::start(&tmp.path().join("data"), &["--god", "-T", &repo]);
    let client = robot.god_client();
    let quiet = service(&client, "spin", "quiet").await;
    let mut spinning = Vec::new();
    for i in 0..4 {
        let svc = service(&client, "spin", &format!("spin{i}")).await;
        let task = client.schedule(svc, "spin", json!({})).await.unwrap();
        spinning.push((svc, task.guid));
    }
    let spin_started = Instant::now();
    for (svc, task) in &spinning {
        running(&client, *svc, *task).await;
    }

    let noop = async {
        let t = Instant::now();
        let task = client.schedule(quiet, "noop", json!({})).await.unwrap();
        let done = client
            .wait_done(quiet, task.guid, Duration::from_secs(10))
            .await
            .unwrap();
        (t.elapsed(), done)
    };
    let (lat, (noop_took, noop_task)) = tokio::join!(info_latencies(&client, 200), noop);
    // The figures count only if the loops were spinning all along.
    assert!(
        spin_started.elapsed() < Duration::from_secs(5),
        "the measure outlasted the loops' 5 s timeout ({:?}); it proves nothing",
        spin_started.elapsed()
    );
    for (svc, task) in &spinning {
        let t = client.task(*svc, *task).await.unwrap();
        assert_eq!(t.state, TaskState::Running, "a loop ended early: {t:?}");
    }
    eprintln!(
        "GET /robot/info during 4 spinning actions: p50 {:?}, p99 {:?}, max {:?}; no-op of another service: {noop_took:?}",
        lat[lat.len() / 2],
        p99(&lat),
        lat[lat.len() - 1]
    );
    assert!(
        p99(&lat) <= Duration::from_millis(50),
        "GET /robot/info p99 is {:?} while actions spin",
        p99(&lat)
    );
    assert_eq!(noop_task.state, TaskState::Ok, "{noop_task:?}");
    assert!(
        noop_took <= Duration::from_secs(1),
        "a no-op of another service took {noop_took:?} while actions spin"
    );

    // The loops still end by their timeout.
    for (svc, task) in &spinning {
        let t = client
            .wait_done(*svc, *task, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(t.state, TaskState::Error, "{t:?}");
        assert_eq!(t.eco.as_ref().unwrap().cat, "action.timeout", "{t:?}");
    }
}

/// The attack: `POST /services` ran the template's `init` inline in the
/// API's handler, so creations whose `init` spins held the API's threads.
/// While four such creations are under way, the API keeps a p99 <= 50 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_init_hooks_do_not_stall_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(&tmp.path().join("repo"));
    let robot = RobotProcess::start(&tmp.path().join("data"), &["--god", "-T", &repo]);
    let client = robot.god_client();
    client.robot_info().await.unwrap();
    let mut creations = Vec::new();
    for i in 0..4 {
        let client = client.clone();
        creations.push(tokio::spawn(async move {
            let _ = client
                .create_service(&ServiceCreate {
                    template: "spin_init".into(),
                    name: format!("init{i}"),
                    data: json!({}),
                    public: false,
                })
                .await;
        }));
    }
    // The hooks are under way once the template threads are busy: give the
    // requests their first moments, measured by the API itself answering.
    let before = info_latencies(&client, 20).await;
    let lat = info_latencies(&client, 200).await;
    eprintln!(
        "GET /robot/info during 4 spinning init hooks: p50 {:?}, p99 {:?}, max {:?} (warm-up max {:?})",
        lat[lat.len() / 2],
        p99(&lat),
        lat[lat.len() - 1],
        before[before.len() - 1]
    );
    for c in &creations {
        assert!(!c.is_finished(), "an init hook that spins ended early");
    }
    assert!(
        p99(&lat) <= Duration::from_millis(50),
        "GET /robot/info p99 is {:?} while init hooks spin",
        p99(&lat)
    );
    for c in creations {
        c.abort();
    }
}

fn sigterm(robot: &RobotProcess) {
    let status = Command::new("kill")
        .args(["-TERM", &robot.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits (polling, with a deadline) for the process to exit.
fn exited_within(robot: &mut RobotProcess, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = robot.child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The attack: a robot given SIGTERM while template code is stuck (an action
/// in `while true do end` with a long timeout, another in
/// `robot.sleep(3600)`) did not exit. It must exit within 10 s, cleanly, and
/// at the next start both interrupted tasks run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_robot_whose_template_code_is_stuck() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(&tmp.path().join("repo"));
    let mut robot = RobotProcess::start(&tmp.path().join("data"), &["--god", "-T", &repo]);
    let client = robot.god_client();
    let spinner = service(&client, "spin", "spinner").await;
    let sleeper = service(&client, "spin", "sleeper").await;
    let spin = client
        .schedule(spinner, "spin_long", json!({}))
        .await
        .unwrap();
    let nap = client.schedule(sleeper, "nap", json!({})).await.unwrap();
    // Waiting behind the stuck one: it must survive the stop too.
    let behind = client.schedule(spinner, "noop", json!({})).await.unwrap();
    running(&client, spinner, spin.guid).await;
    running(&client, sleeper, nap.guid).await;

    let stopped_at = Instant::now();
    sigterm(&robot);
    let status = exited_within(&mut robot, Duration::from_secs(10));
    let took = stopped_at.elapsed();
    let Some(status) = status else {
        panic!("the robot did not exit within 10 s of SIGTERM");
    };
    eprintln!("SIGTERM to exit with stuck template code: {took:?} ({status})");
    assert!(status.success(), "the robot exited with {status}");

    robot.restart();
    let client = robot.god_client();
    for (svc, task) in [(spinner, spin.guid), (sleeper, nap.guid)] {
        let again = eventually_async(Duration::from_secs(20), || async {
            client
                .task(svc, task)
                .await
                .is_ok_and(|t| t.state == TaskState::Running && t.attempt >= 2)
        })
        .await;
        assert!(
            again,
            "interrupted task {task} does not run again after the restart: {:?}",
            client.task(svc, task).await
        );
    }
    let waiting = client.task(spinner, behind.guid).await.unwrap();
    assert_eq!(waiting.state, TaskState::New, "{waiting:?}");

    // And the restarted robot stops the same way.
    let stopped_at = Instant::now();
    sigterm(&robot);
    assert!(
        exited_within(&mut robot, Duration::from_secs(10)).is_some(),
        "the restarted robot did not exit within 10 s of SIGTERM"
    );
    eprintln!("second stop: {:?}", stopped_at.elapsed());
}
