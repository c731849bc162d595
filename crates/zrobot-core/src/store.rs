//! The persistence seam. A [`Store`] makes robot state durable; the core
//! acknowledges a change (to an API caller or a calling action) only once the
//! store's commit of it has completed.
//!
//! Stores are expected to group commits: many callers hand in small batches of
//! [`StoreOp`]s, one writer applies them in order, in as few transactions as
//! keeps up. The in-memory [`MemoryStore`] here keeps everything in maps; the
//! SQLite store lives in its own crate.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::engine::BoxFuture;
use crate::service::StateTable;
use crate::task::{TaskRecord, TaskState};

/// A service as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub guid: Uuid,
    pub name: String,
    pub template_uid: String,
    pub public: bool,
    pub data: Value,
    pub state: StateTable,
    /// Hashes of the secrets that grant the service (never the secrets).
    pub secrets: Vec<String>,
    pub created: f64,
}

/// One change to make durable. Ops of one commit are applied in order and
/// all together.
#[derive(Debug, Clone)]
// Ops live briefly in the writer's batch; boxing the large ones would cost an
// allocation per task on the hot path for no gain.
#[allow(clippy::large_enum_variant)]
pub enum StoreOp {
    /// Create or replace a service.
    PutService(ServiceRecord),
    /// Delete a service and every task of it.
    DeleteService(Uuid),
    /// Create or replace a task (waiting, or finished).
    PutTask(TaskRecord),
    /// A run of a waiting task started. `seq` is the task's (see
    /// [`TaskRecord::seq`]): a store may keep its queue in that order.
    TaskStarted {
        guid: Uuid,
        seq: u64,
        attempt: u32,
        started: f64,
    },
    /// Drop a waiting task that never ran.
    RemoveTask {
        guid: Uuid,
        seq: u64,
    },
    SaveData {
        service: Uuid,
        data: Arc<Value>,
    },
    SaveState {
        service: Uuid,
        state: StateTable,
    },
    SaveTemplate {
        service: Uuid,
        template_uid: String,
    },
    /// Set a robot setting (webhooks, known robots...); `Null` removes it.
    PutSetting {
        key: String,
        value: Value,
    },
}

/// What a robot finds in its store at start.
#[derive(Debug, Default)]
pub struct Loaded {
    pub services: Vec<ServiceRecord>,
    /// Tasks that were waiting or running, in queue order (`seq`).
    pub waiting: Vec<TaskRecord>,
    /// Robot settings by key.
    pub settings: std::collections::BTreeMap<String, Value>,
    /// Finished tasks that were scheduled with an idempotency key less than
    /// [`KEY_LIFETIME_SECS`] ago: the newest [`KEYS_KEPT`] at most, oldest
    /// first. (A waiting task's key is in its record.)
    pub keys: Vec<KeyedTask>,
}

/// A task scheduled with an idempotency key, as a retry looks it up.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedTask {
    pub key: String,
    pub service: Uuid,
    pub task: Uuid,
    pub created: f64,
}

impl KeyedTask {
    /// The key of `task`, if it was scheduled with one.
    pub fn of(task: &TaskRecord) -> Option<KeyedTask> {
        Some(KeyedTask {
            key: task.key.clone()?,
            service: task.service_guid,
            task: task.guid,
            created: task.created,
        })
    }
}

/// How long a retry with the same idempotency key gets the first request's
/// task back, restarts included.
pub const KEY_LIFETIME_SECS: f64 = 24.0 * 3600.0;

/// How many of the newest keys the robot remembers, so that a flood of keyed
/// requests cannot grow its memory without bound (about 150 bytes each).
pub const KEYS_KEPT: usize = 100_000;

/// Why the store failed: on which database, doing what, and why.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A step on the database failed.
    #[error("database {db}: {doing} failed: {cause}")]
    Failed {
        db: String,
        doing: String,
        #[source]
        cause: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The store's writer is gone: nothing more can be written.
    #[error("database {db}: the writer thread has stopped, so nothing more can be written; restart the robot")]
    Stopped { db: String },
    /// The database was written by a newer zrobot.
    #[error("database {db} has schema version {found}, but this zrobot knows versions up to {known}: it was written by a newer zrobot; run that version, or use another data directory")]
    NewerSchema { db: String, found: i64, known: i64 },
}

impl StoreError {
    /// `database <db>: <doing> failed: <cause>`.
    pub fn failed(
        db: &str,
        doing: &str,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        StoreError::Failed {
            db: db.to_owned(),
            doing: doing.to_owned(),
            cause: Arc::from(cause.into()),
        }
    }
}

/// How long finished tasks are kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    /// At most this many finished tasks per service.
    pub max_tasks: usize,
    /// Finished tasks older than this many seconds go.
    pub max_age_secs: f64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_tasks: 1000,
            max_age_secs: 7.0 * 24.0 * 3600.0,
        }
    }
}

/// Told the outcome of a commit by [`Store::commit_then`].
pub type CommitDone = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Durable robot state.
pub trait Store: Send + Sync + 'static {
    /// Makes `ops` durable, all or none; resolves once they are.
    fn commit(&self, ops: Vec<StoreOp>) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Makes `ops` durable like [`Store::commit`], in the same order with the
    /// other commits, and calls `done` exactly once with the outcome instead
    /// of resolving a future, so that the caller need not wait (nor be woken).
    /// `done` may run on the store's own thread: it must be short, must not
    /// block, and must not hold the last handle of the store. The default
    /// waits for the commit on a task of the current tokio runtime; the task
    /// lives as long as the commit, which a shutdown's flush waits for.
    fn commit_then(&self, ops: Vec<StoreOp>, done: CommitDone) {
        let commit = self.commit(ops);
        drop(tokio::spawn(async move { done(commit.await) }));
    }

    /// Everything a robot needs at start.
    fn load(&self) -> BoxFuture<'static, Result<Loaded, StoreError>>;

    /// One task of a service, finished or not.
    fn task(
        &self,
        service: Uuid,
        guid: Uuid,
    ) -> BoxFuture<'static, Result<Option<TaskRecord>, StoreError>>;

    /// The newest finished tasks of a service, oldest first.
    fn finished_tasks(
        &self,
        service: Uuid,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<TaskRecord>, StoreError>>;

    /// Whether the last commits went through.
    fn healthy(&self) -> bool;
}

