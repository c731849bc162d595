//! The seam through which template code adds and checks out template
//! repositories (`robot.templates` in Lua), as 0-robot's
//! `self.api.templates` did. The host (the binary, with git) gives the robot
//! one only when its operator allows it: it brings code into the robot.

use crate::engine::BoxFuture;

/// A repository fetched and loaded for template code.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    /// The commit checked out.
    pub commit: String,
    /// The UIDs of the templates loaded from it.
    pub templates: Vec<String>,
}

/// Template repositories, as template code reaches them.
pub trait TemplateSources: Send + Sync + 'static {
    /// Clones or fetches `url` at `reference` (its default branch when
    /// `None`) and loads its templates; `known` asks that the repository
    /// was added before (a checkout). Answers once the templates are
    /// loaded: services move to newer versions afterwards, in the
    /// background, so that the calling action's own service can move too.
    fn fetch(
        &self,
        robot: &crate::Robot,
        url: String,
        reference: Option<String>,
        known: bool,
    ) -> BoxFuture<'static, Result<Fetched, String>>;
}
