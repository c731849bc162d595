//! A task whose action left the data as it was does not hold its service's
//! queue while its outcome is committed: the next task starts at once. Until
//! the store confirms that outcome, the task is still running to every
//! reader, found and listed once, its waiters are not told, and the service
//! is not idle (a deletion waits). A store that holds every commit until the
//! test lets them through shows each of these moments.

mod common;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::json;
use uuid::Uuid;
use zrobot_core::engine::BoxFuture;
use zrobot_core::store::{CommitDone, Loaded, MemoryStore, Store, StoreError, StoreOp};
use zrobot_core::{Robot, RobotConfig, TaskRecord, TaskState};
use zrobot_lua::{LuaConfig, LuaEngine};

/// How one held commit is told its outcome.
enum Told {
    Call(CommitDone),
    Wake(tokio::sync::oneshot::Sender<Result<(), StoreError>>),
}

type Held = (Vec<StoreOp>, Told);

/// A memory store whose commits, while it is closed, wait in order until
/// [`Gate::open`]: a disk that is slow to confirm.
#[derive(Default)]
struct Gate {
    store: MemoryStore,
    /// The commits held, in order, while closed.
    closed: Mutex<Option<Vec<Held>>>,
}

impl Gate {
    fn close(&self) {
        *self.closed.lock().unwrap() = Some(Vec::new());
    }

    /// Whether the deletion of a service is among the held commits.
    fn holds_deletion(&self) -> bool {
        let closed = self.closed.lock().unwrap();
        closed
            .iter()
            .flatten()
            .flat_map(|(ops, _)| ops)
            .any(|op| matches!(op, StoreOp::DeleteService(_)))
    }

    /// Whether the outcome of task `guid` is among the held commits.
    fn holds_outcome(&self, guid: Uuid) -> bool {
        let closed = self.closed.lock().unwrap();
        closed
            .iter()
            .flatten()
            .flat_map(|(ops, _)| ops)
            .any(|op| matches!(op, StoreOp::PutTask(r) if r.guid == guid && r.state.is_done()))
    }

    /// Lands every held commit in its order, telling each once it landed,
    /// and lets the next ones through.
    fn open(&self) {
        let held = self.closed.lock().unwrap().take().unwrap_or_default();
        for (ops, told) in held {
            self.land(ops, told);
        }
    }

    fn land(&self, ops: Vec<StoreOp>, told: Told) {
        match told {
            Told::Call(done) => self.store.commit_then(ops, done),
            Told::Wake(tell) => {
                // The memory store applies a commit when it is made.
                drop(self.store.commit(ops));
                let _ = tell.send(Ok(()));
            }
        }
    }

    /// Holds `ops` while the gate is closed, lands them otherwise.
    fn pass(&self, ops: Vec<StoreOp>, told: Told) {
        let mut closed = self.closed.lock().unwrap();
        match closed.as_mut() {
            Some(held) => held.push((ops, told)),
            None => {
                drop(closed);
                self.land(ops, told);
            }
        }
    }
}

impl Store for Gate {
    fn commit(&self, ops: Vec<StoreOp>) -> BoxFuture<'static, Result<(), StoreError>> {
        let (tell, told) = tokio::sync::oneshot::channel();
        self.pass(ops, Told::Wake(tell));
        Box::pin(async move {
            told.await.unwrap_or_else(|_| {
                Err(StoreError::Stopped {
                    db: "the test store".into(),
                })
            })
        })
    }

    fn commit_then(&self, ops: Vec<StoreOp>, done: CommitDone) {
        self.pass(ops, Told::Call(done));
    }

    fn load(&self) -> BoxFuture<'static, Result<Loaded, StoreError>> {
        self.store.load()
    }

    fn task(
        &self,
        service: Uuid,
        guid: Uuid,
    ) -> BoxFuture<'static, Result<Option<TaskRecord>, StoreError>> {
        self.store.task(service, guid)
    }

    fn finished_tasks(
        &self,
        service: Uuid,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<TaskRecord>, StoreError>> {
        self.store.finished_tasks(service, limit)
    }

    fn healthy(&self) -> bool {
        self.store.healthy()
    }
}

const MANIFEST: &str = "version: 1.0.0\n";
const CODE: &str = r#"
local t = {}
function t.hold(self) robot.sleep(0.5) return "done" end
function t.noop(self) return "done" end
function t.count(self) self.data.n = (self.data.n or 0) + 1; return self.data.n end
function t.read(self) return self.data.n end
return t
"#;

