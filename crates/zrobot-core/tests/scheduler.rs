//! The scheduler on its own, without Lua: a fake engine whose actions are
//! Rust closures, real template folders in a temp dir, the in-memory store.
//! Queue order and priorities, cancel, timeout, retry with backoff,
//! recurring actions, deadlock detection, an upgrade while tasks wait, and
//! the event stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Semaphore;
use zrobot_core::engine::{
    ActionCall, ActionError, ActionOutcome, BoxFuture, Engine, Hook, TemplateCode, TemplateSource,
};
use zrobot_core::events::{self, Gap, Next, Subscription, What};
use zrobot_core::robot::{NewService, WaitError};
use zrobot_core::service::LogLevel;
use zrobot_core::store::MemoryStore;
use zrobot_core::{
    Priority, RepoId, Robot, RobotConfig, Service, TagState, TaskState, TemplateError,
};
use zrobot_testkit::{eventually, TemplateDir};

/// What an action does: gets the call, returns its outcome.
type Behaviour = Arc<dyn Fn(ActionCall) -> BoxFuture<'static, ActionOutcome> + Send + Sync>;

/// Actions by name, shared by every template; a template's code file lists
/// the actions it has, one per line.
#[derive(Clone, Default)]
struct FakeEngine {
    behaviours: Arc<HashMap<String, Behaviour>>,
}

struct FakeCode {
    actions: Vec<String>,
    behaviours: Arc<HashMap<String, Behaviour>>,
}

impl Engine for FakeEngine {
    fn code_file(&self, _template_name: &str) -> String {
        "actions.txt".to_owned()
    }

    fn compile(&self, source: &TemplateSource) -> Result<Arc<dyn TemplateCode>, TemplateError> {
        let text = std::fs::read_to_string(&source.code_path)
            .map_err(|e| TemplateError::new(&source.code_path, None, e.to_string()))?;
        let mut actions: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        actions.sort();
        Ok(Arc::new(FakeCode {
            actions,
            behaviours: self.behaviours.clone(),
        }))
    }
}

impl TemplateCode for FakeCode {
    fn actions(&self) -> &[String] {
        &self.actions
    }

    fn has_hook(&self, _hook: Hook) -> bool {
        false
    }

    fn run(&self, call: ActionCall) -> BoxFuture<'static, ActionOutcome> {
        match self.behaviours.get(call.callable.name()) {
            Some(b) => b(call),
            None => Box::pin(std::future::ready(ActionOutcome {
                result: Err(ActionError::new("test.unknown", "no behaviour")),
                data: None,
            })),
        }
    }
}

fn ok(v: Value) -> ActionOutcome {
    ActionOutcome {
        result: Ok(v),
        data: None,
    }
}

/// The order actions ran in, as `"action:id"`.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, call: &ActionCall) {
        let id = call.args.get("id").and_then(Value::as_str).unwrap_or("");
        self.0
            .lock()
            .unwrap()
            .push(format!("{}:{id}", call.callable.name()));
    }

    fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A robot over the fake engine, with `behaviours`, and one template folder
/// per `(name, version, manifest actions YAML, action names)`.
struct Bench {
    robot: Robot,
    /// Kept for the robot's life: templates are read from them.
    repos: Mutex<Vec<TemplateDir>>,
}

impl Bench {
    fn new(behaviours: Vec<(&str, Behaviour)>) -> Bench {
        let engine = FakeEngine {
            behaviours: Arc::new(
                behaviours
                    .into_iter()
                    .map(|(n, b)| (n.to_owned(), b))
                    .collect(),
            ),
        };
        let robot = Robot::new(
            RobotConfig::default(),
            Arc::new(engine),
            Arc::new(MemoryStore::new()),
        );
        Bench {
            robot,
            repos: Mutex::default(),
        }
    }

    /// Writes template `name` at `version` into a repository of its own and
    /// loads it.
    fn template(&self, name: &str, version: &str, policies: &str, actions: &[&str]) {
        let repo = TemplateDir::new();
        repo.template(
            name,
            &format!("version: {version}\nactions:\n{policies}\n"),
            "actions.txt",
            &actions.join("\n"),
        );
        let load = self
            .robot
            .load_repository(&repo.root(), &RepoId::new("example.com", "acme", "t"));
        assert!(load.errors.is_empty(), "{:?}", load.errors);
        self.repos.lock().unwrap().push(repo);
    }

    async fn service(&self, template: &str, name: &str) -> Arc<Service> {
        self.robot
            .create_service(NewService {
                template: template.to_owned(),
                name: name.to_owned(),
                data: json!({}),
                ..NewService::default()
            })
            .await
            .unwrap()
    }
}

