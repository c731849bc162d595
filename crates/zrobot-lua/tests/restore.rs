//! A robot started on a store that already holds services and tasks: what
//! comes back, in which order, and what waits for its template or its validate.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use zrobot_core::store::{MemoryStore, ServiceRecord, Store, StoreOp};
use zrobot_core::{Priority, Robot, RobotConfig, ServiceStatus, TaskRecord, TaskState};
use zrobot_lua::{LuaConfig, LuaEngine};

const REC_LUA: &str = r#"
local r = {}
function r.validate(self)
  if self.data.gate ~= "" then
    local ok = robot.exec({"test", "-e", self.data.gate})
    if ok.status ~= 0 then error("gate file missing") end
  end
end
function r.note(self, args) table.insert(self.data.notes, args.what) end
function r.tick(self) self.data.ticks = self.data.ticks + 1 end
return r
"#;

fn rec_yaml(version: &str) -> String {
    format!(
        "version: {version}\ndata: {{type: object, properties: {{notes: {{type: array, default: []}}, gate: {{type: string, default: \"\"}}, ticks: {{type: integer, default: 0}}}}}}\nactions: {{tick: {{recurring: 0.05}}}}\n"
    )
}

fn service(name: &str, uid: &str, data: serde_json::Value) -> ServiceRecord {
    ServiceRecord {
        guid: uuid::Uuid::new_v4(),
        name: name.into(),
        template_uid: uid.into(),
        public: true,
        data,
        state: [(
            "actions".to_string(),
            [("install".to_string(), zrobot_core::TagState::Ok)].into(),
        )]
        .into(),
        secrets: vec!["hash1".into()],
        created: zrobot_core::time::now(),
    }
}

fn task(
    svc: &ServiceRecord,
    seq: u64,
    what: &str,
    state: TaskState,
    attempt: u32,
    priority: Priority,
) -> TaskRecord {
    TaskRecord {
        guid: uuid::Uuid::new_v4(),
        service_guid: svc.guid,
        service_name: svc.name.clone(),
        template_uid: svc.template_uid.clone(),
        action_name: "note".into(),
        args: json!({"what": what}),
        priority,
        seq,
        state,
        attempt,
        created: zrobot_core::time::now(),
        started: None,
        duration: None,
        result: None,
        eco: None,
        trace: None,
        key: None,
    }
}

fn robot_on(store: Arc<MemoryStore>) -> Robot {
    Robot::new(
        RobotConfig::default(),
        Arc::new(LuaEngine::new(LuaConfig::default())),
        store,
    )
}

#[tokio::test]
async fn services_and_waiting_tasks_come_back_in_order() {
    let repo = Repo::new();
    repo.template("rec", &rec_yaml("1.0.0"), REC_LUA);
    let store = Arc::new(MemoryStore::new());
    let uid = "github.com/acme/templates/rec/1.0.0";
    let a = service("a", uid, json!({"notes": [], "gate": "", "ticks": 0}));
    let running = task(
        &a,
        10,
        "was running",
        TaskState::Running,
        1,
        Priority::Normal,
    );
    let ops = vec![
        StoreOp::PutService(a.clone()),
        StoreOp::PutTask(task(&a, 12, "second", TaskState::New, 0, Priority::Normal)),
        StoreOp::PutTask(running.clone()),
        StoreOp::PutTask(task(&a, 13, "third", TaskState::New, 0, Priority::Normal)),
        StoreOp::PutTask(task(&a, 14, "system", TaskState::New, 0, Priority::System)),
        StoreOp::PutSetting {
            key: "webhooks".into(),
            value: json!([{"id": "1"}]),
        },
    ];
    store.commit(ops).await.unwrap();

    let robot = robot_on(store.clone());
    load(&robot, &repo);
    let report = robot.restore().await.unwrap();
    assert_eq!(report.services, 1);
    assert_eq!(report.waiting_tasks, 4);
    assert!(report.fallbacks.is_empty() && report.missing.is_empty());
    assert_eq!(robot.setting("webhooks"), Some(json!([{"id": "1"}])));

    let svc = robot.service_by_name("a").unwrap();
    assert_eq!(svc.guid, a.guid);
    assert!(svc.public);
    assert_eq!(svc.secret_hashes(), vec!["hash1".to_string()]);
    assert_eq!(svc.state()["actions"]["install"].as_str(), "ok");
    assert!(
        eventually(Duration::from_secs(10), || svc.data()["notes"]
            .as_array()
            .is_some_and(|n| n.len() == 4))
        .await,
        "{:?}",
        svc.data()
    );
    // The system task first, then the normal ones in their original order,
    // the one that was running first among them.
    assert_eq!(
        svc.data()["notes"],
        json!(["system", "was running", "second", "third"])
    );
    let again = robot.task(&svc, running.guid).await.unwrap();
    assert_eq!(again.state, TaskState::Ok);
    assert_eq!(again.attempt, 2);
    // Recurring actions resume.
    assert!(
        eventually(Duration::from_secs(10), || svc.data()["ticks"]
            .as_i64()
            .unwrap_or(0)
            >= 2)
        .await
    );
    // New tasks queue after the restored ones (seq continues).
    let t = robot
        .schedule(&svc, "note", json!({"what": "new"}))
        .await
        .unwrap();
    assert!(t.record().seq > 14);
}