/// A store that keeps everything in memory: for tests, and robots that need no durability.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<MemoryInner>,
    retention: Retention,
}

#[derive(Default)]
struct MemoryInner {
    services: HashMap<Uuid, ServiceRecord>,
    tasks: HashMap<Uuid, TaskRecord>,
    /// Finished tasks per service, oldest first, for retention.
    finished: HashMap<Uuid, VecDeque<Uuid>>,
    settings: std::collections::BTreeMap<String, Value>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    pub fn with_retention(retention: Retention) -> MemoryStore {
        MemoryStore {
            inner: Default::default(),
            retention,
        }
    }

    fn apply(&self, inner: &mut MemoryInner, op: StoreOp) {
        match op {
            StoreOp::PutService(s) => {
                inner.services.insert(s.guid, s);
            }
            StoreOp::DeleteService(guid) => {
                inner.services.remove(&guid);
                inner.tasks.retain(|_, t| t.service_guid != guid);
                inner.finished.remove(&guid);
            }
            StoreOp::PutTask(t) => {
                let (guid, service, done) = (t.guid, t.service_guid, t.state.is_done());
                let was_done = inner
                    .tasks
                    .insert(guid, t)
                    .is_some_and(|old| old.state.is_done());
                if done && !was_done {
                    let list = inner.finished.entry(service).or_default();
                    list.push_back(guid);
                    let now = crate::time::now();
                    while list.len() > self.retention.max_tasks
                        || list
                            .front()
                            .and_then(|g| inner.tasks.get(g))
                            .is_some_and(|t| now - t.created > self.retention.max_age_secs)
                    {
                        if let Some(old) = list.pop_front() {
                            inner.tasks.remove(&old);
                        }
                    }
                }
            }
            StoreOp::TaskStarted {
                guid,
                attempt,
                started,
                ..
            } => {
                if let Some(t) = inner.tasks.get_mut(&guid) {
                    t.attempt = attempt;
                    t.started = Some(started);
                    t.state = TaskState::Running;
                }
            }
            StoreOp::RemoveTask { guid, .. } => {
                inner.tasks.remove(&guid);
            }
            StoreOp::SaveData { service, data } => {
                if let Some(s) = inner.services.get_mut(&service) {
                    s.data = (*data).clone();
                }
            }
            StoreOp::SaveState { service, state } => {
                if let Some(s) = inner.services.get_mut(&service) {
                    s.state = state;
                }
            }
            StoreOp::PutSetting { key, value } => {
                if value.is_null() {
                    inner.settings.remove(&key);
                } else {
                    inner.settings.insert(key, value);
                }
            }
            StoreOp::SaveTemplate {
                service,
                template_uid,
            } => {
                if let Some(s) = inner.services.get_mut(&service) {
                    s.template_uid = template_uid;
                }
            }
        }
    }
}

impl MemoryStore {
    fn apply_all(&self, ops: Vec<StoreOp>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for op in ops {
            self.apply(&mut inner, op);
        }
    }
}

impl Store for MemoryStore {
    fn commit(&self, ops: Vec<StoreOp>) -> BoxFuture<'static, Result<(), StoreError>> {
        self.apply_all(ops);
        Box::pin(std::future::ready(Ok(())))
    }

    fn commit_then(&self, ops: Vec<StoreOp>, done: CommitDone) {
        self.apply_all(ops);
        done(Ok(()));
    }

    fn load(&self) -> BoxFuture<'static, Result<Loaded, StoreError>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut waiting: Vec<TaskRecord> = inner
            .tasks
            .values()
            .filter(|t| !t.state.is_done())
            .cloned()
            .collect();
        waiting.sort_by_key(|t| t.seq);
        let since = crate::time::now() - KEY_LIFETIME_SECS;
        let mut keys: Vec<KeyedTask> = inner
            .tasks
            .values()
            .filter(|t| t.state.is_done() && t.created >= since)
            .filter_map(KeyedTask::of)
            .collect();
        keys.sort_by(|a, b| a.created.total_cmp(&b.created));
        keys.drain(..keys.len().saturating_sub(KEYS_KEPT));
        let loaded = Loaded {
            services: inner.services.values().cloned().collect(),
            waiting,
            settings: inner.settings.clone(),
            keys,
        };
        Box::pin(std::future::ready(Ok(loaded)))
    }

    fn task(
        &self,
        _service: Uuid,
        guid: Uuid,
    ) -> BoxFuture<'static, Result<Option<TaskRecord>, StoreError>> {
        let t = self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .tasks
            .get(&guid)
            .cloned();
        Box::pin(std::future::ready(Ok(t)))
    }

    fn finished_tasks(
        &self,
        service: Uuid,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<TaskRecord>, StoreError>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let list: Vec<TaskRecord> = inner
            .finished
            .get(&service)
            .map(|l| {
                let skip = l.len().saturating_sub(limit);
                l.iter()
                    .skip(skip)
                    .filter_map(|g| inner.tasks.get(g).cloned())
                    .collect()
            })
            .unwrap_or_default();
        Box::pin(std::future::ready(Ok(list)))
    }

    fn healthy(&self) -> bool {
        true
    }
}