/// An action that logs itself, then waits for a permit of `gate`.
fn gated(log: &Log, gate: &Arc<Semaphore>) -> Behaviour {
    let (log, gate) = (log.clone(), gate.clone());
    Arc::new(move |call| {
        let (log, gate) = (log.clone(), gate.clone());
        Box::pin(async move {
            log.push(&call);
            gate.acquire().await.unwrap().forget();
            ok(Value::Null)
        })
    })
}

fn logged(log: &Log) -> Behaviour {
    let log = log.clone();
    Arc::new(move |call| {
        log.push(&call);
        Box::pin(std::future::ready(ok(Value::Null)))
    })
}

#[tokio::test]
async fn tasks_run_one_at_a_time_in_queue_order_system_ones_first() {
    let (log, gate) = (Log::default(), Arc::new(Semaphore::new(0)));
    let b = Bench::new(vec![("gate", gated(&log, &gate)), ("step", logged(&log))]);
    b.template("node", "1.0.0", "  step: {}", &["gate", "step"]);
    let svc = b.service("node", "n1").await;

    let first = b
        .robot
        .schedule(&svc, "gate", json!({"id": "0"}))
        .await
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || log.entries().len() == 1).await);
    let mut tasks = Vec::new();
    for id in ["1", "2", "3"] {
        tasks.push(
            b.robot
                .schedule(&svc, "step", json!({ "id": id }))
                .await
                .unwrap(),
        );
    }
    let system = b
        .robot
        .schedule_with(&svc, "step", json!({"id": "sys"}), Priority::System)
        .await
        .unwrap();
    // Nothing else starts while the first task runs.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(log.entries(), ["gate:0"]);
    assert_eq!(svc.queue_len(), 4);

    gate.add_permits(1);
    assert_eq!(first.done().await.state, TaskState::Ok);
    for t in tasks.iter().chain([&system]) {
        assert_eq!(t.done().await.state, TaskState::Ok);
    }
    assert_eq!(
        log.entries(),
        ["gate:0", "step:sys", "step:1", "step:2", "step:3"]
    );
}

#[tokio::test]
async fn a_cancelled_waiting_task_never_runs_and_ends_in_error() {
    let (log, gate) = (Log::default(), Arc::new(Semaphore::new(0)));
    let b = Bench::new(vec![("gate", gated(&log, &gate)), ("step", logged(&log))]);
    b.template("node", "1.0.0", "  step: {}", &["gate", "step"]);
    let svc = b.service("node", "n1").await;
    let running = b.robot.schedule(&svc, "gate", json!({})).await.unwrap();
    let waiting = b
        .robot
        .schedule(&svc, "step", json!({"id": "x"}))
        .await
        .unwrap();
    let after = b
        .robot
        .schedule(&svc, "step", json!({"id": "y"}))
        .await
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || log.entries().len() == 1).await);

    b.robot.cancel_task(&svc, waiting.guid).await.unwrap();
    let cancelled = waiting.done().await;
    assert_eq!(cancelled.state, TaskState::Error);
    assert_eq!(cancelled.eco.unwrap().category, "task.cancelled");
    // The running one cannot be cancelled.
    assert!(b.robot.cancel_task(&svc, running.guid).await.is_err());

    gate.add_permits(1);
    assert_eq!(after.done().await.state, TaskState::Ok);
    assert_eq!(log.entries(), ["gate:", "step:y"]);
}

#[tokio::test]
async fn an_action_past_its_timeout_is_stopped_and_the_queue_goes_on() {
    let log = Log::default();
    let slow: Behaviour = Arc::new(|_call| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            ok(Value::Null)
        })
    });
    let b = Bench::new(vec![("slow", slow), ("step", logged(&log))]);
    b.template("node", "1.0.0", "  slow: {timeout: 0.1}", &["slow", "step"]);
    let svc = b.service("node", "n1").await;
    let started = Instant::now();
    let slow = b.robot.schedule(&svc, "slow", json!({})).await.unwrap();
    let next = b
        .robot
        .schedule(&svc, "step", json!({"id": "n"}))
        .await
        .unwrap();
    let done = slow.done().await;
    assert_eq!(done.state, TaskState::Error);
    assert_eq!(done.eco.unwrap().category, "action.timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(next.done().await.state, TaskState::Ok);
}

