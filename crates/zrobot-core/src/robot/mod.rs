//! The robot: owns the templates and services, and drives every service's task list.
//!
//! Services hold no thread and no tokio task while idle. Scheduling a task on
//! an idle service spawns one tokio task that drains the service's queue, one
//! task at a time, then ends: that single consumer is what makes data access
//! race-free. That task, and every hook, runs on the runtime for template
//! work (`template_work.rs`), never on the threads serving the API.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;

use crate::engine::Engine;
use crate::events::Events;
use crate::recurring::Recurring;
use crate::service::Service;
use crate::store::{ServiceRecord, Store};
use crate::task::TaskRecord;
use crate::template::{load_repository, RepoId, RepoLoad, TemplateRegistry};
use crate::waitgraph::WaitGraph;

mod blueprint;
mod drive;
mod graph;
mod idempotency;
mod pause;
mod policy;
mod registry;
mod restore;
mod schedule;
mod settings;
mod template_work;
mod upgrade;

use registry::{valid_name, Services};

pub use blueprint::{BlueprintCaller, BlueprintOutcome};
pub use graph::{BlockingChain, ChainLink, EdgeKind, PendingEdge, PendingGraph, PendingService};
pub use registry::DeleteReport;
pub(crate) use template_work::Background;
pub use template_work::{template_runtime, ShutdownReport};
use template_work::{Interrupted, TemplateWork};
pub use upgrade::UpgradeReport;

/// Bounds the robot applies where templates say nothing.
#[derive(Debug, Clone)]
pub struct RobotConfig {
    /// An action without its own `timeout` is stopped after this long.
    pub default_action_timeout: Duration,
    /// `init`, `validate`, `update_data` and `migrate` are stopped after this long.
    pub hook_timeout: Duration,
    /// How long a deletion lets the running task finish before stopping it.
    pub delete_running_bound: Duration,
    /// The longest an `on_delete` action may run.
    pub on_delete_bound: Duration,
    /// Whether the robot queues recurring actions on its own. Template tests
    /// turn it off, so that only their steps run actions.
    pub recurring: bool,
}

impl Default for RobotConfig {
    fn default() -> Self {
        RobotConfig {
            default_action_timeout: Duration::from_secs(3600),
            hook_timeout: Duration::from_secs(60),
            delete_running_bound: Duration::from_secs(30),
            on_delete_bound: Duration::from_secs(60),
            recurring: true,
        }
    }
}

/// What a new service is made of.
#[derive(Debug, Clone, Default)]
pub struct NewService {
    /// A template reference: any unambiguous suffix of its UID.
    pub template: String,
    pub name: String,
    pub data: Value,
    pub public: bool,
    /// Hashes of the secrets that will grant the service.
    pub secrets: Vec<String>,
}

/// Why a wait on a task ended without the task being done.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WaitError {
    #[error("deadlock: {0}; a task can never wait on one queued behind itself")]
    Deadlock(String),
    #[error("timed out after {0:?} waiting for the task")]
    Timeout(Duration),
}

/// Told about what happens in the robot (metrics, webhooks, exports). Called
/// on the task path: implementations must return quickly and never block.
pub trait Observer: Send + Sync + 'static {
    /// A task ended (`ok` or `error`), after its outcome was made durable.
    fn task_finished(&self, _service: &Service, _task: &TaskRecord) {}
    /// A service was created or came back at start.
    fn service_added(&self, _service: &Service) {}
    /// A service was deleted.
    fn service_deleted(&self, _service: &Service) {}
}

/// What a start found in the store.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RestoreReport {
    pub services: usize,
    pub waiting_tasks: usize,
    /// Services whose exact template version is not loaded and that run on
    /// another version of the same template: `(name, stored UID, used UID)`.
    pub fallbacks: Vec<(String, String, String)>,
    /// Services kept aside until their template is loaded: `(name, UID)`.
    pub missing: Vec<(String, String)>,
    /// Services whose secret data fields this robot's key could not open
    /// (they come back without them): `(name, field paths)`.
    pub lost_secrets: Vec<(String, Vec<String>)>,
}

