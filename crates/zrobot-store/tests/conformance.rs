//! One conformance suite for every [`Store`]: each behaviour is a function run
//! against the in-memory store of the core, a SQLite database file, and an
//! in-memory SQLite database. Behaviours only SQLite has (reopening, schema
//! versions, failing commits, the extra tables) follow the suite.

use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use serde_json::json;
use uuid::Uuid;
use zrobot_core::service::{StateTable, TagState};
use zrobot_core::store::{
    KeyedTask, MemoryStore, Retention, ServiceRecord, Store, StoreOp, KEY_LIFETIME_SECS,
};
use zrobot_core::task::{Eco, Priority, TaskRecord, TaskState, TaskTrace};
use zrobot_store::{SqliteStore, TemplateRepo, Webhook};

#[derive(Clone, Copy)]
enum Kind {
    Memory,
    SqliteFile,
    SqliteMemory,
}

/// A backend under test, with the directory a database file lives in.
struct Backend {
    kind: Kind,
    dir: tempfile::TempDir,
}

/// An open store, and the same store as a [`SqliteStore`] when it is one.
struct Subject {
    store: Arc<dyn Store>,
    sqlite: Option<Arc<SqliteStore>>,
}

impl Backend {
    fn new(kind: Kind) -> Backend {
        Backend {
            kind,
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("robot.db")
    }

    fn open(&self, retention: Retention) -> Result<Subject> {
        let sqlite = match self.kind {
            Kind::Memory => {
                return Ok(Subject {
                    store: Arc::new(MemoryStore::with_retention(retention)),
                    sqlite: None,
                })
            }
            Kind::SqliteFile => SqliteStore::open(&self.path(), retention)?,
            Kind::SqliteMemory => SqliteStore::open_in_memory(retention)?,
        };
        let sqlite = Arc::new(sqlite);
        Ok(Subject {
            store: sqlite.clone(),
            sqlite: Some(sqlite),
        })
    }
}

impl Subject {
    async fn commit(&self, ops: Vec<StoreOp>) -> Result<()> {
        Ok(self.store.commit(ops).await?)
    }

    /// Lets background work catch up: the memory store trims at once, SQLite in the background.
    async fn settle(&self) -> Result<()> {
        if let Some(sqlite) = &self.sqlite {
            sqlite.compact().await?;
        }
        Ok(())
    }

    async fn task(&self, service: &ServiceRecord, guid: Uuid) -> Result<Option<TaskRecord>> {
        Ok(self.store.task(service.guid, guid).await?)
    }

    async fn finished(&self, service: &ServiceRecord) -> Result<Vec<TaskRecord>> {
        Ok(self.store.finished_tasks(service.guid, usize::MAX).await?)
    }