#[tokio::test]
async fn a_failing_action_is_retried_with_backoff_until_it_succeeds() {
    let runs = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let flaky: Behaviour = {
        let runs = runs.clone();
        Arc::new(move |_call| {
            let n = {
                let mut r = runs.lock().unwrap();
                r.push(Instant::now());
                r.len()
            };
            Box::pin(std::future::ready(if n < 3 {
                ActionOutcome {
                    result: Err(ActionError::new("test.flaky", format!("run {n} fails"))),
                    data: None,
                }
            } else {
                ok(json!({"run": n}))
            }))
        })
    };
    let b = Bench::new(vec![("flaky", flaky)]);
    b.template(
        "node",
        "1.0.0",
        "  flaky: {retry: {tries: 4, delay: 0.05, backoff: 2}}",
        &["flaky"],
    );
    let svc = b.service("node", "n1").await;
    let task = b.robot.schedule(&svc, "flaky", json!({})).await.unwrap();
    let done = task.done().await;
    assert_eq!(done.state, TaskState::Ok, "{done:?}");
    assert_eq!(done.result, Some(json!({"run": 3})));
    assert_eq!(done.attempt, 3);
    let eco = done.eco.expect("the failed runs are counted");
    assert_eq!((eco.count, eco.category.as_str()), (2, "test.flaky"));
    let runs = runs.lock().unwrap();
    // 50 ms before the second run, 100 ms before the third.
    assert!(runs[1] - runs[0] >= Duration::from_millis(50));
    assert!(runs[2] - runs[1] >= Duration::from_millis(100));
}

#[tokio::test]
async fn a_retried_action_gives_up_after_its_tries() {
    let failing: Behaviour = Arc::new(|_call| {
        Box::pin(std::future::ready(ActionOutcome {
            result: Err(ActionError::new("test.broken", "always")),
            data: None,
        }))
    });
    let b = Bench::new(vec![("broken", failing)]);
    b.template(
        "node",
        "1.0.0",
        "  broken: {retry: {tries: 3, delay: 0}}",
        &["broken"],
    );
    let svc = b.service("node", "n1").await;
    let done = b
        .robot
        .schedule(&svc, "broken", json!({}))
        .await
        .unwrap()
        .done()
        .await;
    assert_eq!(done.state, TaskState::Error);
    assert_eq!(done.attempt, 3);
    assert_eq!(done.eco.unwrap().count, 3);
}

#[tokio::test]
async fn a_recurring_action_runs_again_and_again() {
    let log = Log::default();
    let b = Bench::new(vec![("tick", logged(&log))]);
    b.template("node", "1.0.0", "  tick: {recurring: 0.05}", &["tick"]);
    let _svc = b.service("node", "n1").await;
    assert!(
        eventually(Duration::from_secs(10), || log.entries().len() >= 3).await,
        "ran {} times",
        log.entries().len()
    );
}

#[tokio::test]
async fn a_task_waiting_on_one_queued_behind_itself_is_a_deadlock() {
    let outcome = Arc::new(Mutex::new(None));
    let waits: Behaviour = {
        let outcome = outcome.clone();
        Arc::new(move |call| {
            let outcome = outcome.clone();
            Box::pin(async move {
                let me = call.task.clone().expect("an action runs in a task");
                let later = call
                    .robot
                    .schedule(&call.service, "step", json!({}))
                    .await
                    .unwrap();
                let waited = call
                    .robot
                    .wait_task(Some(&me), &later, Some(Duration::from_secs(10)))
                    .await;
                let deadlock = matches!(waited, Err(WaitError::Deadlock(_)));
                *outcome.lock().unwrap() = Some(deadlock);
                ok(Value::Null)
            })
        })
    };
    let log = Log::default();
    let b = Bench::new(vec![("waits", waits), ("step", logged(&log))]);
    b.template("node", "1.0.0", "  step: {}", &["step", "waits"]);
    let svc = b.service("node", "n1").await;
    let started = Instant::now();
    let task = b.robot.schedule(&svc, "waits", json!({})).await.unwrap();
    assert_eq!(task.done().await.state, TaskState::Ok);
    assert_eq!(*outcome.lock().unwrap(), Some(true), "the wait was refused");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "at once, not at the timeout"
    );
}

