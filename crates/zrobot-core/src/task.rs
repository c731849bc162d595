//! Tasks: one scheduled run of an action, its outcome, and the handle callers wait on.

use std::sync::{Arc, Mutex, Weak};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::service::Service;

/// Where a task is in its life: `new -> running -> ok | error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    New,
    Running,
    Ok,
    Error,
}

impl TaskState {
    pub fn is_done(self) -> bool {
        matches!(self, TaskState::Ok | TaskState::Error)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Running => "running",
            TaskState::Ok => "ok",
            TaskState::Error => "error",
        }
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// System tasks (hooks, delete callbacks) run before normal ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    System,
    Normal,
}

/// An error condition: why a task failed, and how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Eco {
    pub category: String,
    pub message: String,
    /// The traceback of the last failure.
    pub trace: String,
    /// How many runs failed.
    pub count: u32,
    pub time_first: f64,
    pub time_last: f64,
}

/// Everything known about a task, as plain data: what the store keeps and
/// what the API shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub guid: Uuid,
    pub service_guid: Uuid,
    pub service_name: String,
    /// The UID of the service's template when the task was scheduled.
    pub template_uid: String,
    pub action_name: String,
    pub args: Value,
    pub priority: Priority,
    /// Queue order inside the robot: tasks of one priority run by increasing `seq`.
    pub seq: u64,
    pub state: TaskState,
    /// How many times a run started (retries and runs again after a crash count).
    pub attempt: u32,
    pub created: f64,
    pub started: Option<f64>,
    pub duration: Option<f64>,
    pub result: Option<Value>,
    pub eco: Option<Eco>,
    /// Who asked for the task, when another task (maybe on another robot) did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TaskTrace>,
    /// The idempotency key of the request that scheduled the task: a retry
    /// of that request, even after a restart, gets this task back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Where a task came from, so a chain of tasks across robots can be followed
/// from either end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TaskTrace {
    /// The guid of the task whose action scheduled this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_task: Option<String>,
    /// The W3C `traceparent` of the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// A task the robot holds in memory: waiting, running, or held by someone who
/// waits for it. Finished tasks live on in the store.
pub struct Task {
    pub guid: Uuid,
    /// The record's `seq`, which never changes.
    pub seq: u64,
    pub(crate) record: Mutex<TaskRecord>,
    pub(crate) service: Weak<Service>,
    /// Woken when the task is done.
    done: Notify,
    /// What this task's action waits on: for deadlock detection and the
    /// graph of pending work.
    pub(crate) waiting_on: Mutex<Option<WaitTarget>>,
}

/// What a waiting action waits on.
#[derive(Debug, Clone)]
pub enum WaitTarget {
    /// A task of this robot.
    Local(Arc<Task>),
    /// A task of another robot.
    Remote(Arc<RemoteTaskRef>),
}

/// A task of another robot, as the robot waiting on it knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteTaskRef {
    /// The other robot's name here.
    pub robot: String,
    pub guid: Uuid,
    pub service_guid: Uuid,
    pub service_name: String,
    pub action_name: String,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("record", &self.record())
            .finish()
    }
}

impl Task {
    pub(crate) fn new(record: TaskRecord, service: Weak<Service>) -> Arc<Task> {
        Arc::new(Task {
            guid: record.guid,
            seq: record.seq,
            record: Mutex::new(record),
            service,
            done: Notify::new(),
            waiting_on: Mutex::new(None),
        })
    }

    /// A copy of the task as it is now.
    pub fn record(&self) -> TaskRecord {
        self.lock().clone()
    }

    pub fn state(&self) -> TaskState {
        self.lock().state
    }

    /// What the task's action waits on now, if it waits.
    pub fn waiting_on(&self) -> Option<WaitTarget> {
        self.waiting_on
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn action_name(&self) -> String {
        self.lock().action_name.clone()
    }

    pub fn service_guid(&self) -> Uuid {
        self.lock().service_guid
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, TaskRecord> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the task done with `result` or `eco`, and wakes who waits for
    /// it; `before_waking` runs once the task shows done and before anyone
    /// waiting on it wakes (so that what it tells, such as an event, is out
    /// by the time they act).
    pub(crate) fn finish_then(&self, record: TaskRecord, before_waking: impl FnOnce()) {
        *self.lock() = record;
        before_waking();
        self.done.notify_waiters();
    }

    /// Waits until the task is done and returns it as it ended.
    pub async fn done(&self) -> TaskRecord {
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let r = self.lock();
                if r.state.is_done() {
                    return r.clone();
                }
            }
            notified.await;
        }
    }
}

/// The waiting tasks of one service: system before normal, FIFO inside each.
#[derive(Default)]
pub(crate) struct TaskQueue {
    system: std::collections::VecDeque<Arc<Task>>,
    normal: std::collections::VecDeque<Arc<Task>>,
}

impl TaskQueue {
    pub fn push(&mut self, priority: Priority, task: Arc<Task>) {
        match priority {
            Priority::System => self.system.push_back(task),
            Priority::Normal => self.normal.push_back(task),
        }
    }

    pub fn pop(&mut self) -> Option<Arc<Task>> {
        self.system.pop_front().or_else(|| self.normal.pop_front())
    }

    pub fn len(&self) -> usize {
        self.system.len() + self.normal.len()
    }

    pub fn is_empty(&self) -> bool {
        self.system.is_empty() && self.normal.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Task>> {
        self.system.iter().chain(self.normal.iter())
    }

    pub fn remove(&mut self, guid: Uuid) -> Option<Arc<Task>> {
        for q in [&mut self.system, &mut self.normal] {
            if let Some(i) = q.iter().position(|t| t.guid == guid) {
                return q.remove(i);
            }
        }
        None
    }

    pub fn drain(&mut self) -> Vec<Arc<Task>> {
        self.system.drain(..).chain(self.normal.drain(..)).collect()
    }

    /// Releases the memory of a queue that emptied after a burst, so that an
    /// idle service stays small.
    pub fn shrink_if_idle(&mut self) {
        if self.system.is_empty() && self.system.capacity() > 0 {
            self.system = Default::default();
        }
        if self.normal.is_empty() && self.normal.capacity() > 8 {
            self.normal = Default::default();
        }
    }
}