    /// Every service, by name.
    async fn services(&self) -> Result<Vec<ServiceRecord>> {
        let mut services = self.store.load().await?.services;
        services.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(services)
    }
}

fn now() -> f64 {
    zrobot_core::time::now()
}

fn service(name: &str) -> ServiceRecord {
    let mut state = StateTable::new();
    state
        .entry("actions".to_owned())
        .or_default()
        .insert("install".to_owned(), TagState::Ok);
    state
        .entry("health".to_owned())
        .or_default()
        .insert("disk".to_owned(), TagState::Warning);
    ServiceRecord {
        guid: Uuid::new_v4(),
        name: name.to_owned(),
        template_uid: "github.com/zrobot/templates/node/0.0.1".to_owned(),
        public: name.len().is_multiple_of(2),
        data: json!({"name": name, "size": 1.5, "tags": ["a", "b"], "nested": {"empty": [], "none": null}}),
        state,
        secrets: vec![format!("hash-of-{name}"), "hash-shared".to_owned()],
        created: now(),
    }
}

fn waiting(service: &ServiceRecord, seq: u64) -> TaskRecord {
    TaskRecord {
        guid: Uuid::new_v4(),
        service_guid: service.guid,
        service_name: service.name.clone(),
        template_uid: service.template_uid.clone(),
        action_name: format!("action{seq}"),
        args: json!({"seq": seq, "text": "héllo"}),
        priority: if seq.is_multiple_of(3) {
            Priority::System
        } else {
            Priority::Normal
        },
        seq,
        state: TaskState::New,
        attempt: 0,
        created: now(),
        started: None,
        duration: None,
        result: None,
        eco: None,
        // Half the tasks were asked for by another task.
        trace: seq.is_multiple_of(2).then(|| TaskTrace {
            caller_task: Some(format!("caller-{seq}")),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
        }),
        // A quarter came with an idempotency key.
        key: seq.is_multiple_of(4).then(|| format!("key-{seq}")),
    }
}

fn finished(mut task: TaskRecord, ok: bool) -> TaskRecord {
    let t = now();
    task.attempt += 1;
    task.started = Some(t);
    task.duration = Some(0.25);
    if ok {
        task.state = TaskState::Ok;
        task.result = Some(json!({"done": task.seq}));
    } else {
        task.state = TaskState::Error;
        task.eco = Some(Eco {
            category: "action.failed".to_owned(),
            message: format!("run {} failed", task.seq),
            trace: "line 1\nline 2".to_owned(),
            count: 2,
            time_first: t - 1.0,
            time_last: t,
        });
    }
    task
}

fn seqs(tasks: &[TaskRecord]) -> Vec<u64> {
    tasks.iter().map(|t| t.seq).collect()
}

async fn services_are_put_saved_and_deleted(b: &Backend) -> Result<()> {
    let s = b.open(Retention::default())?;
    let (mut a, c) = (service("alpha"), service("charlie"));
    s.commit(vec![
        StoreOp::PutService(a.clone()),
        StoreOp::PutService(c.clone()),
    ])
    .await?;
    ensure!(s.services().await? == vec![a.clone(), c.clone()]);

    a.public = !a.public;
    a.secrets.push("hash-new".to_owned());
    s.commit(vec![StoreOp::PutService(a.clone())]).await?;
    a.data = json!({"replaced": true});
    a.state
        .entry("new".to_owned())
        .or_default()
        .insert("tag".to_owned(), TagState::Error);
    a.template_uid = "github.com/zrobot/templates/node/0.0.2".to_owned();
    s.commit(vec![
        StoreOp::SaveData {
            service: a.guid,
            data: Arc::new(a.data.clone()),
        },
        StoreOp::SaveState {
            service: a.guid,
            state: a.state.clone(),
        },
        StoreOp::SaveTemplate {
            service: a.guid,
            template_uid: a.template_uid.clone(),
        },
    ])
    .await?;
    ensure!(s.services().await? == vec![a.clone(), c.clone()]);

    s.commit(vec![StoreOp::DeleteService(c.guid)]).await?;
    ensure!(s.services().await? == vec![a.clone()]);
    ensure!(s.store.healthy());
    Ok(())
}

async fn a_task_is_inserted_started_and_finished(b: &Backend) -> Result<()> {
    let s = b.open(Retention::default())?;
    let svc = service("svc");
    let mut task = waiting(&svc, 7);
    s.commit(vec![
        StoreOp::PutService(svc.clone()),
        StoreOp::PutTask(task.clone()),
    ])
    .await?;
    ensure!(s.task(&svc, task.guid).await? == Some(task.clone()));

    task.attempt = 1;
    task.started = Some(now());
    task.state = TaskState::Running;
    s.commit(vec![StoreOp::TaskStarted {
        guid: task.guid,
        seq: task.seq,
        attempt: 1,
        started: task.started.unwrap_or_default(),
    }])
    .await?;
    ensure!(s.task(&svc, task.guid).await? == Some(task.clone()));
    ensure!(s.store.load().await?.waiting == vec![task.clone()]);

    let mut done = task.clone();
    done.state = TaskState::Ok;
    done.duration = Some(0.5);
    done.result = Some(json!({"answer": 42}));
    s.commit(vec![StoreOp::PutTask(done.clone())]).await?;
    ensure!(s.task(&svc, task.guid).await? == Some(done.clone()));
    ensure!(s.store.load().await?.waiting.is_empty());
    ensure!(s.finished(&svc).await? == vec![done.clone()]);

    let failed = finished(waiting(&svc, 8), false);
    s.commit(vec![StoreOp::PutTask(failed.clone())]).await?;
    ensure!(s.task(&svc, failed.guid).await? == Some(failed.clone()));
    ensure!(s.finished(&svc).await? == vec![done, failed]);
    ensure!(s.task(&svc, Uuid::new_v4()).await?.is_none());
    Ok(())
}

async fn load_returns_waiting_and_running_tasks_in_seq_order(b: &Backend) -> Result<()> {
    let s = b.open(Retention::default())?;
    let (x, y) = (service("x"), service("y"));
    let mut ops = vec![
        StoreOp::PutService(x.clone()),
        StoreOp::PutService(y.clone()),
    ];
    let mut expected = Vec::new();
    for seq in [5, 1, 9, 3, 7, 2, 8] {
        let svc = if seq % 2 == 0 { &x } else { &y };
        let task = waiting(svc, seq);
        ops.push(StoreOp::PutTask(task.clone()));
        expected.push(task);
    }
    let done = finished(waiting(&x, 4), true);
    ops.push(StoreOp::PutTask(done.clone()));
    s.commit(ops).await?;
    let started = now();
    s.commit(vec![StoreOp::TaskStarted {
        guid: expected[2].guid,
        seq: expected[2].seq,
        attempt: 3,
        started,
    }])
    .await?;
    expected[2].attempt = 3;
    expected[2].started = Some(started);
    expected[2].state = TaskState::Running;
    expected.sort_by_key(|t| t.seq);

    let loaded = s.store.load().await?;
    ensure!(
        seqs(&loaded.waiting) == vec![1, 2, 3, 5, 7, 8, 9],
        "{:?}",
        seqs(&loaded.waiting)
    );
    ensure!(loaded.waiting == expected);
    let mut services = loaded.services;
    services.sort_by(|a, b| a.name.cmp(&b.name));
    ensure!(services == vec![x, y]);
    Ok(())
}

async fn finished_tasks_are_the_newest_oldest_first(b: &Backend) -> Result<()> {
    let s = b.open(Retention::default())?;
    let (a, other) = (service("a"), service("other"));
    s.commit(vec![
        StoreOp::PutService(a.clone()),
        StoreOp::PutService(other.clone()),
    ])
    .await?;
    for seq in 0..10 {
        s.commit(vec![
            StoreOp::PutTask(finished(waiting(&a, seq), seq % 2 == 0)),
            StoreOp::PutTask(finished(waiting(&other, 100 + seq), true)),
        ])
        .await?;
    }
    // A task still waiting is not history.
    s.commit(vec![StoreOp::PutTask(waiting(&a, 50))]).await?;
    ensure!(seqs(&s.finished(&a).await?) == (0..10).collect::<Vec<_>>());
    ensure!(seqs(&s.store.finished_tasks(a.guid, 3).await?) == vec![7, 8, 9]);
    ensure!(s.store.finished_tasks(a.guid, 0).await?.is_empty());
    ensure!(seqs(&s.store.finished_tasks(other.guid, 2).await?) == vec![108, 109]);
    ensure!(s.store.finished_tasks(Uuid::new_v4(), 5).await?.is_empty());
    Ok(())
}

async fn retention_keeps_the_newest_by_count(b: &Backend) -> Result<()> {
    let s = b.open(Retention {
        max_tasks: 3,
        ..Retention::default()
    })?;
    let (a, other) = (service("a"), service("other"));
    s.commit(vec![
        StoreOp::PutService(a.clone()),
        StoreOp::PutService(other.clone()),
    ])
    .await?;
    let mut guids = Vec::new();
    for seq in 0..10 {
        let task = finished(waiting(&a, seq), true);
        guids.push(task.guid);
        s.commit(vec![StoreOp::PutTask(task)]).await?;
    }
    let kept = finished(waiting(&other, 100), true);
    s.commit(vec![StoreOp::PutTask(kept.clone())]).await?;
    s.settle().await?;
    ensure!(seqs(&s.finished(&a).await?) == vec![7, 8, 9]);
    ensure!(seqs(&s.store.finished_tasks(a.guid, 2).await?) == vec![8, 9]);
    ensure!(s.task(&a, guids[0]).await?.is_none());
    ensure!(s.task(&a, guids[6]).await?.is_none());
    ensure!(s.task(&a, guids[7]).await?.is_some());
    ensure!(s.finished(&other).await? == vec![kept]);
    Ok(())
}

async fn retention_drops_what_is_too_old(b: &Backend) -> Result<()> {
    let s = b.open(Retention {
        max_tasks: 100,
        max_age_secs: 3600.0,
    })?;
    let a = service("a");
    s.commit(vec![StoreOp::PutService(a.clone())]).await?;
    let mut old = Vec::new();
    for seq in 0..3 {
        let mut task = finished(waiting(&a, seq), true);
        task.created = now() - 7200.0;
        old.push(task.guid);
        s.commit(vec![StoreOp::PutTask(task)]).await?;
    }
    for seq in 3..5 {
        s.commit(vec![StoreOp::PutTask(finished(waiting(&a, seq), true))])
            .await?;
    }
    // A waiting task is never too old.
    let mut patient = waiting(&a, 5);
    patient.created = now() - 7200.0;
    s.commit(vec![StoreOp::PutTask(patient.clone())]).await?;
    s.settle().await?;
    ensure!(seqs(&s.finished(&a).await?) == vec![3, 4]);
    for guid in old {
        ensure!(s.task(&a, guid).await?.is_none());
    }
    ensure!(s.store.load().await?.waiting == vec![patient]);
    Ok(())
}

async fn deleting_a_service_deletes_its_tasks(b: &Backend) -> Result<()> {
    let s = b.open(Retention::default())?;
    let (gone, stays) = (service("gone"), service("stays"));
    let (w, r, f) = (
        waiting(&gone, 1),
        waiting(&gone, 2),
        finished(waiting(&gone, 3), true),
    );
    let keep = waiting(&stays, 4);
    s.commit(vec![
        StoreOp::PutService(gone.clone()),
        StoreOp::PutService(stays.clone()),
        StoreOp::PutTask(w.clone()),
        StoreOp::PutTask(r.clone()),
        StoreOp::PutTask(f.clone()),
        StoreOp::PutTask(keep.clone()),
        StoreOp::TaskStarted {
            guid: r.guid,
            seq: r.seq,
            attempt: 1,
            started: now(),
        },
    ])
    .await?;
    s.commit(vec![StoreOp::DeleteService(gone.guid)]).await?;
    for guid in [w.guid, r.guid, f.guid] {
        ensure!(s.task(&gone, guid).await?.is_none());
    }
    ensure!(s.finished(&gone).await?.is_empty());
    let loaded = s.store.load().await?;
    ensure!(loaded.waiting == vec![keep]);
    ensure!(loaded.services == vec![stays]);
    Ok(())
}

async fn a_removed_task_is_gone(b: &Backend) -> Result<()> {
    let s = b.open(Retention::default())?;
    let svc = service("svc");
    let (dropped, kept) = (waiting(&svc, 1), waiting(&svc, 2));
    s.commit(vec![
        StoreOp::PutService(svc.clone()),
        StoreOp::PutTask(dropped.clone()),
        StoreOp::PutTask(kept.clone()),
    ])
    .await?;
    s.commit(vec![StoreOp::RemoveTask {
        guid: dropped.guid,
        seq: dropped.seq,
    }])
    .await?;
    ensure!(s.task(&svc, dropped.guid).await?.is_none());
    ensure!(s.store.load().await?.waiting == vec![kept]);
    Ok(())
}

/// Commits take effect in the order they were made, even when nobody waits
/// for them (the robot drops the future of `TaskStarted`).
async fn commits_apply_in_call_order_awaited_or_not(b: &Backend) -> Result<()> {
    let s = b.open(Retention::default())?;
    let svc = service("svc");
    let task = waiting(&svc, 1);
    let started = now();
    drop(s.store.commit(vec![StoreOp::PutService(svc.clone())]));
    drop(s.store.commit(vec![StoreOp::PutTask(task.clone())]));
    drop(s.store.commit(vec![StoreOp::TaskStarted {
        guid: task.guid,
        seq: task.seq,
        attempt: 1,
        started,
    }]));
    for n in 0..5 {
        drop(s.store.commit(vec![StoreOp::SaveData {
            service: svc.guid,
            data: Arc::new(json!({ "n": n })),
        }]));
    }
    s.commit(vec![]).await?;
    let mut running = task.clone();
    running.attempt = 1;
    running.started = Some(started);
    running.state = TaskState::Running;
    ensure!(s.task(&svc, task.guid).await? == Some(running.clone()));
    ensure!(s.services().await?[0].data == json!({"n": 4}));

    // Inserted, started and finished in one go: only the end state remains.
    let quick = waiting(&svc, 2);
    let done = finished(quick.clone(), true);
    let first = s.store.commit(vec![StoreOp::PutTask(quick.clone())]);
    let second = s.store.commit(vec![StoreOp::TaskStarted {
        guid: quick.guid,
        seq: quick.seq,
        attempt: 1,
        started,
    }]);
    let third = s.store.commit(vec![StoreOp::PutTask(done.clone())]);
    third.await?;
    first.await?;
    second.await?;
    ensure!(s.task(&svc, quick.guid).await? == Some(done.clone()));
    ensure!(s.store.load().await?.waiting == vec![running]);
    ensure!(s.finished(&svc).await? == vec![done]);
    Ok(())
}

/// A commit told by a call (`commit_then`, as the robot stores the outcome of
/// a task that left the data as it was) keeps its place among the awaited
/// ones, lands like them, and is told its outcome once, in order, by the time
/// a later awaited commit resolved.
async fn commit_then_tells_each_caller_once_in_order(b: &Backend) -> Result<()> {
    let s = b.open(Retention::default())?;
    let svc = service("svc");
    s.commit(vec![StoreOp::PutService(svc.clone())]).await?;
    let told: Arc<std::sync::Mutex<Vec<(usize, bool)>>> = Arc::default();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let task = waiting(&svc, i as u64 + 1);
        s.store.commit_then(
            vec![StoreOp::PutTask(task.clone())],
            Box::new({
                let told = told.clone();
                move |result| told.lock().unwrap().push((i, result.is_ok()))
            }),
        );
        // Awaited ones in between, which must not overtake the calls.
        if i % 10 == 0 {
            drop(s.store.commit(vec![StoreOp::SaveData {
                service: svc.guid,
                data: Arc::new(json!({ "i": i })),
            }]));
        }
        tasks.push(finished(task, true));
    }
    for task in &tasks {
        s.store.commit_then(
            vec![StoreOp::PutTask(task.clone())],
            Box::new({
                let told = told.clone();
                let i = 50 + task.seq as usize - 1;
                move |result| told.lock().unwrap().push((i, result.is_ok()))
            }),
        );
    }
    s.commit(vec![]).await?;
    let told = told.lock().unwrap().clone();
    ensure!(
        told == (0..100).map(|i| (i, true)).collect::<Vec<_>>(),
        "{told:?}"
    );
    ensure!(s.finished(&svc).await? == tasks);
    ensure!(s.services().await?[0].data == json!({"i": 40}));
    Ok(())
}

