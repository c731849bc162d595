//! The heart of zrobot: templates, services, task lists and their scheduling.
//!
//! # Layout
//!
//! - [`template`]: template manifests, UIDs, and the registry that resolves a
//!   template reference (any unambiguous suffix of a UID) to one version.
//! - [`engine`]: the seam to the code that runs actions. The core knows no Lua:
//!   an [`engine::Engine`] compiles a template's code and runs its actions.
//! - [`events`]: the event stream of services and tasks, with a window to resume.
//! - [`service`]: a service, its state table and its own log.
//! - [`task`]: tasks, their error conditions (ecos) and the handles callers wait on.
//! - [`robot`]: the runtime that owns services and drives their task lists.
//! - [`store`]: the persistence seam (acknowledged means durable) and the
//!   in-memory implementation.
//!
//! The core never speaks HTTP, SQL or Lua: those live in their own crates and
//! meet the core only through [`engine::Engine`], [`store::Store`] and the
//! public methods of [`robot::Robot`].

pub mod blueprint;
pub mod engine;
pub mod error;
pub mod events;
pub mod filter;
mod recurring;
pub mod remote;
pub mod robot;
pub mod schema;
pub mod sealed;
pub mod service;
pub mod sources;
pub mod store;
pub mod task;
pub mod template;
pub mod time;
mod waitgraph;
pub mod yaml;

pub use error::{CoreError, TemplateError};
pub use filter::ServiceFilter;
pub use robot::{Observer, RestoreReport, Robot, RobotConfig, UpgradeReport};
pub use service::{Service, ServiceStatus, StateTable, TagState};
pub use task::{Eco, Priority, RemoteTaskRef, Task, TaskRecord, TaskState, TaskTrace, WaitTarget};
pub use template::{RepoId, Template, TemplateRegistry, TemplateUid};
pub use waitgraph::WaitEdge;
