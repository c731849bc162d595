//! The robot: owns the templates and services, and drives every service's task list.
//!
//! Services hold no thread and no tokio task while idle. Scheduling a task on
//! an idle service spawns one tokio task that drains the service's queue, one
//! task at a time, then ends: that single consumer is what makes data access
//! race-free. That task, and every hook, runs on the runtime for template
//! work (`template_work.rs`), never on the threads serving the API.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use uuid::Uuid;

use crate::engine::{category, ActionCall, ActionError, ActionOutcome, Callable, Engine, Hook};
use crate::error::CoreError;
use crate::filter::ServiceFilter;
use crate::recurring::Recurring;
use crate::service::{LogLevel, Service, ServiceStatus};
use crate::store::{ServiceRecord, Store, StoreOp};
use crate::task::{Eco, Priority, Task, TaskRecord, TaskState};
use crate::template::{load_repository, RepoId, RepoLoad, Template, TemplateRegistry};
use crate::waitgraph::WaitGraph;

mod blueprint;
mod idempotency;
mod pause;
mod template_work;
mod upgrade;

pub use blueprint::{BlueprintCaller, BlueprintOutcome};
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
}

impl Default for RobotConfig {
    fn default() -> Self {
        RobotConfig {
            default_action_timeout: Duration::from_secs(3600),
            hook_timeout: Duration::from_secs(60),
            delete_running_bound: Duration::from_secs(30),
            on_delete_bound: Duration::from_secs(60),
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
    /// Services from the store whose template is not loaded (with their
    /// waiting tasks): never dropped, retried when templates are loaded.
    missing: std::sync::Mutex<Vec<(ServiceRecord, Vec<TaskRecord>)>>,
    /// Serializes read-modify-write updates of the known robots.
    remote_lock: tokio::sync::Mutex<()>,
    /// Idempotency keys of recently scheduled tasks: a retried request gets
    /// the task its first try scheduled.
    keys: std::sync::Mutex<idempotency::Keys>,
    /// Robot settings, as stored (read at restore, written through).
    settings: RwLock<std::collections::BTreeMap<String, Value>>,
    /// The runtime template code runs on, and the shutdown switches.
    work: TemplateWork,
}

#[derive(Default)]
struct Services {
    by_guid: HashMap<Uuid, Arc<Service>>,
    /// Names of listed services, and of services being created (reserved).
    by_name: HashMap<String, Uuid>,
    /// The service each secret hash grants, so that a presented secret is
    /// found in one lookup rather than compared with every service's.
    by_secret: HashMap<String, Uuid>,
}

impl Services {
    fn insert(&mut self, svc: &Arc<Service>) {
        for hash in svc.secret_hashes() {
            self.by_secret.insert(hash, svc.guid);
        }
        self.by_guid.insert(svc.guid, svc.clone());
    }

    fn remove(&mut self, svc: &Service) {
        self.by_guid.remove(&svc.guid);
        self.by_name.remove(&svc.name);
        for hash in svc.secret_hashes() {
            if self.by_secret.get(&hash) == Some(&svc.guid) {
                self.by_secret.remove(&hash);
            }
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.chars().all(|c| c == '.')
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Frees a reserved name unless the creation went through.
struct NameReservation<'a> {
    robot: &'a Robot,
    name: String,
    kept: bool,
}

impl Drop for NameReservation<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.robot.services_mut().by_name.remove(&self.name);
        }
    }
}

/// The observers of a robot, as one list shared by reference.
type Observers = Arc<Vec<Arc<dyn Observer>>>;

/// A task's outcome, to be stored before its waiters are told.
struct Ended {
    record: TaskRecord,
    ops: Vec<StoreOp>,
    /// The data the action left, when it changed them.
    new_data: Option<Arc<Value>>,
}

/// Ends `task` with `record` once its commit gave `result`: a failed commit
/// turns it into a `storage` error (and the state is saved again later);
/// the observers, then the waiters, are told.
fn settle(
    observers: &Observers,
    svc: &Service,
    task: &Task,
    mut record: TaskRecord,
    result: Result<(), crate::store::StoreError>,
) {
    if let Err(e) = result {
        svc.lock().state_dirty = true;
        let now = crate::time::now();
        record.state = TaskState::Error;
        record.result = None;
        record.eco = Some(Eco {
            category: category::STORAGE.to_owned(),
            message: format!("the outcome of the task could not be stored: {e}"),
            trace: String::new(),
            count: 1,
            time_first: now,
            time_last: now,
        });
    }
    // Observers first, so that the record moves into the task uncopied.
    for o in observers.iter() {
        o.task_finished(svc, &record);
    }
    task.finish(record);
}

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
        Robot(Arc::new_cyclic(|weak| RobotInner {
            config,
            templates: TemplateRegistry::new(),
            engine,
            store,
            services: RwLock::new(Services::default()),
            seq: AtomicU64::new(1),
            recurring: Recurring::start(weak.clone()),
            waits: WaitGraph::default(),
            observers: RwLock::new(Arc::new(Vec::new())),
            missing: std::sync::Mutex::new(Vec::new()),
            settings: RwLock::new(Default::default()),
            remote_lock: tokio::sync::Mutex::new(()),
            keys: std::sync::Mutex::new(idempotency::Keys::default()),
            work: TemplateWork::new(template_runtime),
        }))
    }

    pub(crate) fn from_inner(inner: Arc<RobotInner>) -> Robot {
        Robot(inner)
    }

    pub fn config(&self) -> &RobotConfig {
        &self.0.config
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

    /// A robot setting (webhooks, known robots...).
    pub fn setting(&self, key: &str) -> Option<Value> {
        self.0
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Stores a robot setting durably; `Null` removes it.
    pub async fn put_setting(&self, key: &str, value: Value) -> Result<(), CoreError> {
        self.0
            .store
            .commit(vec![StoreOp::PutSetting {
                key: key.to_owned(),
                value: value.clone(),
            }])
            .await
            .map_err(|e| CoreError::Storage(e.to_string()))?;
        let mut settings = self.0.settings.write().unwrap_or_else(|e| e.into_inner());
        if value.is_null() {
            settings.remove(key);
        } else {
            settings.insert(key.to_owned(), value);
        }
        Ok(())
    }

    /// The robots this robot knows by name.
    pub fn remote_robots(&self) -> crate::remote::RemoteRobots {
        self.setting(crate::remote::SETTING)
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    }

    /// One known robot.
    pub fn remote_robot(&self, name: &str) -> Option<crate::remote::RemoteRobot> {
        self.remote_robots().remove(name)
    }

    /// Learns (or re-learns) a robot: its URL and the token to present. The
    /// secrets already kept for it stay.
    pub async fn add_remote_robot(
        &self,
        name: &str,
        url: &str,
        token: Option<String>,
    ) -> Result<(), CoreError> {
        if !crate::remote::valid_robot_name(name) {
            return Err(CoreError::InvalidName(name.to_owned()));
        }
        self.update_remote_robots(|robots| {
            let r = robots.entry(name.to_owned()).or_default();
            r.url = url.to_owned();
            if token.is_some() {
                r.token = token.clone();
            }
        })
        .await
    }

    /// Learns a robot a template names: a new name is added with no token;
    /// a known name must keep its URL (compared normalised), since its token
    /// and secrets were given for that URL. Only the operator moves a robot
    /// ([`Self::add_remote_robot`]).
    pub async fn learn_remote_robot(
        &self,
        name: &str,
        url: &str,
    ) -> Result<(), crate::remote::LearnError> {
        use crate::remote::LearnError;
        if !crate::remote::valid_robot_name(name) {
            return Err(CoreError::InvalidName(name.to_owned()).into());
        }
        let _guard = self.0.remote_lock.lock().await;
        let mut robots = self.remote_robots();
        if let Some(known) = robots.get(name) {
            if crate::remote::same_url(&known.url, url) {
                return Ok(());
            }
            return Err(LearnError::Moved {
                name: name.to_owned(),
                known: known.url.clone(),
                asked: url.to_owned(),
            });
        }
        robots.insert(
            name.to_owned(),
            crate::remote::RemoteRobot {
                url: url.to_owned(),
                ..Default::default()
            },
        );
        self.put_remote_robots(&robots).await?;
        Ok(())
    }

    /// Keeps, durably, the secret of service `guid` on robot `name`.
    pub async fn add_remote_secret(
        &self,
        name: &str,
        guid: uuid::Uuid,
        secret: &str,
    ) -> Result<(), CoreError> {
        self.update_remote_robots(|robots| {
            if let Some(r) = robots.get_mut(name) {
                r.service_secrets.insert(guid, secret.to_owned());
            }
        })
        .await
    }

    /// Forgets the secret of service `guid` on robot `name`: the service was
    /// deleted, or that robot no longer has it.
    pub async fn forget_remote_secret(
        &self,
        name: &str,
        guid: uuid::Uuid,
    ) -> Result<(), CoreError> {
        if self
            .remote_robot(name)
            .is_none_or(|r| !r.service_secrets.contains_key(&guid))
        {
            return Ok(());
        }
        self.update_remote_robots(|robots| {
            if let Some(r) = robots.get_mut(name) {
                r.service_secrets.remove(&guid);
            }
        })
        .await
    }

    /// Moves secrets of the old, unattributed list of robot `name` to the
    /// services they were found to grant. A secret no longer in the list
    /// (moved meanwhile) is left alone.
    pub async fn attribute_remote_secrets(
        &self,
        name: &str,
        found: &[(uuid::Uuid, String)],
    ) -> Result<(), CoreError> {
        if found.is_empty() {
            return Ok(());
        }
        self.update_remote_robots(|robots| {
            if let Some(r) = robots.get_mut(name) {
                for (guid, secret) in found {
                    if let Some(i) = r.secrets.iter().position(|s| s == secret) {
                        r.secrets.remove(i);
                        r.service_secrets.insert(*guid, secret.clone());
                    }
                }
            }
        })
        .await
    }

    async fn update_remote_robots(
        &self,
        f: impl FnOnce(&mut crate::remote::RemoteRobots),
    ) -> Result<(), CoreError> {
        // One writer at a time, so concurrent updates do not lose each other.
        let _guard = self.0.remote_lock.lock().await;
        let mut robots = self.remote_robots();
        f(&mut robots);
        self.put_remote_robots(&robots).await
    }

    /// Stores the known robots; the caller holds `remote_lock`.
    async fn put_remote_robots(
        &self,
        robots: &crate::remote::RemoteRobots,
    ) -> Result<(), CoreError> {
        let value = serde_json::to_value(robots).map_err(|e| CoreError::Storage(e.to_string()))?;
        self.put_setting(crate::remote::SETTING, value).await
    }

    /// Services from the store whose template is not loaded: `(name, UID)`.
    pub fn missing_services(&self) -> Vec<(String, String)> {
        self.0
            .missing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(s, _)| (s.name.clone(), s.template_uid.clone()))
            .collect()
    }

    fn services(&self) -> std::sync::RwLockReadGuard<'_, Services> {
        self.0.services.read().unwrap_or_else(|e| e.into_inner())
    }

    fn services_mut(&self) -> std::sync::RwLockWriteGuard<'_, Services> {
        self.0.services.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads every template of the repository checked out at `root`, and adds
    /// the good ones. Errors name each template that could not load.
    pub fn load_repository(&self, root: &Path, repo: &RepoId) -> RepoLoad {
        let load = load_repository(root, repo, self.0.engine.as_ref());
        for t in &load.templates {
            self.0.templates.add(t.clone());
        }
        if !load.templates.is_empty() && !self.missing_services().is_empty() {
            let robot = self.clone();
            tokio::spawn(async move { robot.restore_missing().await });
        }
        load
    }

    /// The service with this guid.
    pub fn service(&self, guid: Uuid) -> Option<Arc<Service>> {
        self.services().by_guid.get(&guid).cloned()
    }

    /// The service with this name.
    pub fn service_by_name(&self, name: &str) -> Option<Arc<Service>> {
        let s = self.services();
        s.by_name.get(name).and_then(|g| s.by_guid.get(g)).cloned()
    }

    /// The service a secret grants, by the secret's hash (as stored). One
    /// map lookup: the cost of a presented secret does not grow with the
    /// number of services.
    pub fn service_by_secret_hash(&self, hash: &str) -> Option<Arc<Service>> {
        let s = self.services();
        s.by_secret
            .get(hash)
            .and_then(|g| s.by_guid.get(g))
            .cloned()
    }

    /// A service named by its guid or its name.
    pub fn lookup(&self, name_or_guid: &str) -> Option<Arc<Service>> {
        Uuid::parse_str(name_or_guid)
            .ok()
            .and_then(|g| self.service(g))
            .or_else(|| self.service_by_name(name_or_guid))
    }

    /// The services matching `filter`, sorted by name.
    pub fn find_services(&self, filter: &ServiceFilter) -> Vec<Arc<Service>> {
        let mut found: Vec<Arc<Service>> = match (&filter.name, &filter.guid) {
            (Some(n), _) => self.service_by_name(n).into_iter().collect(),
            (None, Some(g)) => Uuid::parse_str(g)
                .ok()
                .and_then(|g| self.service(g))
                .into_iter()
                .collect(),
            (None, None) => self.services().by_guid.values().cloned().collect(),
        };
        found.retain(|s| filter.matches(s));
        found.sort_by(|a, b| a.name.cmp(&b.name));
        found
    }

    pub fn service_count(&self) -> usize {
        self.services().by_guid.len()
    }

    /// Creates a service: checks its data, runs `init` then `validate`, makes it
    /// durable, then lists it. On any failure nothing of it remains.
    pub async fn create_service(&self, req: NewService) -> Result<Arc<Service>, CoreError> {
        if !valid_name(&req.name) {
            return Err(CoreError::InvalidName(req.name));
        }
        let template = self.0.templates.resolve(&req.template)?;
        let data = template.prepare_data(req.data)?;
        let guid = Uuid::new_v4();
        {
            let mut s = self.services_mut();
            if s.by_name.contains_key(&req.name) {
                return Err(CoreError::NameTaken(req.name));
            }
            s.by_name.insert(req.name.clone(), guid);
        }
        let mut reservation = NameReservation {
            robot: self,
            name: req.name.clone(),
            kept: false,
        };
        let svc = Arc::new(Service::new(
            guid,
            req.name.clone(),
            template.clone(),
            data,
            req.public,
            crate::time::now(),
            ServiceStatus::Creating,
        ));
        svc.set_secret_hashes(req.secrets);
        for hook in [Hook::Init, Hook::Validate] {
            if template.has_hook(hook) {
                self.run_hook(&svc, hook, Value::Null)
                    .await
                    .map_err(|message| CoreError::HookFailed {
                        hook: hook.name().to_owned(),
                        service: req.name.clone(),
                        message,
                    })?;
            }
        }
        // Tasks the hooks scheduled become durable with the service itself.
        let mut ops = vec![StoreOp::PutService(self.service_record(&svc))];
        ops.extend(
            svc.waiting_tasks()
                .iter()
                .map(|t| StoreOp::PutTask(t.record())),
        );
        svc.lock().state_dirty = false;
        self.0
            .store
            .commit(ops)
            .await
            .map_err(|e| CoreError::Storage(e.to_string()))?;
        self.services_mut().insert(&svc);
        reservation.kept = true;
        svc.lock().status = ServiceStatus::Ok;
        svc.log(
            LogLevel::Info,
            format!("created from template {}", template.uid),
        );
        self.start_recurring(&svc);
        self.kick(&svc);
        Ok(svc)
    }

    /// The service as the store keeps it.
    pub fn service_record(&self, svc: &Service) -> ServiceRecord {
        let inner = svc.lock();
        ServiceRecord {
            guid: svc.guid,
            name: svc.name.clone(),
            template_uid: svc.template_uid(),
            public: svc.public,
            data: (*inner.data).clone(),
            state: inner.state.clone(),
            secrets: inner.secrets.clone(),
            created: svc.created,
        }
    }

    fn start_recurring(&self, svc: &Arc<Service>) {
        let template = svc.template();
        for (action, policy) in &template.manifest.actions {
            if let Some(period) = policy.recurring {
                self.0.recurring.add(svc, action, period);
            }
        }
    }

    /// Runs a hook outside any task (the caller guarantees no task of the
    /// service runs meanwhile). Data the hook changed is kept in memory.
    async fn run_hook(&self, svc: &Arc<Service>, hook: Hook, arg: Value) -> Result<(), String> {
        let template = svc.template();
        let data = self.run_hook_on(&template, svc, hook, arg).await?;
        if let Some(data) = data {
            svc.lock().data = Arc::new(data);
        }
        Ok(())
    }

    /// Runs a hook of `template` (which may not be the service's yet) and
    /// returns the data it left, checked against that template's schema.
    async fn run_hook_on(
        &self,
        template: &Arc<Template>,
        svc: &Arc<Service>,
        hook: Hook,
        arg: Value,
    ) -> Result<Option<Value>, String> {
        let timeout = self.0.config.hook_timeout;
        let call = ActionCall {
            robot: self.clone(),
            service: svc.clone(),
            task: None,
            callable: Callable::Hook(hook),
            args: arg,
            data: svc.data(),
            deadline: Some(std::time::Instant::now() + timeout),
        };
        let (robot, on, of) = (self.clone(), template.clone(), svc.clone());
        let outcome = self
            .on_template_runtime(async move { robot.run_call(&on, &of, call, timeout).await })
            .await;
        let outcome = match outcome {
            Ok(Ok(o)) => o,
            Ok(Err(Interrupted)) => {
                return Err(format!(
                    "`{}` was interrupted: the robot is stopping",
                    hook.name()
                ))
            }
            Err(e) => return Err(format!("`{}` did not finish: {e}", hook.name())),
        };
        outcome.result.map_err(|e| e.message)?;
        match outcome.data {
            None => Ok(None),
            Some(mut data) => {
                template.check_data(&mut data).map_err(|e| {
                    format!(
                        "{} left data that does not match the schema: {e}",
                        hook.name()
                    )
                })?;
                Ok(Some(data))
            }
        }
    }

    /// Runs one call of a template's code under its time bound, stopping it
    /// early if the service is being deleted; `Err` if a shutdown cut it.
    /// Call it on the template runtime: the code runs inline.
    async fn run_call(
        &self,
        template: &Template,
        svc: &Service,
        call: ActionCall,
        timeout: Duration,
    ) -> Result<ActionOutcome, Interrupted> {
        let name = call.callable.name().to_owned();
        let fut = template.code.run(call);
        Ok(tokio::select! {
            // The action first: one that ends at its first poll (most do)
            // never registers with the deletion or shutdown signals, and the
            // shutdown one is shared by every task of the robot.
            biased;
            out = tokio::time::timeout(timeout, fut) => match out {
                Ok(o) => o,
                Err(_) => ActionOutcome {
                    result: Err(ActionError::new(
                        category::TIMEOUT,
                        format!("`{name}` ran past its timeout of {}s and was stopped", timeout.as_secs_f64()),
                    )),
                    data: None,
                },
            },
            _ = svc.stop_running.notified() => ActionOutcome {
                result: Err(ActionError::new("action.stopped", format!("`{name}` was stopped: the service is being deleted"))),
                data: None,
            },
            _ = self.stopped() => return Err(Interrupted),
        })
    }

    /// Queues `action` on `svc` with normal priority; returns once the task is durable.
    pub async fn schedule(
        &self,
        svc: &Arc<Service>,
        action: &str,
        args: Value,
    ) -> Result<Arc<Task>, CoreError> {
        self.schedule_with(svc, action, args, Priority::Normal)
            .await
    }

    /// Queues `action` on `svc`; returns once the task is durable. Unknown
    /// actions and arguments that fail the action's schema are refused here,
    /// not when the task runs.
    pub async fn schedule_with(
        &self,
        svc: &Arc<Service>,
        action: &str,
        args: Value,
        priority: Priority,
    ) -> Result<Arc<Task>, CoreError> {
        self.schedule_traced(svc, action, args, priority, None)
            .await
    }

    /// Like [`Robot::schedule_with`], recording who asked for the task.
    pub async fn schedule_traced(
        &self,
        svc: &Arc<Service>,
        action: &str,
        args: Value,
        priority: Priority,
        trace: Option<crate::task::TaskTrace>,
    ) -> Result<Arc<Task>, CoreError> {
        self.schedule_record(svc, action, args, priority, trace, None)
            .await
    }

    /// Queues a task made of these, with the idempotency `key` it came with.
    async fn schedule_record(
        &self,
        svc: &Arc<Service>,
        action: &str,
        args: Value,
        priority: Priority,
        trace: Option<crate::task::TaskTrace>,
        key: Option<String>,
    ) -> Result<Arc<Task>, CoreError> {
        let template = svc.template();
        let args = match template.prepare_args(action, args)? {
            Value::Null => Value::Object(Default::default()),
            a => a,
        };
        let creating = match svc.status() {
            ServiceStatus::Deleting => return Err(CoreError::ServiceDeleting(svc.name.clone())),
            ServiceStatus::Creating => true,
            _ => false,
        };
        let record = TaskRecord {
            guid: Uuid::new_v4(),
            service_guid: svc.guid,
            service_name: svc.name.clone(),
            template_uid: template.uid_text.clone(),
            action_name: action.to_owned(),
            args,
            priority,
            seq: self.0.seq.fetch_add(1, Ordering::Relaxed),
            state: TaskState::New,
            attempt: 0,
            created: crate::time::now(),
            started: None,
            duration: None,
            result: None,
            eco: None,
            trace,
            key,
        };
        let task = Task::new(record.clone(), Arc::downgrade(svc));
        if !creating {
            self.0
                .store
                .commit(vec![StoreOp::PutTask(record)])
                .await
                .map_err(|e| CoreError::Storage(e.to_string()))?;
        }
        let mut validate = false;
        let spawn = {
            let mut inner = svc.lock();
            if inner.status == ServiceStatus::Deleting {
                None
            } else {
                inner.queue.push(priority, task.clone());
                let spawn = !inner.driving && inner.status == ServiceStatus::Ok;
                if spawn {
                    inner.driving = true;
                }
                // Restored and not validated yet: now, not in its turn of
                // the start's pass over every service.
                validate = std::mem::take(&mut inner.unvalidated);
                Some(spawn)
            }
        };
        if validate {
            let (robot, svc) = (self.clone(), svc.clone());
            drop(tokio::spawn(
                async move { robot.validate_restored(svc).await },
            ));
        }
        let Some(spawn) = spawn else {
            // Deleted while the task was being stored: it must not come back.
            let _ = self
                .0
                .store
                .commit(vec![StoreOp::RemoveTask {
                    guid: task.guid,
                    seq: task.seq,
                }])
                .await;
            return Err(CoreError::ServiceDeleting(svc.name.clone()));
        };
        if spawn {
            self.spawn_drive(svc.clone());
        }
        Ok(task)
    }

    /// Starts draining the queue of `svc` if it has work and nobody drains it.
    fn kick(&self, svc: &Arc<Service>) {
        let spawn = {
            let mut inner = svc.lock();
            let spawn =
                !inner.driving && inner.status == ServiceStatus::Ok && !inner.queue.is_empty();
            if spawn {
                inner.driving = true;
            }
            spawn
        };
        if spawn {
            self.spawn_drive(svc.clone());
        }
    }

    /// The single consumer of a service's queue: runs its tasks one at a time
    /// until the queue is empty, the service may not run tasks, or the robot
    /// shuts down (the waiting tasks are durable: they run at the next start).
    /// Runs on the template runtime ([`Robot::spawn_drive`]).
    async fn drive(self, svc: Arc<Service>) {
        loop {
            let task = {
                let mut inner = svc.lock();
                let next = if inner.status == ServiceStatus::Ok && !self.0.work.draining() {
                    inner.queue.pop()
                } else {
                    None
                };
                match next {
                    Some(t) => {
                        inner.current = Some(t.clone());
                        t
                    }
                    None => {
                        inner.driving = false;
                        inner.queue.shrink_if_idle();
                        drop(inner);
                        svc.idle.notify_waiters();
                        return;
                    }
                }
            };
            match self.run_task(&svc, &task).await {
                // The next task reads nothing this outcome changed: it starts
                // now, and the outcome's commit tells the task's waiters.
                Some(ended) if ended.new_data.is_none() => {
                    self.store_outcome_later(&svc, task, ended)
                }
                Some(ended) => {
                    self.store_outcome(&svc, &task, ended).await;
                    svc.lock().current = None;
                }
                None => svc.lock().current = None,
            }
        }
    }

    /// Runs `task` and stores its outcome; the task is done when it returns,
    /// but for an interrupted one. Call it on the template runtime.
    async fn run_task_to_end(&self, svc: &Arc<Service>, task: &Arc<Task>) {
        if let Some(ended) = self.run_task(svc, task).await {
            self.store_outcome(svc, task, ended).await;
        }
    }

    /// Runs one task to its end, its tries and its timeout, and returns its
    /// outcome to be stored (by [`Robot::store_outcome`] or
    /// [`Robot::store_outcome_later`]), before which nobody waiting on it is
    /// told. A task a shutdown interrupts is left as it is (`None`):
    /// unfinished, so it runs again at the next start. Call it on the
    /// template runtime.
    async fn run_task(&self, svc: &Arc<Service>, task: &Arc<Task>) -> Option<Ended> {
        let template = svc.template();
        let (action, args, mut attempt, started) = {
            let mut r = task.lock();
            r.state = TaskState::Running;
            r.attempt += 1;
            let started = crate::time::now();
            r.started = Some(started);
            (r.action_name.clone(), r.args.clone(), r.attempt, started)
        };
        // The start is recorded (so that a crash shows in the attempt count)
        // only for a run that does not end at its first poll: most actions
        // run to their end without waiting, and their outcome is the only
        // write they need. It is handed over at once and applied before the
        // outcome, so nothing waits on it.
        let policy = template.policy(&action);
        let tries = policy.retry.map(|r| r.tries).unwrap_or(1);
        let timeout = policy
            .timeout
            .unwrap_or(self.0.config.default_action_timeout);
        let mut eco: Option<Eco> = None;
        let mut run = 1;
        let (result, new_data) = loop {
            let call = ActionCall {
                robot: self.clone(),
                service: svc.clone(),
                task: Some(task.clone()),
                callable: Callable::Action(action.clone()),
                args: args.clone(),
                data: svc.data(),
                deadline: Some(std::time::Instant::now() + timeout),
            };
            let run_call = self.run_call(&template, svc, call, timeout);
            tokio::pin!(run_call);
            let outcome = tokio::select! {
                biased;
                out = &mut run_call => out,
                _ = std::future::ready(()) => {
                    drop(self.0.store.commit(vec![StoreOp::TaskStarted {
                        guid: task.guid,
                        seq: task.seq,
                        attempt,
                        started,
                    }]));
                    run_call.await
                }
            };
            let Ok(outcome) = outcome else {
                return None;
            };
            let outcome = match outcome {
                ActionOutcome {
                    result: Ok(v),
                    data: Some(mut d),
                } => match template.check_data(&mut d) {
                    Ok(()) => (Ok(v), Some(d)),
                    Err(e) => (
                        Err(ActionError::new(
                            category::INVALID_DATA,
                            format!("`{action}` left data that does not match the template's schema, so it was not saved: {e}"),
                        )),
                        None,
                    ),
                },
                ActionOutcome { result, .. } => (result, None),
            };
            let err = match outcome {
                (Ok(v), d) => break (Ok(v), d),
                (Err(e), _) => e,
            };
            let now = crate::time::now();
            let e = eco.get_or_insert_with(|| Eco {
                category: String::new(),
                message: String::new(),
                trace: String::new(),
                count: 0,
                time_first: now,
                time_last: now,
            });
            e.category = err.category.clone();
            e.message = err.message.clone();
            e.trace = err.trace.clone();
            e.count += 1;
            e.time_last = now;
            svc.log(
                LogLevel::Error,
                format!(
                    "task {} `{action}` failed (run {run} of {tries}): [{}] {}",
                    task.guid, err.category, err.message
                ),
            );
            let stopped =
                err.category == "action.stopped" || svc.status() == ServiceStatus::Deleting;
            if run >= tries || stopped {
                break (Err(err), None);
            }
            run += 1;
            let delay = policy
                .retry
                .map(|r| r.delay_before(run))
                .unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = svc.stop_running.notified() => break (Err(err), None),
                _ = self.stopped() => return None,
            }
            attempt += 1;
            task.lock().attempt = attempt;
        };
        let mut record = task.record();
        record.duration = Some((crate::time::now() - started).max(0.0));
        match result {
            Ok(v) => {
                record.state = TaskState::Ok;
                record.result = Some(v);
            }
            Err(_) => {
                record.state = TaskState::Error;
                record.result = None;
            }
        }
        record.eco = eco;
        let mut ops = vec![StoreOp::PutTask(record.clone())];
        let new_data = new_data.map(Arc::new);
        if let Some(d) = &new_data {
            ops.push(StoreOp::SaveData {
                service: svc.guid,
                data: d.clone(),
            });
        }
        let state = {
            let mut inner = svc.lock();
            std::mem::take(&mut inner.state_dirty).then(|| inner.state.clone())
        };
        if let Some(state) = state {
            ops.push(StoreOp::SaveState {
                service: svc.guid,
                state,
            });
        }
        Some(Ended {
            record,
            ops,
            new_data,
        })
    }

    /// Makes a task's outcome durable, then tells who waits on it.
    async fn store_outcome(&self, svc: &Arc<Service>, task: &Arc<Task>, ended: Ended) {
        let Ended {
            record,
            ops,
            new_data,
        } = ended;
        let result = self.0.store.commit(ops).await;
        if let (Ok(()), Some(d)) = (&result, new_data) {
            svc.lock().data = d;
        }
        settle(&self.observers(), svc, task, record, result);
    }

    /// Hands a task's outcome, which left the data as it was, to the store
    /// and returns at once: the commit's completion tells who waits on the
    /// task (on the store's thread). Until then the task is `finishing`:
    /// still found, still running to readers, and the service not idle.
    fn store_outcome_later(&self, svc: &Arc<Service>, task: Arc<Task>, ended: Ended) {
        {
            let mut inner = svc.lock();
            inner.current = None;
            inner.finishing.push(task.clone());
        }
        // No robot in the completion: it may run on the store's thread,
        // which must never drop the store's last handle.
        let observers = self.observers();
        let svc = svc.clone();
        let Ended { record, ops, .. } = ended;
        self.0.store.commit_then(
            ops,
            Box::new(move |result| {
                settle(&observers, &svc, &task, record, result);
                let idle = {
                    let mut inner = svc.lock();
                    inner.finishing.retain(|t| !Arc::ptr_eq(t, &task));
                    inner.finishing.is_empty() && !inner.driving
                };
                if idle {
                    svc.idle.notify_waiters();
                }
            }),
        );
    }

    /// A task of `svc`, waiting, running or finished.
    pub async fn task(&self, svc: &Service, guid: Uuid) -> Result<TaskRecord, CoreError> {
        if let Some(t) = self.live_task(svc, guid) {
            return Ok(t.record());
        }
        match self.0.store.task(svc.guid, guid).await {
            Ok(Some(t)) if t.service_guid == svc.guid => Ok(t),
            Ok(_) => Err(CoreError::TaskNotFound(guid.to_string())),
            Err(e) => Err(CoreError::Storage(e.to_string())),
        }
    }

    /// A waiting or running task of `svc`, as a handle one can wait on.
    pub fn live_task(&self, svc: &Service, guid: Uuid) -> Option<Arc<Task>> {
        let inner = svc.lock();
        let found = inner
            .finishing
            .iter()
            .chain(inner.current.iter())
            .chain(inner.queue.iter())
            .find(|t| t.guid == guid)
            .cloned();
        found
    }

    /// The tasks of `svc`: the running one and the waiting ones in the order
    /// they will run; with `all`, the kept finished ones before them.
    pub async fn tasks(&self, svc: &Service, all: bool) -> Result<Vec<TaskRecord>, CoreError> {
        let mut out = Vec::new();
        if all {
            out = self
                .0
                .store
                .finished_tasks(svc.guid, usize::MAX)
                .await
                .map_err(|e| CoreError::Storage(e.to_string()))?;
        }
        let inner = svc.lock();
        // A task that just ended (finishing, or current until its drive loop
        // moves on) may be in the store's answer already: once.
        out.retain(|r| {
            !inner
                .finishing
                .iter()
                .chain(inner.current.iter())
                .any(|t| t.guid == r.guid)
        });
        out.extend(
            inner
                .finishing
                .iter()
                .chain(inner.current.iter())
                .chain(inner.queue.iter())
                .map(|t| t.record()),
        );
        Ok(out)
    }

    /// Cancels a waiting task; it ends in `error` with a `task.cancelled` eco.
    pub async fn cancel_task(&self, svc: &Service, guid: Uuid) -> Result<(), CoreError> {
        let removed = svc.lock().queue.remove(guid);
        let Some(task) = removed else {
            let record = self.task(svc, guid).await?;
            return Err(CoreError::TaskNotCancellable {
                guid: guid.to_string(),
                state: record.state.to_string(),
            });
        };
        let now = crate::time::now();
        let mut record = task.record();
        record.state = TaskState::Error;
        record.duration = Some(0.0);
        record.eco = Some(Eco {
            category: "task.cancelled".to_owned(),
            message: "the task was cancelled before it ran".to_owned(),
            trace: String::new(),
            count: 1,
            time_first: now,
            time_last: now,
        });
        self.0
            .store
            .commit(vec![StoreOp::PutTask(record.clone())])
            .await
            .map_err(|e| CoreError::Storage(e.to_string()))?;
        task.finish(record);
        Ok(())
    }

    /// Waits until `target` is done. When the wait comes from an action (its
    /// task is `waiter`), a wait that could never end fails at once.
    pub async fn wait_task(
        &self,
        waiter: Option<&Arc<Task>>,
        target: &Arc<Task>,
        timeout: Option<Duration>,
    ) -> Result<TaskRecord, WaitError> {
        let _edge = match waiter {
            Some(w) => Some(self.0.waits.begin(w, target).map_err(WaitError::Deadlock)?),
            None => None,
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, target.done())
                .await
                .map_err(|_| WaitError::Timeout(t)),
            None => Ok(target.done().await),
        }
    }

    /// Deletes a service: drops its waiting tasks, lets the running one finish
    /// (within a bound), runs its `on_delete` actions in order (each within a
    /// bound), then removes it.
    pub async fn delete_service(&self, guid: Uuid) -> Result<(), CoreError> {
        let svc = self
            .service(guid)
            .ok_or_else(|| CoreError::ServiceNotFound(guid.to_string()))?;
        let dropped = {
            let mut inner = svc.lock();
            if inner.status == ServiceStatus::Deleting {
                return Err(CoreError::ServiceDeleting(svc.name.clone()));
            }
            inner.status = ServiceStatus::Deleting;
            inner.queue.drain()
        };
        svc.log(LogLevel::Info, "deleting");
        let now = crate::time::now();
        for t in dropped {
            let mut r = t.record();
            r.state = TaskState::Error;
            r.eco = Some(Eco {
                category: category::SERVICE_DELETED.to_owned(),
                message: format!("service `{}` was deleted before the task ran", svc.name),
                trace: String::new(),
                count: 1,
                time_first: now,
                time_last: now,
            });
            t.finish(r);
        }
        if !self
            .wait_idle(&svc, self.0.config.delete_running_bound)
            .await
        {
            svc.stop_running.notify_waiters();
            self.wait_idle(&svc, Duration::from_secs(5)).await;
        }
        let template = svc.template();
        for action in &template.manifest.on_delete {
            let record = TaskRecord {
                guid: Uuid::new_v4(),
                service_guid: svc.guid,
                service_name: svc.name.clone(),
                template_uid: template.uid_text.clone(),
                action_name: action.clone(),
                args: Value::Object(Default::default()),
                priority: Priority::System,
                seq: self.0.seq.fetch_add(1, Ordering::Relaxed),
                state: TaskState::New,
                attempt: 0,
                created: crate::time::now(),
                started: None,
                duration: None,
                result: None,
                eco: None,
                trace: None,
                key: None,
            };
            let task = Task::new(record, Arc::downgrade(&svc));
            svc.lock().current = Some(task.clone());
            let bound = self.0.config.on_delete_bound;
            let (robot, of, running) = (self.clone(), svc.clone(), task.clone());
            let run = tokio::time::timeout(
                bound,
                self.on_template_runtime(async move { robot.run_task_to_end(&of, &running).await }),
            )
            .await;
            svc.lock().current = None;
            match (run, task.state()) {
                (Ok(Err(e)), _) => svc.log(
                    LogLevel::Error,
                    format!("on_delete action `{action}` did not finish: {e}"),
                ),
                (Err(_), _) => svc.log(
                    LogLevel::Error,
                    format!(
                        "on_delete action `{action}` ran past {}s and was stopped",
                        bound.as_secs_f64()
                    ),
                ),
                (Ok(Ok(())), TaskState::Error) => {
                    tracing::warn!(service = %svc.name, %action, "on_delete action failed; deleting anyway")
                }
                _ => {}
            }
        }
        if let Err(e) = self
            .0
            .store
            .commit(vec![StoreOp::DeleteService(svc.guid)])
            .await
        {
            svc.lock().status = ServiceStatus::Ok;
            return Err(CoreError::Storage(e.to_string()));
        }
        {
            self.services_mut().remove(&svc);
        }
        tracing::info!(service = %svc.name, guid = %svc.guid, "service deleted");
        self.observe(|o| o.service_deleted(&svc));
        Ok(())
    }

    /// Waits until no task of `svc` runs; false if `bound` passed first.
    async fn wait_idle(&self, svc: &Service, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        loop {
            let idle = svc.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            {
                let inner = svc.lock();
                if !inner.driving && inner.current.is_none() && inner.finishing.is_empty() {
                    return true;
                }
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return false;
            }
        }
    }

    /// Brings back, after a start, every service and waiting task the store
    /// holds. Call it once, after the templates are loaded. Waiting tasks keep
    /// their order; a task that was running runs again (its attempt count
    /// shows it). Each service runs `validate` before any task; one that fails
    /// it is retried in the background and runs nothing until it passes.
    pub async fn restore(&self) -> Result<RestoreReport, CoreError> {
        let loaded = self.read_store().await?;
        Ok(self.restore_from(loaded))
    }

    /// Reads everything the store holds and makes the robot settings
    /// current, so a start can consult them before loading templates; then
    /// hand the rest to [`Robot::restore_from`].
    pub async fn read_store(&self) -> Result<crate::store::Loaded, CoreError> {
        let mut loaded = self
            .0
            .store
            .load()
            .await
            .map_err(|e| CoreError::Storage(e.to_string()))?;
        *self.0.settings.write().unwrap_or_else(|e| e.into_inner()) =
            std::mem::take(&mut loaded.settings);
        Ok(loaded)
    }

    /// The second half of [`Robot::restore`].
    pub fn restore_from(&self, loaded: crate::store::Loaded) -> RestoreReport {
        self.restore_keys(loaded.keys, loaded.waiting.iter());
        let mut tasks_of: HashMap<Uuid, Vec<TaskRecord>> = HashMap::new();
        let mut max_seq = 0;
        for t in loaded.waiting {
            max_seq = max_seq.max(t.seq);
            tasks_of.entry(t.service_guid).or_default().push(t);
        }
        self.0.seq.fetch_max(max_seq + 1, Ordering::Relaxed);
        let mut report = RestoreReport::default();
        let mut restored = Vec::with_capacity(loaded.services.len());
        for record in loaded.services {
            let tasks = tasks_of.remove(&record.guid).unwrap_or_default();
            match self.revive(record, tasks, &mut report) {
                Some(svc) => restored.push(svc),
                None => continue,
            }
        }
        report.services = restored.len();
        self.validate_all(restored);
        report
    }

    /// Lists a stored service again with its waiting tasks, not yet running
    /// them; `None` if its template is missing (it is kept aside then).
    fn revive(
        &self,
        record: ServiceRecord,
        tasks: Vec<TaskRecord>,
        report: &mut RestoreReport,
    ) -> Option<Arc<Service>> {
        let exact = crate::template::TemplateUid::parse(&record.template_uid);
        let template = exact.as_ref().and_then(|u| self.0.templates.get(u));
        let template = match template {
            Some(t) => t,
            None => match exact
                .as_ref()
                .and_then(|u| self.0.templates.newest_version_of(u))
            {
                Some(t) => {
                    report.fallbacks.push((
                        record.name.clone(),
                        record.template_uid.clone(),
                        t.uid.to_string(),
                    ));
                    t
                }
                None => {
                    tracing::warn!(service = %record.name, template = %record.template_uid, "template not loaded; the service waits for it");
                    report
                        .missing
                        .push((record.name.clone(), record.template_uid.clone()));
                    self.0
                        .missing
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((record, tasks));
                    return None;
                }
            },
        };
        let svc = Arc::new(Service::new(
            record.guid,
            record.name.clone(),
            template.clone(),
            record.data,
            record.public,
            record.created,
            ServiceStatus::Invalid("not validated yet since the robot started".into()),
        ));
        {
            let mut inner = svc.lock();
            inner.state = record.state;
            inner.secrets = record.secrets;
            inner.unvalidated = true;
        }
        if template.uid.to_string() != record.template_uid {
            svc.log(
                LogLevel::Warning,
                format!(
                    "template {} is not loaded; running on {} instead",
                    record.template_uid, template.uid
                ),
            );
        }
        report.waiting_tasks += tasks.len();
        for mut t in tasks {
            t.state = TaskState::New;
            let priority = t.priority;
            let task = Task::new(t, Arc::downgrade(&svc));
            svc.lock().queue.push(priority, task);
        }
        {
            let mut s = self.services_mut();
            s.by_name.insert(svc.name.clone(), svc.guid);
            s.insert(&svc);
        }
        Some(svc)
    }

    /// Runs `validate` on each restored service, then lets it run its tasks.
    /// The services with waiting tasks go first; one a task was scheduled
    /// on meanwhile was validated then, and is skipped.
    fn validate_all(&self, services: Vec<Arc<Service>>) {
        let robot = self.clone();
        let (busy, quiet): (Vec<_>, Vec<_>) = services.into_iter().partition(|s| s.queue_len() > 0);
        tokio::spawn(async move {
            for svc in busy.into_iter().chain(quiet) {
                robot.observe(|o| o.service_added(&svc));
                let unvalidated = std::mem::take(&mut svc.lock().unvalidated);
                if unvalidated {
                    robot.validate_restored(svc).await;
                }
            }
        });
    }

    async fn validate_restored(&self, svc: Arc<Service>) {
        let template = svc.template();
        if template.has_hook(Hook::Validate) {
            if let Err(message) = self.run_hook(&svc, Hook::Validate, Value::Null).await {
                svc.lock().status = ServiceStatus::Invalid(message.clone());
                svc.log(
                    LogLevel::Error,
                    format!("validate failed, no task runs until it passes: {message}"),
                );
                let robot = self.clone();
                tokio::spawn(async move { robot.retry_validate(svc).await });
                return;
            }
        }
        self.mark_valid(&svc);
    }

    fn mark_valid(&self, svc: &Arc<Service>) {
        {
            let mut inner = svc.lock();
            if inner.status == ServiceStatus::Deleting {
                return;
            }
            inner.status = ServiceStatus::Ok;
        }
        self.start_recurring(svc);
        self.kick(svc);
    }

    /// Retries `validate` with a growing pause (1 s up to 5 min) until it
    /// passes or the service is deleted.
    async fn retry_validate(&self, svc: Arc<Service>) {
        let mut pause = Duration::from_secs(1);
        loop {
            tokio::time::sleep(pause).await;
            if self.service(svc.guid).is_none() || svc.status() == ServiceStatus::Deleting {
                return;
            }
            match self.run_hook(&svc, Hook::Validate, Value::Null).await {
                Ok(()) => {
                    svc.log(LogLevel::Info, "validate passed; running tasks again");
                    self.mark_valid(&svc);
                    return;
                }
                Err(message) => {
                    svc.lock().status = ServiceStatus::Invalid(message);
                    pause = (pause * 2).min(Duration::from_secs(300));
                }
            }
        }
    }

    /// Tries again the services whose template was missing.
    async fn restore_missing(&self) {
        let pending =
            std::mem::take(&mut *self.0.missing.lock().unwrap_or_else(|e| e.into_inner()));
        let mut report = RestoreReport::default();
        let mut revived = Vec::new();
        for (record, tasks) in pending {
            if let Some(svc) = self.revive(record, tasks, &mut report) {
                revived.push(svc);
            }
        }
        self.validate_all(revived);
    }
}

impl std::fmt::Debug for Robot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Robot")
            .field("services", &self.service_count())
            .finish()
    }
}
