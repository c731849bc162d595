//! The seam to template repositories and the data repository: the API asks,
//! the binary answers (with git), so this crate knows no git.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use zrobot_core::Template;

use crate::wire::CheckoutReport;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a repository request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RepoError {
    /// Bad URL, clone failure, no such ref...: the message says which.
    #[error("{0}")]
    Invalid(String),
    /// The repository was never added.
    #[error("{0}")]
    NotFound(String),
}

/// Template repositories, as the API reaches them.
pub trait TemplateRepositories: Send + Sync + 'static {
    /// Clones (or updates) the repository, loads its templates, moves
    /// services to newer versions, and returns the templates it holds.
    fn add(
        &self,
        url: String,
        reference: Option<String>,
    ) -> BoxFuture<'static, Result<Vec<Arc<Template>>, RepoError>>;

    /// Fetches and checks out another revision of an added repository, then
    /// moves services to newer versions, and tells what it did.
    fn checkout(
        &self,
        url: String,
        reference: Option<String>,
    ) -> BoxFuture<'static, Result<CheckoutReport, RepoError>>;

    /// The URL shown as the robot's configuration repository (`/robot/info`).
    fn config_url(&self) -> String {
        String::new()
    }

    /// The data repository's URL (empty if none) and when it was last pushed
    /// (ISO 8601).
    fn data_repo(&self) -> (String, Option<String>) {
        (String::new(), None)
    }
}

/// Where the API finds repositories; `None` answers that the robot has none.
#[derive(Clone, Default)]
pub struct Repos(pub Option<Arc<dyn TemplateRepositories>>);

impl std::fmt::Debug for Repos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Repos(set)"
        } else {
            "Repos(none)"
        })
    }
}