#[tokio::test]
async fn an_upgrade_waits_for_the_running_task_and_the_waiting_ones_run_on_the_new_version() {
    let versions = Arc::new(Mutex::new(Vec::<String>::new()));
    let gate = Arc::new(Semaphore::new(0));
    let version_of = |versions: &Arc<Mutex<Vec<String>>>, gate: Option<Arc<Semaphore>>| {
        let versions = versions.clone();
        let behaviour: Behaviour = Arc::new(move |call: ActionCall| {
            let (versions, gate) = (versions.clone(), gate.clone());
            Box::pin(async move {
                if let Some(g) = gate {
                    g.acquire().await.unwrap().forget();
                }
                let uid = call.service.template().uid.to_string();
                versions.lock().unwrap().push(uid);
                ok(Value::Null)
            })
        });
        behaviour
    };
    let b = Bench::new(vec![
        ("hold", version_of(&versions, Some(gate.clone()))),
        ("which", version_of(&versions, None)),
    ]);
    b.template("node", "1.0.0", "  which: {}", &["hold", "which"]);
    let svc = b.service("node", "n1").await;
    let held = b.robot.schedule(&svc, "hold", json!({})).await.unwrap();
    let waiting = b.robot.schedule(&svc, "which", json!({})).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || svc.running_task().is_some()).await);

    b.template("node", "1.1.0", "  which: {}", &["hold", "which"]);
    let robot = b.robot.clone();
    let upgrade = tokio::spawn(async move { robot.upgrade_services().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !upgrade.is_finished(),
        "the upgrade waits for the running task"
    );
    gate.add_permits(1);
    let report = tokio::time::timeout(Duration::from_secs(10), upgrade)
        .await
        .expect("the upgrade ends")
        .unwrap();
    assert_eq!(held.done().await.state, TaskState::Ok);
    assert_eq!(waiting.done().await.state, TaskState::Ok);
    assert!(svc.template_uid().ends_with("/node/1.1.0"), "{report:?}");
    let versions = versions.lock().unwrap();
    assert!(versions[0].ends_with("/node/1.0.0"), "{versions:?}");
    assert!(versions[1].ends_with("/node/1.1.0"), "{versions:?}");
}

#[tokio::test]
async fn a_shutdown_leaves_no_task_of_the_robot_running() {
    let (log, gate) = (Log::default(), Arc::new(Semaphore::new(0)));
    let b = Bench::new(vec![("tick", logged(&log)), ("gate", gated(&log, &gate))]);
    b.template(
        "node",
        "1.0.0",
        "  tick: {recurring: 0.02}",
        &["gate", "tick"],
    );
    let svc = b.service("node", "n1").await;
    let ticks = || {
        log.entries()
            .iter()
            .filter(|e| e.starts_with("tick"))
            .count()
    };
    assert!(eventually(Duration::from_secs(5), || ticks() >= 2).await);
    // A task that would never end by itself.
    let held = b.robot.schedule(&svc, "gate", json!({})).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || held.state()
            == TaskState::Running)
        .await
    );
    assert!(
        b.robot.tasks_alive() >= 2,
        "the timer loop and the drive loop are counted"
    );

    let report = b
        .robot
        .shutdown(Duration::from_millis(100), Duration::from_secs(2))
        .await;
    assert_eq!(report.interrupted, 1, "{report:?}");
    assert!(report.store_flushed, "{report:?}");
    assert_eq!(report.left_running, 0, "{report:?}");
    assert_eq!(b.robot.tasks_alive(), 0);
    // The interrupted task is not finished (it runs again at the next
    // start), and the timer loop schedules nothing more.
    assert!(!held.state().is_done());
    let after = ticks();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(ticks(), after, "a recurring action ran after the shutdown");
}

/// The events of a subscription until none comes for 200 ms.
async fn drain(sub: &mut Subscription) -> Vec<Next> {
    let mut out = Vec::new();
    while let Ok(Some(n)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
        out.push(n);
    }
    out
}

fn kinds(events: &[Next]) -> Vec<String> {
    events
        .iter()
        .map(|n| match n {
            Next::Event(e) => e.what.kind().to_owned(),
            Next::Gap(g) => format!("gap {g:?}"),
        })
        .collect()
}