#[tokio::test]
async fn a_service_that_fails_validate_runs_nothing_until_it_passes() {
    let repo = Repo::new();
    repo.template("rec", &rec_yaml("1.0.0"), REC_LUA);
    let gate_dir = tempfile::tempdir().unwrap();
    let gate = gate_dir.path().join("gate");
    let store = Arc::new(MemoryStore::new());
    let a = service(
        "a",
        "github.com/acme/templates/rec/1.0.0",
        json!({"notes": [], "gate": path_str(&gate), "ticks": 0}),
    );
    store
        .commit(vec![
            StoreOp::PutService(a.clone()),
            StoreOp::PutTask(task(&a, 1, "queued", TaskState::New, 0, Priority::Normal)),
        ])
        .await
        .unwrap();
    let robot = robot_on(store);
    load(&robot, &repo);
    robot.restore().await.unwrap();
    let svc = robot.service_by_name("a").unwrap();
    assert!(
        eventually(
            Duration::from_secs(5),
            || matches!(svc.status(), ServiceStatus::Invalid(m) if m.contains("gate file missing"))
        )
        .await,
        "{:?}",
        svc.status()
    );
    assert!(svc
        .log_lines()
        .iter()
        .any(|l| l.message.contains("validate failed")));
    assert_eq!(svc.queue_len(), 1);
    assert_eq!(svc.data()["notes"], json!([]));
    std::fs::write(&gate, "").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || svc.data()["notes"]
            == json!(["queued"]))
        .await
    );
    assert_eq!(svc.status(), ServiceStatus::Ok);
}

#[tokio::test]
async fn missing_template_versions_fall_back_or_wait() {
    let store = Arc::new(MemoryStore::new());
    let old = service(
        "old",
        "github.com/acme/templates/rec/0.9.0",
        json!({"notes": []}),
    );
    let gone = service("gone", "github.com/acme/templates/other/1.0.0", json!({}));
    store
        .commit(vec![
            StoreOp::PutService(old.clone()),
            StoreOp::PutService(gone.clone()),
            StoreOp::PutTask(task(&gone, 1, "kept", TaskState::New, 0, Priority::Normal)),
        ])
        .await
        .unwrap();
    let repo = Repo::new();
    repo.template("rec", &rec_yaml("1.0.0"), REC_LUA);
    let robot = robot_on(store);
    load(&robot, &repo);
    let report = robot.restore().await.unwrap();
    assert_eq!(
        report.fallbacks,
        vec![(
            "old".to_string(),
            "github.com/acme/templates/rec/0.9.0".to_string(),
            "github.com/acme/templates/rec/1.0.0".to_string()
        )]
    );
    assert_eq!(
        report.missing,
        vec![(
            "gone".to_string(),
            "github.com/acme/templates/other/1.0.0".to_string()
        )]
    );
    // Its version is gone: it moves to the loaded one, as a checkout would.
    let svc = robot.service_by_name("old").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || svc.log_lines().iter().any(
            |l| l
                .message
                .contains("moved from github.com/acme/templates/rec/0.9.0 (no longer loaded)")
        ))
        .await,
        "{:?}",
        svc.log_lines()
    );
    assert_eq!(svc.status(), ServiceStatus::Ok);
    assert!(robot.service_by_name("gone").is_none());
    assert_eq!(robot.missing_services().len(), 1);

    // The template arrives: the service comes back with its task.
    let other = Repo::new();
    other.template(
        "other",
        "version: 1.0.0\n",
        "return { note = function(self, args) self.data.seen = args.what end }",
    );
    load(&robot, &other);
    assert!(
        eventually(Duration::from_secs(10), || robot
            .service_by_name("gone")
            .is_some_and(|s| s.data()["seen"] == json!("kept")))
        .await
    );
    assert!(robot.missing_services().is_empty());
}