async fn concurrent_commits_all_land(b: &Backend) -> Result<()> {
    const WRITERS: u64 = 20;
    const COMMITS: u64 = 500;
    let s = b.open(Retention::default())?;
    let services: Vec<ServiceRecord> = (0..WRITERS)
        .map(|i| service(&format!("svc{i:02}")))
        .collect();
    s.commit(services.iter().cloned().map(StoreOp::PutService).collect())
        .await?;
    let mut writers = tokio::task::JoinSet::new();
    for (i, svc) in services.iter().cloned().enumerate() {
        let store = s.store.clone();
        writers.spawn(async move {
            for n in 0..COMMITS {
                let seq = i as u64 * COMMITS + n;
                let task = waiting(&svc, seq);
                if n % 2 == 0 {
                    store.commit(vec![StoreOp::PutTask(task.clone())]).await?;
                }
                store
                    .commit(vec![
                        StoreOp::PutTask(finished(task, true)),
                        StoreOp::SaveData {
                            service: svc.guid,
                            data: Arc::new(json!({ "last": seq })),
                        },
                    ])
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = writers.join_next().await {
        joined??;
    }
    let loaded = s.store.load().await?;
    ensure!(loaded.waiting.is_empty());
    ensure!(loaded.services.len() == WRITERS as usize);
    for (i, svc) in services.iter().enumerate() {
        let base = i as u64 * COMMITS;
        let history = s.finished(svc).await?;
        ensure!(
            seqs(&history) == (base..base + COMMITS).collect::<Vec<_>>(),
            "service {i}"
        );
        let stored = loaded
            .services
            .iter()
            .find(|x| x.guid == svc.guid)
            .context("service")?;
        ensure!(stored.data == json!({ "last": base + COMMITS - 1 }));
    }
    ensure!(s.store.healthy());
    Ok(())
}

async fn settings_are_set_replaced_and_removed(b: &Backend) -> Result<()> {
    let s = b.open(Retention::default())?;
    let setting = |key: &str, value: serde_json::Value| StoreOp::PutSetting {
        key: key.to_owned(),
        value,
    };
    s.commit(vec![
        setting("robots", json!({"edge": {"url": "http://10.0.0.2:6600"}})),
        setting("webhooks", json!([])),
        setting("gone", json!(1)),
    ])
    .await?;
    s.commit(vec![
        setting("webhooks", json!(["https://example.com/hook"])),
        setting("gone", serde_json::Value::Null),
        setting("never", serde_json::Value::Null),
    ])
    .await?;
    let settings = s.store.load().await?.settings;
    let expected: std::collections::BTreeMap<String, serde_json::Value> = [
        (
            "robots".to_owned(),
            json!({"edge": {"url": "http://10.0.0.2:6600"}}),
        ),
        ("webhooks".to_owned(), json!(["https://example.com/hook"])),
    ]
    .into_iter()
    .collect();
    ensure!(settings == expected, "{settings:?}");
    Ok(())
}

async fn load_returns_the_keys_of_recent_keyed_tasks_oldest_first(b: &Backend) -> Result<()> {
    let s = b.open(Retention::default())?;
    let svc = service("svc");
    s.commit(vec![StoreOp::PutService(svc.clone())]).await?;
    // seq 0, 4, 8 carry a key (see `waiting`); 12 is keyed but finished
    // too long ago (first, as tasks finish in time order).
    let mut stale = finished(waiting(&svc, 12), true);
    stale.created = now() - KEY_LIFETIME_SECS - 10.0;
    stale.started = Some(stale.created);
    s.commit(vec![StoreOp::PutTask(stale)]).await?;
    let mut expected = Vec::new();
    for seq in 0..10 {
        let mut t = finished(waiting(&svc, seq), seq % 3 != 0);
        t.created = now() - 100.0 + seq as f64;
        if let Some(key) = &t.key {
            expected.push(KeyedTask {
                key: key.clone(),
                service: svc.guid,
                task: t.guid,
                created: t.created,
            });
        }
        s.commit(vec![StoreOp::PutTask(t)]).await?;
    }
    let queued = waiting(&svc, 16);
    s.commit(vec![StoreOp::PutTask(queued.clone())]).await?;

    let loaded = s.store.load().await?;
    ensure!(loaded.keys == expected, "{:?}", loaded.keys);
    ensure!(expected.len() == 3);
    // A waiting task's key is in its record.
    ensure!(loaded.waiting.len() == 1 && loaded.waiting[0].key == Some("key-16".to_owned()));
    ensure!(s.task(&svc, queued.guid).await?.and_then(|t| t.key) == queued.key);
    Ok(())
}

macro_rules! conformance {
    ($($behaviour:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() -> anyhow::Result<()> {
                    super::$behaviour(&super::Backend::new(super::Kind::Memory)).await
                }
            )*
        }
        mod sqlite_file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() -> anyhow::Result<()> {
                    super::$behaviour(&super::Backend::new(super::Kind::SqliteFile)).await
                }
            )*
        }
        mod sqlite_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() -> anyhow::Result<()> {
                    super::$behaviour(&super::Backend::new(super::Kind::SqliteMemory)).await
                }
            )*
        }
    };
}