/// A handle on the robot; cheap to clone.
#[derive(Clone)]
pub struct Robot(Arc<RobotInner>);

pub(crate) struct RobotInner {
    config: RobotConfig,
    templates: TemplateRegistry,
    engine: Arc<dyn Engine>,
    store: Arc<dyn Store>,
    services: RwLock<Services>,
    /// Queue order of tasks across the robot.
    seq: AtomicU64,
    recurring: Recurring,
    waits: WaitGraph,
    /// Replaced whole when one is added, so that a task's completion takes
    /// them with one reference count (see [`Robot::observers`]).
    observers: RwLock<Observers>,
    /// What happens to services and tasks, for subscribers (`GET /events`).
    events: Arc<Events>,
    /// Services from the store whose template is not loaded (with their
    /// waiting tasks): never dropped, retried when templates are loaded.
    missing: std::sync::Mutex<Vec<(ServiceRecord, Vec<TaskRecord>)>>,
    /// Serializes read-modify-write updates of the known robots.
    remote_lock: tokio::sync::Mutex<()>,
    /// Seals secret data fields at rest: random unless the host gives one
    /// ([`Robot::set_data_key`]), so that nothing secret is ever stored in
    /// clear.
    data_key: RwLock<Arc<crate::sealed::DataKey>>,
    /// Template repositories template code may add; none by default.
    pub(crate) sources: RwLock<Option<Arc<dyn crate::sources::TemplateSources>>>,
    /// Idempotency keys of recently scheduled tasks: a retried request gets
    /// the task its first try scheduled.
    keys: std::sync::Mutex<idempotency::Keys>,
    /// Robot settings, as stored (read at restore, written through).
    settings: RwLock<std::collections::BTreeMap<String, Value>>,
    /// The known robots, parsed once from their setting whenever it changes
    /// (a remote call reads them, so never parsed per call).
    remotes: RwLock<Arc<settings::KnownRobots>>,
    /// The runtime template code runs on, and the shutdown switches.
    work: TemplateWork,
    /// The robot's own tasks, owned, cancelled at shutdown.
    background: Background,
}

/// The observers of a robot, as one list shared by reference.
type Observers = Arc<Vec<Arc<dyn Observer>>>;

impl Robot {
    /// Makes a robot whose template code runs on the current runtime (tests,
    /// tools). Must be called inside a tokio runtime: the robot's timer loop
    /// starts here. A server uses [`Robot::with_template_runtime`].
    pub fn new(config: RobotConfig, engine: Arc<dyn Engine>, store: Arc<dyn Store>) -> Robot {
        Robot::with_template_runtime(config, engine, store, tokio::runtime::Handle::current())
    }

    /// Makes a robot that runs template code (actions, hooks) on
    /// `template_runtime`, so that code that spins never holds the threads of
    /// the runtime this is called in (the API's, the store's waiters). Must be
    /// called inside a tokio runtime: the robot's timer loop starts here.
    pub fn with_template_runtime(
        config: RobotConfig,
        engine: Arc<dyn Engine>,
        store: Arc<dyn Store>,
        template_runtime: tokio::runtime::Handle,
    ) -> Robot {
        Robot(Arc::new_cyclic(|weak| {
            let background = Background::new();
            RobotInner {
                recurring: Recurring::start(weak.clone(), &background, config.recurring),
                config,
                templates: TemplateRegistry::new(),
                engine,
                store,
                services: RwLock::new(Services::default()),
                seq: AtomicU64::new(1),
                waits: WaitGraph::default(),
                observers: RwLock::new(Arc::new(Vec::new())),
                events: Arc::new(Events::new()),
                missing: std::sync::Mutex::new(Vec::new()),
                settings: RwLock::new(Default::default()),
                remotes: RwLock::default(),
                remote_lock: tokio::sync::Mutex::new(()),
                data_key: RwLock::new(Arc::new(crate::sealed::DataKey::from_bytes(
                    &crate::sealed::DataKey::generate(),
                ))),
                sources: RwLock::new(None),
                keys: std::sync::Mutex::new(idempotency::Keys::default()),
                work: TemplateWork::new(template_runtime),
                background,
            }
        }))
    }

