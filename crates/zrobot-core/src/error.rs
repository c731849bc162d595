//! The errors of the core: each names the input at fault and, where there is one, the fix.

use std::path::PathBuf;

/// A template that cannot be loaded: which file, which field, and what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{}: {message}", path.display(), field.as_ref().map(|f| format!(": field `{f}`")).unwrap_or_default())]
pub struct TemplateError {
    /// The file (or folder) at fault.
    pub path: PathBuf,
    /// The manifest field at fault, when there is one.
    pub field: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl TemplateError {
    pub fn new(path: impl Into<PathBuf>, field: Option<&str>, message: impl Into<String>) -> Self {
        TemplateError {
            path: path.into(),
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }
}

/// Why a request to the robot was refused or failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CoreError {
    #[error("no template matches `{0}`; list the loaded templates to see their UIDs")]
    TemplateNotFound(String),
    #[error("template `{reference}` is ambiguous; name one of: {}", candidates.join(", "))]
    AmbiguousTemplate {
        reference: String,
        candidates: Vec<String>,
    },
    #[error("invalid data for template {template}: {reason}")]
    InvalidData { template: String, reason: String },
    #[error("invalid service name `{0}`: use 1 to 128 characters among letters, digits, `-`, `_` and `.` (not only dots)")]
    InvalidName(String),
    #[error("a service named `{0}` already exists; pick another name or delete it first")]
    NameTaken(String),
    #[error("no service `{0}`")]
    ServiceNotFound(String),
    #[error("service `{0}` is being deleted and accepts no new task")]
    ServiceDeleting(String),
    #[error("template {template} has no action `{action}`; its actions are: {}", if available.is_empty() { "(none)".to_owned() } else { available.join(", ") })]
    UnknownAction {
        template: String,
        action: String,
        available: Vec<String>,
    },
    #[error("invalid arguments for action `{action}`: {reason}")]
    InvalidArgs { action: String, reason: String },
    #[error("no task `{0}`")]
    TaskNotFound(String),
    #[error("task {guid} is {state} and can no longer be cancelled; only waiting tasks can")]
    TaskNotCancellable { guid: String, state: String },
    #[error("{hook} of service `{service}` failed: {message}")]
    HookFailed {
        hook: String,
        service: String,
        message: String,
    },
    #[error("service `{0}` is busy (its running task did not end in time); try again")]
    ServiceBusy(String),
    #[error("idempotency key `{key}` was used for a task of action `{action}` on this service; send a new key with a new request")]
    KeyReused { key: String, action: String },
    #[error("storage failed: {0}")]
    Storage(#[from] crate::store::StoreError),
    #[error("the robot is shutting down")]
    ShuttingDown,
}