conformance!(
    services_are_put_saved_and_deleted,
    a_task_is_inserted_started_and_finished,
    load_returns_waiting_and_running_tasks_in_seq_order,
    finished_tasks_are_the_newest_oldest_first,
    retention_keeps_the_newest_by_count,
    retention_drops_what_is_too_old,
    deleting_a_service_deletes_its_tasks,
    a_removed_task_is_gone,
    commits_apply_in_call_order_awaited_or_not,
    commit_then_tells_each_caller_once_in_order,
    concurrent_commits_all_land,
    settings_are_set_replaced_and_removed,
    load_returns_the_keys_of_recent_keyed_tasks_oldest_first,
);

// What only SQLite has.

#[tokio::test]
async fn a_reopened_database_keeps_everything() -> Result<()> {
    let b = Backend::new(Kind::SqliteFile);
    let (a, c) = (service("a"), service("c"));
    let queued = waiting(&a, 2);
    let mut running = waiting(&c, 1);
    let history: Vec<TaskRecord> = (10..15)
        .map(|seq| finished(waiting(&a, seq), seq % 2 == 0))
        .collect();
    let before = {
        let s = b.open(Retention::default())?;
        let mut ops = vec![
            StoreOp::PutService(a.clone()),
            StoreOp::PutService(c.clone()),
            StoreOp::PutTask(queued.clone()),
            StoreOp::PutTask(running.clone()),
            StoreOp::PutSetting {
                key: "robots".to_owned(),
                value: json!({"edge": "http://10.0.0.2:6600"}),
            },
        ];
        ops.extend(history.iter().cloned().map(StoreOp::PutTask));
        s.commit(ops).await?;
        let started = now();
        // Not awaited: dropping the store still lands it.
        let last = s.store.commit(vec![StoreOp::TaskStarted {
            guid: running.guid,
            seq: running.seq,
            attempt: 1,
            started,
        }]);
        running.attempt = 1;
        running.started = Some(started);
        running.state = TaskState::Running;
        drop(s);
        last.await?;
        vec![a.clone(), c.clone()]
    };
    let s = b.open(Retention::default())?;
    ensure!(s.services().await? == before);
    let loaded = s.store.load().await?;
    ensure!(loaded.waiting == vec![running.clone(), queued.clone()]);
    ensure!(loaded.settings.get("robots") == Some(&json!({"edge": "http://10.0.0.2:6600"})));
    ensure!(s.finished(&a).await? == history);
    ensure!(s.task(&c, running.guid).await? == Some(running));
    ensure!(s.task(&a, history[0].guid).await? == Some(history[0].clone()));
    Ok(())
}

