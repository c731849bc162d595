//! Services: instances of a template, with their data, state table, task queue and log.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::events::{Events, What};
use crate::task::{Task, TaskQueue};
use crate::template::Template;

/// The state of one tag of a category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagState {
    Ok,
    Error,
    Warning,
    Skipped,
}

impl TagState {
    pub fn parse(s: &str) -> Option<TagState> {
        match s {
            "ok" => Some(TagState::Ok),
            "error" => Some(TagState::Error),
            "warning" => Some(TagState::Warning),
            "skipped" => Some(TagState::Skipped),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TagState::Ok => "ok",
            TagState::Error => "error",
            TagState::Warning => "warning",
            TagState::Skipped => "skipped",
        }
    }
}

/// `category -> tag -> state`.
pub type StateTable = BTreeMap<String, BTreeMap<String, TagState>>;

/// Where a service is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceStatus {
    /// `init` and `validate` are running; the service is not listed yet.
    Creating,
    /// Processing its task list.
    Ok,
    /// `validate` failed (after a restart or an upgrade): no task runs until it passes.
    Invalid(String),
    /// Being deleted: no new task is accepted.
    Deleting,
    /// Runs no task for a moment (moving to another template version, taking
    /// new data from a blueprint); tasks still queue.
    Paused(String),
}

/// One line of a service's own log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogLine {
    pub time: f64,
    pub level: LogLevel,
    pub message: String,
    /// The task whose action wrote it: its action's name and its guid.
    pub task: Option<(String, Uuid)>,
}

impl LogLine {
    /// `[action 1a2b3c4d] `, the task that wrote the line as `task list`
    /// shows it; empty for a line of the robot's own.
    pub fn task_tag(&self) -> String {
        match &self.task {
            Some((action, guid)) => {
                format!("[{action} {}] ", &guid.simple().to_string()[..8])
            }
            None => String::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warning => "WARNING",
            LogLevel::Error => "ERROR",
        }
    }
}

/// How many lines and bytes one service's log keeps: the oldest go first.
const LOG_MAX_LINES: usize = 1000;
const LOG_MAX_BYTES: usize = 128 * 1024;

#[derive(Default)]
struct ServiceLog {
    lines: VecDeque<LogLine>,
    bytes: usize,
}

/// A service. Its data is touched only by its own running task (the single
/// consumer of its queue); everything here is behind short, uncontended locks.
pub struct Service {
    pub guid: Uuid,
    pub name: String,
    pub public: bool,
    pub created: f64,
    /// Changes only when the service moves to another template version.
    template: RwLock<Arc<Template>>,
    pub(crate) inner: Mutex<ServiceInner>,
    /// Allocated on the first line, so that a quiet service costs nothing here.
    log: Mutex<Option<Box<ServiceLog>>>,
    /// Woken when the service stops running tasks (its queue ran dry, or it was told to stop).
    pub(crate) idle: Notify,
    /// Woken to stop the running action (the service is being deleted).
    pub(crate) stop_running: Notify,
    /// The robot's events, told of state changes and log lines.
    events: Arc<Events>,
}

pub(crate) struct ServiceInner {
    pub data: Arc<Value>,
    pub state: StateTable,
    /// The state changed since it was last saved.
    pub state_dirty: bool,
    pub status: ServiceStatus,
    pub queue: TaskQueue,
    pub current: Option<Arc<Task>>,
    /// Tasks that ended, whose outcome the store has yet to confirm (oldest
    /// first): found and shown as running until then.
    pub finishing: Vec<Arc<Task>>,
    /// A tokio task is draining the queue.
    pub driving: bool,
    /// A restored service waiting for its first `validate` since the start:
    /// the first of the start's pass and a task scheduled on it runs it.
    pub unvalidated: bool,
    /// A restored service whose stored version is no longer loaded: the UID
    /// it was stored with, and its version. That first `validate` moves it
    /// to the version it runs on now (migrate, defaults, validate).
    pub moving_from: Option<(String, semver::Version)>,
    /// Hashes of the secrets that grant this service.
    pub secrets: Vec<String>,
}

