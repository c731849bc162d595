//! The errors of git work: each names the repository (a password in its URL
//! hidden), what failed, and what to do about it.

use git2::{ErrorClass, ErrorCode};

use crate::url::TemplateRepoUrl;

/// Why a clone, fetch, checkout, export or push failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    #[error("`{url}` is not a repository URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot clone {repo}: {cause}")]
    Clone { repo: String, cause: String },
    #[error("cannot fetch {repo}: {cause}")]
    Fetch { repo: String, cause: String },
    #[error("{repo} has no branch, tag or commit `{reference}`{}", known_refs(.known))]
    NoSuchRef {
        repo: String,
        reference: String,
        /// Some branches and tags it does have, to help pick one.
        known: Vec<String>,
    },
    #[error("{repo} has no default branch (is it empty?); push a commit to it, or name a branch, tag or commit with `#ref`")]
    NoDefaultBranch { repo: String },
    #[error("{repo} has no templates/ folder at {commit}: a template repository keeps each template in templates/<name>/")]
    NoTemplates { repo: String, commit: String },
    #[error("cannot push to {repo}: {cause}")]
    Push { repo: String, cause: String },
    /// Local work (the clone folder, the index, a file) failed.
    #[error("{repo}: {action} failed: {cause}")]
    Local {
        repo: String,
        action: String,
        cause: String,
    },
}

fn known_refs(known: &[String]) -> String {
    if known.is_empty() {
        String::new()
    } else {
        format!("; it has: {}", known.join(", "))
    }
}

impl GitError {
    pub(crate) fn local(
        url: &TemplateRepoUrl,
        action: &str,
        cause: impl std::fmt::Display,
    ) -> GitError {
        GitError::Local {
            repo: url.to_string(),
            action: action.to_owned(),
            cause: scrub(url, cause.to_string()),
        }
    }
}

/// Removes the URL's password from a message, should a library have echoed it.
fn scrub(url: &TemplateRepoUrl, message: String) -> String {
    match url.password() {
        Some(p) if !p.is_empty() => message.replace(p, "***"),
        _ => message,
    }
}

/// A libgit2 error turned into a cause a person can act on.
pub(crate) fn explain(url: &TemplateRepoUrl, e: &git2::Error) -> String {
    let message = scrub(url, e.message().trim_end_matches('.').to_owned());
    let lower = message.to_ascii_lowercase();
    let hint = if e.code() == ErrorCode::Auth
        || lower.contains("authentication")
        || lower.contains("credentials")
    {
        if url.is_ssh() {
            "authentication failed: load a key the server accepts into ssh-agent, or put it in ~/.ssh (id_ed25519, id_ecdsa or id_rsa)"
        } else {
            "authentication failed: give a token in the URL (https://USER:TOKEN@host/account/repo) or set up a git credential helper"
        }
    } else if e.code() == ErrorCode::Certificate || e.class() == ErrorClass::Ssl {
        if url.is_ssh() {
            "the server's host key is not trusted: add it to ~/.ssh/known_hosts (ssh-keyscan HOST >> ~/.ssh/known_hosts)"
        } else {
            "the server's certificate was refused: check the host name and the system's CA certificates"
        }
    } else if lower.contains("unsupported url protocol") {
        "this robot was built without support for this kind of URL (zrobot-git's `https` and `ssh` features)"
    } else if matches!(
        e.class(),
        ErrorClass::Net | ErrorClass::Os | ErrorClass::Ssh
    ) || lower.contains("resolve")
        || lower.contains("connect")
    {
        "check the host name and that it can be reached from the robot"
    } else if e.code() == ErrorCode::NotFound
        || lower.contains("not found")
        || lower.contains("could not find repository")
    {
        "check the URL or path: no repository is there"
    } else {
        ""
    };
    if hint.is_empty() {
        message
    } else {
        format!("{message}; {hint}")
    }
}
