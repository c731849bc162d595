//! The seam between the core and the language templates are written in.
//!
//! The core decides *when* an action runs and what it may touch; an [`Engine`]
//! decides *how* the template's code runs. The only engine today is Lua
//! (`zrobot-lua`), and this module is the only place the two meet.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use crate::error::TemplateError;
use crate::robot::Robot;
use crate::service::Service;
use crate::task::Task;
use crate::template::TemplateUid;

/// A boxed, sendable future, so that engines can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Compiles template code.
pub trait Engine: Send + Sync + 'static {
    /// The file, inside the template's folder, that holds its code.
    fn code_file(&self, template_name: &str) -> String;

    /// Compiles the code of one template: checks it, and lists its actions and hooks.
    fn compile(&self, source: &TemplateSource) -> Result<Arc<dyn TemplateCode>, TemplateError>;
}

/// Where a template's code lives.
#[derive(Debug, Clone)]
pub struct TemplateSource {
    pub uid: TemplateUid,
    /// The template's own folder.
    pub dir: PathBuf,
    /// The repository root: `require` may not reach outside it.
    pub repo_root: PathBuf,
    /// The code file, inside `dir`.
    pub code_path: PathBuf,
}

/// The hooks a template may define; they are never actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    Init,
    Validate,
    UpdateData,
    Migrate,
}

impl Hook {
    pub const ALL: [Hook; 4] = [Hook::Init, Hook::Validate, Hook::UpdateData, Hook::Migrate];

    pub fn name(self) -> &'static str {
        match self {
            Hook::Init => "init",
            Hook::Validate => "validate",
            Hook::UpdateData => "update_data",
            Hook::Migrate => "migrate",
        }
    }
}

/// What a call runs: an action, or a hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callable {
    Action(String),
    Hook(Hook),
}

impl Callable {
    pub fn name(&self) -> &str {
        match self {
            Callable::Action(a) => a,
            Callable::Hook(h) => h.name(),
        }
    }
}

/// Compiled code of one template version.
pub trait TemplateCode: Send + Sync + 'static {
    /// The actions, sorted: public functions that are not hooks.
    fn actions(&self) -> &[String];

    /// Whether the code defines `hook`.
    fn has_hook(&self, hook: Hook) -> bool;

    /// Runs one action or hook to its end.
    fn run(&self, call: ActionCall) -> BoxFuture<'static, ActionOutcome>;
}

/// Everything an action may see and touch.
pub struct ActionCall {
    /// The robot, for the calls an action makes to other services.
    pub robot: Robot,
    /// The service the action runs for.
    pub service: Arc<Service>,
    /// The task being run; `None` for hooks run outside any task (at creation).
    pub task: Option<Arc<Task>>,
    pub callable: Callable,
    /// The action's arguments; for `update_data` the new data, for `migrate`
    /// the version moved from (a string).
    pub args: Value,
    /// The service data when the call starts (shared: most actions never
    /// read it). The engine hands back the data only when the code could have
    /// changed it.
    pub data: Arc<Value>,
    /// When the call must be over; the engine stops the code past it.
    pub deadline: Option<Instant>,
}

/// How a call ended.
#[derive(Debug)]
pub struct ActionOutcome {
    /// The value returned, or why it failed.
    pub result: Result<Value, ActionError>,
    /// The service data as the code left it; `None` when the code did not touch it.
    pub data: Option<Value>,
}

/// Why an action failed, as the engine tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionError {
    /// A dotted category, e.g. `lua.error`, `action.timeout`.
    pub category: String,
    pub message: String,
    /// Where it happened: a traceback with files and lines.
    pub trace: String,
}

impl ActionError {
    pub fn new(category: &str, message: impl Into<String>) -> ActionError {
        ActionError {
            category: category.to_owned(),
            message: message.into(),
            trace: String::new(),
        }
    }
}

/// Eco categories the core itself raises.
pub mod category {
    /// The action ran past its `timeout` or the robot's bound.
    pub const TIMEOUT: &str = "action.timeout";
    /// The action returned data that no longer matches the template's schema.
    pub const INVALID_DATA: &str = "data.invalid";
    /// A waiting task was dropped because its service was deleted.
    pub const SERVICE_DELETED: &str = "service.deleted";
    /// The robot could not store the outcome.
    pub const STORAGE: &str = "robot.storage";
}
