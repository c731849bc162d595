//! Git for zrobot: template repositories cloned and checked out at the
//! revision a robot loads, and the data repository services are exported to.
//! The only crate that knows git (libgit2, in-process: no `git` program).
//!
//! # Layout
//!
//! - [`url`]: [`TemplateRepoUrl`], the accepted URL forms, `#ref`, and the
//!   rules that give a repository its UID prefix ([`zrobot_core::RepoId`]).
//! - [`templates`]: [`TemplateRepos`], the clones under
//!   `<data_dir>/templates/<host>/<account>/<repo>`, made whole or not at all.
//! - [`data_repo`]: [`DataRepo`], the YAML export of every service, committed
//!   and pushed, and its auto-push loop.
//! - [`local`]: [`commit_folder`], a local folder made a repository of one
//!   commit (the demo's and the benchmark's template repositories).
//! - [`error`]: [`GitError`], naming the repository, the cause and the fix.
//!
//! # Blocking
//!
//! Git work blocks on the network and the disk. The plain methods block;
//! from async code call the `*_async` ones (or wrap the plain ones in
//! `tokio::task::spawn_blocking`), never the plain ones on a runtime thread.
//!
//! # Transports
//!
//! Local paths and `file://` always work. `https://` needs the `https`
//! feature (libgit2 over the system OpenSSL), `ssh://` and `git@host:` the
//! `ssh` feature (a vendored libssh2, keys from ssh-agent or `~/.ssh`, hosts
//! checked against `~/.ssh/known_hosts`). Both are on by default.

pub mod data_repo;
pub mod error;
pub mod local;
mod remote;
pub mod templates;
pub mod url;

pub use data_repo::{DataRepo, ExportReport, LastPushed};
pub use error::GitError;
pub use local::{commit_folder, Author};
pub use templates::{Checkout, TemplateRepos};
pub use url::{redact_any, TemplateRepoUrl};