fn gated_robot() -> (Robot, Arc<Gate>, Repo) {
    let gate = Arc::new(Gate::default());
    let robot = Robot::new(
        RobotConfig::default(),
        Arc::new(LuaEngine::new(LuaConfig::default())),
        gate.clone(),
    );
    let repo = Repo::new();
    repo.template("t", MANIFEST, CODE);
    load(&robot, &repo);
    (robot, gate, repo)
}

/// Whether `fut` is still pending after a while.
async fn still_pending(fut: impl Future) -> bool {
    tokio::time::timeout(Duration::from_millis(200), fut)
        .await
        .is_err()
}

/// The ids of `records`, in their order.
fn guids(records: &[TaskRecord]) -> Vec<Uuid> {
    records.iter().map(|r| r.guid).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_not_yet_durable_is_running_found_once_and_not_told() {
    let (robot, gate, _repo) = gated_robot();
    let svc = create(&robot, "t", "s", json!({})).await;
    // While `hold` sleeps, the rest queue behind it; then the gate closes.
    let h = robot.schedule(&svc, "hold", json!({})).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || h.state() == TaskState::Running).await);
    let a = robot.schedule(&svc, "noop", json!({})).await.unwrap();
    let b = robot.schedule(&svc, "noop", json!({})).await.unwrap();
    let c = robot.schedule(&svc, "count", json!({})).await.unwrap();
    let d = robot.schedule(&svc, "read", json!({})).await.unwrap();
    gate.close();
    assert_eq!(
        h.state(),
        TaskState::Running,
        "hold ended before the gate closed"
    );
    // The outcomes of h, a and b are held and the queue went on; c changed
    // the data, so d waits until c's outcome is durable.
    assert!(eventually(Duration::from_secs(10), || gate.holds_outcome(c.guid)).await);
    for t in [&h, &a, &b] {
        assert!(gate.holds_outcome(t.guid));
    }
    for t in [&h, &a, &b, &c] {
        assert_eq!(t.state(), TaskState::Running);
        let found = robot.task(&svc, t.guid).await.unwrap();
        assert_eq!(found.state, TaskState::Running);
    }
    assert_eq!(d.state(), TaskState::New);
    assert!(
        still_pending(a.done()).await,
        "a waiter was told before the outcome was durable"
    );
    let listed = robot.tasks(&svc, true).await.unwrap();
    assert_eq!(guids(&listed), vec![h.guid, a.guid, b.guid, c.guid, d.guid]);

    gate.open();
    for t in [&h, &a, &b] {
        let r = tokio::time::timeout(Duration::from_secs(10), t.done())
            .await
            .unwrap();
        assert_eq!((r.state, r.result), (TaskState::Ok, Some(json!("done"))));
    }
    let r = tokio::time::timeout(Duration::from_secs(10), d.done())
        .await
        .unwrap();
    assert_eq!(
        r.result,
        Some(json!(1)),
        "d did not read what c left: {r:?}"
    );
    assert_eq!(svc.data()["n"], json!(1));
    // Each once, now from the store.
    let listed = robot.tasks(&svc, true).await.unwrap();
    assert_eq!(guids(&listed), vec![h.guid, a.guid, b.guid, c.guid, d.guid]);
    assert!(
        listed.iter().all(|r| r.state == TaskState::Ok),
        "{listed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_waits_for_the_outcomes_on_their_way() {
    let (robot, gate, _repo) = gated_robot();
    let svc = create(&robot, "t", "s", json!({})).await;
    let h = robot.schedule(&svc, "hold", json!({})).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || h.state() == TaskState::Running).await);
    let e = robot.schedule(&svc, "noop", json!({})).await.unwrap();
    gate.close();
    assert!(eventually(Duration::from_secs(10), || gate.holds_outcome(e.guid)).await);
    assert!(gate.holds_outcome(h.guid));
    let deleting = tokio::spawn({
        let robot = robot.clone();
        let guid = svc.guid;
        async move { robot.delete_service(guid).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !gate.holds_deletion(),
        "the service's deletion was handed to the store before its outcomes were durable"
    );
    assert!(robot.service(svc.guid).is_some());
    gate.open();
    tokio::time::timeout(Duration::from_secs(10), deleting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(h.state(), TaskState::Ok);
    assert_eq!(e.state(), TaskState::Ok);
    assert!(robot.service(svc.guid).is_none());
}