#[tokio::test]
async fn events_tell_a_service_s_life_in_order() {
    let log = Log::default();
    let b = Bench::new(vec![("step", logged(&log))]);
    b.template("node", "1.0.0", "  step: {}", &["step"]);
    let mut sub = b.robot.events().subscribe(None);
    let svc = b.service("node", "n1").await;
    let task = b.robot.schedule(&svc, "step", json!({})).await.unwrap();
    assert_eq!(task.done().await.state, TaskState::Ok);
    svc.state_set("network", "tcp", TagState::Ok);
    svc.state_set("network", "tcp", TagState::Ok); // no change, no event
    svc.state_delete("network", Some("tcp"));
    svc.log(LogLevel::Warning, "careful");
    b.robot.delete_service(svc.guid).await.unwrap();

    let events = drain(&mut sub).await;
    assert_eq!(
        kinds(&events),
        [
            "service.created",
            "log",
            "task.scheduled",
            "task.started",
            "task.finished",
            "state.changed",
            "state.changed",
            "log",
            "log",
            "service.deleted"
        ]
    );
    let ids: Vec<u64> = events
        .iter()
        .map(|n| match n {
            Next::Event(e) => e.id,
            Next::Gap(_) => 0,
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    assert_eq!(b.robot.events().next_id(), ids[ids.len() - 1] + 1);
    match &events[4] {
        Next::Event(e) => match &e.what {
            What::TaskFinished(t) => assert_eq!(t.guid, task.guid),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    match &events[7] {
        Next::Event(e) => match &e.what {
            What::Log(line) => assert_eq!(line.message, "careful"),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_resumes_after_an_id_and_is_told_what_it_missed() {
    let log = Log::default();
    let b = Bench::new(vec![("step", logged(&log))]);
    b.template("node", "1.0.0", "  step: {}", &["step"]);
    let svc = b.service("node", "n1").await;
    let first = b.robot.events().next_id();
    // A slow subscriber: it reads nothing while the robot works.
    let mut slow = b.robot.events().subscribe(Some(first - 1));
    assert!(!slow.replaying());
    let mut tasks = Vec::new();
    // Three events a task: past the live lag and past the window.
    for _ in 0..(events::WINDOW / 3 + 100) {
        tasks.push(b.robot.schedule(&svc, "step", json!({})).await.unwrap());
    }
    for t in &tasks {
        assert_eq!(t.done().await.state, TaskState::Ok);
    }
    let next = b.robot.events().next_id();
    let published = next - first;
    assert!(published as usize > events::WINDOW);

    // The slow one was not waited for; it is told it missed some, then goes on.
    match slow.next().await {
        Some(Next::Gap(Gap::Missed(n))) => assert!(n > 0),
        other => panic!("expected a gap, got {other:?}"),
    }
    assert!(matches!(slow.next().await, Some(Next::Event(_))));

    // Resuming after the last event: nothing to replay.
    let caught_up = b.robot.events().subscribe(Some(next - 1));
    assert!(!caught_up.replaying());
    // Resuming after an event no longer kept: a gap of exactly those missed.
    let mut late = b.robot.events().subscribe(Some(first));
    let oldest_kept = next - events::WINDOW as u64;
    match late.next().await {
        Some(Next::Gap(Gap::Missed(n))) => assert_eq!(n, oldest_kept - first - 1),
        other => panic!("expected a gap, got {other:?}"),
    }
    match late.next().await {
        Some(Next::Event(e)) => assert_eq!(e.id, oldest_kept),
        other => panic!("{other:?}"),
    }
    // Resuming after a recent one: exactly the ones after it.
    let mut recent = b.robot.events().subscribe(Some(next - 4));
    let got = drain(&mut recent).await;
    assert_eq!(got.len(), 3, "{:?}", kinds(&got));
    // An id this run never gave (an earlier run's, or made up).
    for id in [1, next + 10] {
        let mut other = b.robot.events().subscribe(Some(id));
        assert!(matches!(other.next().await, Some(Next::Gap(Gap::Unknown))));
    }
}

#[tokio::test]
async fn a_subscriber_to_one_service_gets_that_service_s_events_only() {
    let log = Log::default();
    let b = Bench::new(vec![("step", logged(&log))]);
    b.template("node", "1.0.0", "  step: {}", &["step"]);
    let n1 = b.service("node", "n1").await;
    let n2 = b.service("node", "n2").await;
    let events = b.robot.events();
    let mut live = events.subscribe_to(n1.guid, Some(events.next_id() - 1));
    for svc in [&n2, &n1, &n2] {
        let t = b.robot.schedule(svc, "step", json!({})).await.unwrap();
        assert_eq!(t.done().await.state, TaskState::Ok);
    }
    let got = drain(&mut live).await;
    assert_eq!(
        kinds(&got),
        ["task.scheduled", "task.started", "task.finished"]
    );
    // The replay is filtered too.
    let mut replay = events.subscribe_to(n1.guid, None);
    let got = drain(&mut replay).await;
    assert!(got.iter().all(|n| match n {
        Next::Event(e) => e.service.guid == n1.guid,
        Next::Gap(_) => false,
    }));
    assert_eq!(kinds(&got)[..2], ["service.created", "log"]);
    assert_eq!(got.len(), 5);
}