#[tokio::test]
async fn a_database_of_a_newer_schema_is_refused() -> Result<()> {
    let b = Backend::new(Kind::SqliteFile);
    drop(b.open(Retention::default())?);
    let newer = SqliteStore::SCHEMA_VERSION + 1;
    rusqlite::Connection::open(b.path())?.pragma_update(None, "user_version", newer)?;
    let err =
        SqliteStore::open(&b.path(), Retention::default()).expect_err("a newer schema is refused");
    let message = err.to_string();
    ensure!(
        message.contains(&b.path().display().to_string()),
        "{message}"
    );
    ensure!(message.contains(&format!("version {newer}")), "{message}");
    ensure!(
        message.contains(&format!("up to {}", SqliteStore::SCHEMA_VERSION)),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_commit_fails_only_its_caller_and_the_store_is_unhealthy_until_one_succeeds(
) -> Result<()> {
    let b = Backend::new(Kind::SqliteFile);
    let s = b.open(Retention::default())?;
    s.commit(vec![StoreOp::PutService(service("first"))])
        .await?;
    // Stands in for a full disk or a read-only file: this one service can never
    // be written. The lock held meanwhile makes the commits below queue up, so
    // that the bad one lands in a group with good ones.
    let blocker = rusqlite::Connection::open(b.path())?;
    blocker.execute_batch(
        "BEGIN IMMEDIATE; \
         CREATE TRIGGER refuse BEFORE INSERT ON services WHEN NEW.name = 'refused' \
         BEGIN SELECT RAISE(ABORT, 'the disk is full'); END;",
    )?;
    let good: Vec<ServiceRecord> = (0..40).map(|i| service(&format!("good{i:02}"))).collect();
    let mut pending = Vec::new();
    for svc in &good {
        pending.push(s.store.commit(vec![StoreOp::PutService(svc.clone())]));
    }
    // A commit told by a call fails only its caller too.
    let (tell, told) = tokio::sync::oneshot::channel();
    s.store.commit_then(
        vec![StoreOp::PutService(service("refused"))],
        Box::new(move |result| {
            let _ = tell.send(result);
        }),
    );
    // Last, so that no later commit makes the store healthy again.
    pending.push(s.store.commit(vec![
        StoreOp::PutService(service("also-lost")),
        StoreOp::PutService(service("refused")),
    ]));
    blocker.execute_batch("COMMIT")?;
    let called = told.await.context("the call was dropped untold")?;
    ensure!(
        called
            .as_ref()
            .is_err_and(|e| e.to_string().contains("the disk is full")),
        "{called:?}"
    );
    let mut failures = Vec::new();
    for commit in pending {
        if let Err(e) = commit.await {
            failures.push(e.to_string());
        }
    }
    ensure!(failures.len() == 1, "{failures:?}");
    ensure!(
        failures[0].contains(&b.path().display().to_string()),
        "{}",
        failures[0]
    );
    ensure!(failures[0].contains("the disk is full"), "{}", failures[0]);
    ensure!(!s.store.healthy());
    let names: Vec<String> = s.services().await?.into_iter().map(|x| x.name).collect();
    ensure!(
        names.len() == 41 && !names.iter().any(|n| n == "also-lost"),
        "{names:?}"
    );
    s.commit(vec![StoreOp::PutService(service("later"))])
        .await?;
    ensure!(s.store.healthy());
    Ok(())
}

#[tokio::test]
async fn the_robot_wide_tables_keep_webhooks_and_template_repos() -> Result<()> {
    for kind in [Kind::SqliteFile, Kind::SqliteMemory] {
        let b = Backend::new(kind);
        let s = b.open(Retention::default())?;
        let db = s.sqlite.clone().context("sqlite")?;
        let hook = |id: &str| Webhook {
            id: id.to_owned(),
            kind: "eco".to_owned(),
            url: format!("https://example.com/{id}"),
        };
        db.put_webhook(hook("b")).await?;
        db.put_webhook(hook("a")).await?;
        ensure!(db.webhooks().await? == vec![hook("a"), hook("b")]);
        ensure!(db.delete_webhook("a").await?);
        ensure!(db.webhooks().await? == vec![hook("b")]);

        let repo = TemplateRepo {
            url: "https://github.com/zrobot/templates".to_owned(),
            branch: "main".to_owned(),
            added: now(),
        };
        db.put_template_repo(repo.clone()).await?;
        ensure!(db.template_repos().await? == vec![repo.clone()]);
        ensure!(db.delete_template_repo(&repo.url).await?);
        ensure!(db.template_repos().await?.is_empty());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_counts_its_groups_commits_and_changes() -> Result<()> {
    let b = Backend::new(Kind::SqliteFile);
    let s = b.open(Retention::default())?;
    let sqlite = s.sqlite.clone().context("a SQLite store")?;
    ensure!(sqlite.writer_stats() == Default::default());
    let svc = service("counted");
    s.commit(vec![StoreOp::PutService(svc.clone())]).await?;
    // Handed over at once without waiting: they may group.
    let pending: Vec<_> = (0..200)
        .map(|seq| {
            s.store.commit(vec![
                StoreOp::PutTask(waiting(&svc, seq)),
                StoreOp::PutTask(finished(waiting(&svc, 1_000 + seq), true)),
            ])
        })
        .collect();
    for p in pending {
        p.await?;
    }
    let stats = sqlite.writer_stats();
    ensure!(stats.commits == 201, "{stats:?}");
    ensure!(stats.ops == 401, "{stats:?}");
    ensure!(
        (2..=201).contains(&stats.transactions),
        "{stats:?}: one group per commit at most, and the first stood alone"
    );
    Ok(())
}