    pub(crate) fn from_inner(inner: Arc<RobotInner>) -> Robot {
        Robot(inner)
    }

    /// Lets template code add and check out template repositories.
    pub fn allow_template_sources(&self, sources: Arc<dyn crate::sources::TemplateSources>) {
        *self.0.sources.write().unwrap_or_else(|e| e.into_inner()) = Some(sources);
    }

    /// The template repositories template code may reach; `None` unless
    /// the operator allowed it.
    pub fn template_sources(&self) -> Option<Arc<dyn crate::sources::TemplateSources>> {
        self.0
            .sources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The key that seals secret data fields at rest; set it before the
    /// robot reads its store.
    pub fn set_data_key(&self, key: Arc<crate::sealed::DataKey>) {
        *self.0.data_key.write().unwrap_or_else(|e| e.into_inner()) = key;
    }

    fn data_key(&self) -> Arc<crate::sealed::DataKey> {
        self.0
            .data_key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `data` as it is stored: its secret fields (of `template`) sealed. The
    /// same `Arc` for a template without any.
    pub(crate) fn stored_data(
        &self,
        template: &crate::template::Template,
        data: &Arc<Value>,
    ) -> Arc<Value> {
        if template.secret_paths.is_empty() {
            return data.clone();
        }
        Arc::new(self.data_key().seal(&template.secret_paths, data))
    }

    /// Stored `data` opened: its secret fields of `template` as written, and
    /// the paths of those this robot's key cannot open (they are dropped).
    pub(crate) fn opened_data(
        &self,
        template: &crate::template::Template,
        data: Value,
    ) -> (Value, Vec<String>) {
        if template.secret_paths.is_empty() {
            return (data, Vec::new());
        }
        self.data_key().open(&template.secret_paths, data)
    }

    pub fn config(&self) -> &RobotConfig {
        &self.0.config
    }

    /// The robot's event stream.
    pub fn events(&self) -> &Arc<Events> {
        &self.0.events
    }

    pub fn templates(&self) -> &TemplateRegistry {
        &self.0.templates
    }

    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.0.engine
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }

    /// Adds an observer of tasks and services.
    pub fn add_observer(&self, observer: Arc<dyn Observer>) {
        let mut observers = self.0.observers.write().unwrap_or_else(|e| e.into_inner());
        let mut more = Vec::clone(&observers);
        more.push(observer);
        *observers = Arc::new(more);
    }

    /// The observers now.
    fn observers(&self) -> Observers {
        self.0
            .observers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn observe(&self, f: impl Fn(&dyn Observer)) {
        for o in self.observers().iter() {
            f(o.as_ref());
        }
    }

    /// Loads every template of the repository checked out at `root`, and adds
    /// the good ones. Errors name each template that could not load.
    pub fn load_repository(&self, root: &Path, repo: &RepoId) -> RepoLoad {
        self.load_repository_at(root, repo, None)
    }

    /// [`Robot::load_repository`] of a git checkout at `commit`, which its
    /// templates then name.
    pub fn load_repository_at(&self, root: &Path, repo: &RepoId, commit: Option<&str>) -> RepoLoad {
        let mut load = load_repository(root, repo, self.0.engine.as_ref(), commit);
        for t in &load.templates {
            self.0.templates.add(t.clone());
        }
        load.reloaded = self.reload_changed(&load.templates);
        if !load.templates.is_empty() && !self.missing_services().is_empty() {
            let robot = self.clone();
            self.spawn_owned(async move { robot.restore_missing().await });
        }
        load
    }
}

impl std::fmt::Debug for Robot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Robot")
            .field("services", &self.service_count())
            .finish()
    }
}