/// After a start, every service runs `validate` in one pass; a service a
/// task is scheduled on runs it then, not in its turn, and one with waiting
/// tasks runs it before the quiet ones: a start with many services does not
/// hold a task until the pass reaches its service. Each `validate` runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_runs_first_where_tasks_wait() {
    const SLOW_LUA: &str = r#"
local s = {}
function s.validate(self)
  robot.sleep(0.01)
  self.log:info("validated")
end
function s.noop(self) end
return s
"#;
    let repo = Repo::new();
    repo.template("slow", "version: 1.0.0\n", SLOW_LUA);
    let store = Arc::new(MemoryStore::new());
    let uid = "github.com/acme/templates/slow/1.0.0";
    // 600 services at 10 ms each: the whole pass takes 6 s or more.
    let records: Vec<ServiceRecord> = (0..600)
        .map(|i| service(&format!("s{i:03}"), uid, json!({})))
        .collect();
    let mut ops: Vec<StoreOp> = records.iter().cloned().map(StoreOp::PutService).collect();
    let waiting = &records[599];
    ops.push(StoreOp::PutTask(task(
        waiting,
        1,
        "restored",
        TaskState::New,
        0,
        Priority::Normal,
    )));
    store.commit(ops).await.unwrap();

    let robot = robot_on(store.clone());
    load(&robot, &repo);
    robot.restore().await.unwrap();
    // The store gives the services in no set order, so the pass reaches
    // each of 20 services anywhere in its 6 s; all of them must run a task
    // within 2 s.
    let started = std::time::Instant::now();
    let mut scheduled = Vec::new();
    for i in 0..20 {
        let svc = robot.service_by_name(&format!("s{i:03}")).unwrap();
        scheduled.push(robot.schedule(&svc, "noop", json!({})).await.unwrap());
    }
    for t in &scheduled {
        let done = tokio::time::timeout(Duration::from_secs(2), t.done())
            .await
            .expect("a task waited for the pass to reach its service");
        assert_eq!(done.state, TaskState::Ok, "{done:?}");
    }
    let late = robot.service_by_name("s000").unwrap();
    let busy = robot.service_by_name("s599").unwrap();
    assert!(
        eventually(Duration::from_secs(3), || busy.queue_len() == 0
            && busy.running_task().is_none())
        .await,
        "the restored task waited for the pass"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // The pass goes on and validates the rest, `s598` not again.
    let quiet = robot.service_by_name("s300").unwrap();
    assert!(
        eventually(Duration::from_secs(30), || quiet.status()
            == ServiceStatus::Ok)
        .await
    );
    let validated = |svc: &zrobot_core::Service| {
        svc.log_lines()
            .iter()
            .filter(|l| l.message == "validated")
            .count()
    };
    assert!(eventually(Duration::from_secs(30), || validated(&quiet) == 1).await);
    assert_eq!(validated(&late), 1);
    assert_eq!(validated(&busy), 1);
}