impl Service {
    /// Every field a service is born with; called by the creation and the
    /// restore only.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        guid: Uuid,
        name: String,
        template: Arc<Template>,
        data: Value,
        public: bool,
        created: f64,
        status: ServiceStatus,
        events: Arc<Events>,
    ) -> Service {
        Service {
            guid,
            name,
            public,
            created,
            template: RwLock::new(template),
            inner: Mutex::new(ServiceInner {
                data: Arc::new(data),
                state: StateTable::new(),
                state_dirty: false,
                status,
                queue: TaskQueue::default(),
                current: None,
                finishing: Vec::new(),
                driving: false,
                unvalidated: false,
                moving_from: None,
                secrets: Vec::new(),
            }),
            log: Mutex::new(None),
            idle: Notify::new(),
            stop_running: Notify::new(),
            events,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ServiceInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn template(&self) -> Arc<Template> {
        self.template
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_template(&self, template: Arc<Template>) {
        *self.template.write().unwrap_or_else(|e| e.into_inner()) = template;
    }

    pub fn template_uid(&self) -> String {
        self.template().uid_text.clone()
    }

    /// The service data (private: shown to no one but god mode and the service's own actions).
    pub fn data(&self) -> Arc<Value> {
        self.lock().data.clone()
    }

    pub fn status(&self) -> ServiceStatus {
        self.lock().status.clone()
    }

    /// The whole state table.
    pub fn state(&self) -> StateTable {
        self.lock().state.clone()
    }

    pub fn state_set(self: &Arc<Self>, category: &str, tag: &str, state: TagState) {
        let changed = {
            let mut inner = self.lock();
            let old = inner
                .state
                .entry(category.to_owned())
                .or_default()
                .insert(tag.to_owned(), state);
            let changed = old != Some(state);
            inner.state_dirty |= changed;
            changed
        };
        if changed {
            self.events.publish(
                self,
                What::StateChanged {
                    category: category.to_owned(),
                    tag: Some(tag.to_owned()),
                    state: Some(state),
                },
            );
        }
    }

    /// The states of `category` (all its tags, or just `tag`).
    pub fn state_get(&self, category: &str, tag: Option<&str>) -> BTreeMap<String, TagState> {
        let inner = self.lock();
        let Some(cat) = inner.state.get(category) else {
            return BTreeMap::new();
        };
        match tag {
            None => cat.clone(),
            Some(t) => cat.get(t).map(|s| (t.to_owned(), *s)).into_iter().collect(),
        }
    }

    /// The state table, if it changed since it was last taken to be stored.
    pub(crate) fn take_dirty_state(&self) -> Option<StateTable> {
        let mut inner = self.lock();
        std::mem::take(&mut inner.state_dirty).then(|| inner.state.clone())
    }

    pub fn state_delete(self: &Arc<Self>, category: &str, tag: Option<&str>) {
        let mut inner = self.lock();
        let changed = match tag {
            None => inner.state.remove(category).is_some(),
            Some(t) => {
                let changed = inner
                    .state
                    .get_mut(category)
                    .is_some_and(|c| c.remove(t).is_some());
                if inner.state.get(category).is_some_and(|c| c.is_empty()) {
                    inner.state.remove(category);
                }
                changed
            }
        };
        if changed {
            inner.state_dirty = true;
            drop(inner);
            self.events.publish(
                self,
                What::StateChanged {
                    category: category.to_owned(),
                    tag: tag.map(str::to_owned),
                    state: None,
                },
            );
        }
    }

    /// Waiting tasks, in the order they will run.
    pub fn waiting_tasks(&self) -> Vec<Arc<Task>> {
        self.lock().queue.iter().cloned().collect()
    }

    /// The running task, if any.
    pub fn running_task(&self) -> Option<Arc<Task>> {
        self.lock().current.clone()
    }

    /// Whether the service has no task waiting, running or finishing.
    pub fn is_idle(&self) -> bool {
        let inner = self.lock();
        !inner.driving
            && inner.queue.is_empty()
            && inner.current.is_none()
            && inner.finishing.is_empty()
    }

    /// How many tasks wait in the queue.
    pub fn queue_len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Hashes of the secrets that grant this service.
    pub fn secret_hashes(&self) -> Vec<String> {
        self.lock().secrets.clone()
    }

    pub(crate) fn set_secret_hashes(&self, secrets: Vec<String>) {
        self.lock().secrets = secrets;
    }

    /// Appends a line to the service's own log.
    pub fn log(self: &Arc<Self>, level: LogLevel, message: impl Into<String>) {
        self.log_line(LogLine {
            time: crate::time::now(),
            level,
            message: message.into(),
            task: None,
        })
    }

    /// Appends a line that the action of `task` wrote.
    pub fn log_from(self: &Arc<Self>, task: &Task, level: LogLevel, message: impl Into<String>) {
        self.log_line(LogLine {
            time: crate::time::now(),
            level,
            message: message.into(),
            task: Some((task.action_name(), task.guid)),
        })
    }

    fn log_line(self: &Arc<Self>, line: LogLine) {
        {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            let log = log.get_or_insert_with(Default::default);
            log.bytes += line.message.len();
            log.lines.push_back(line.clone());
            while log.lines.len() > LOG_MAX_LINES
                || (log.bytes > LOG_MAX_BYTES && log.lines.len() > 1)
            {
                if let Some(old) = log.lines.pop_front() {
                    log.bytes -= old.message.len();
                }
            }
        }
        self.events.publish(self, What::Log(line));
    }

    /// The service's log, oldest line first.
    pub fn log_lines(&self) -> Vec<LogLine> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|l| l.lines.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("guid", &self.guid)
            .field("name", &self.name)
            .finish()
    }
}
