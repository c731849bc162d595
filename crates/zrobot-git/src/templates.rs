//! Template repository clones, one per repository id under
//! `<data_dir>/templates/<host>/<account>/<repo>`, each checked out (detached)
//! at the revision the robot loads.
//!
//! A first clone is made in a hidden temp folder next to its target and
//! renamed into place only once the wanted revision is checked out and has a
//! `templates/` folder: a failed clone leaves nothing behind. An update
//! fetches into the existing clone and moves it to the new revision only once
//! that revision is known to be good.
//!
//! Every operation here blocks (network and disk): from async code use the
//! `*_async` methods, which run them on tokio's blocking threads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use git2::build::CheckoutBuilder;
use git2::{BranchType, ObjectType, Oid, Repository};
use zrobot_core::RepoId;

use crate::error::{explain, GitError};
use crate::remote;
use crate::url::TemplateRepoUrl;

/// A template repository checked out at one revision, ready for
/// `Robot::load_repository(&checkout.path, &checkout.repo_id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The clone's folder (its `templates/` is what the robot loads).
    pub path: PathBuf,
    /// The UID prefix of the repository's templates.
    pub repo_id: RepoId,
    /// The full id of the commit checked out.
    pub commit: String,
    /// The branch, tag or commit asked for; `None` for the default branch.
    pub reference: Option<String>,
    /// Whether this call moved the clone to another commit (or made it).
    pub changed: bool,
}

/// The template repository clones of one robot.
#[derive(Debug, Clone)]
pub struct TemplateRepos {
    root: PathBuf,
    /// One lock per clone folder: two requests for the same repository (two
    /// API calls, or a start-up update racing an API call) take turns, while
    /// different repositories clone in parallel.
    locks: Arc<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>>,
}

impl TemplateRepos {
    /// The clones of the robot whose data directory is `data_dir`.
    pub fn new(data_dir: &Path) -> TemplateRepos {
        TemplateRepos {
            root: data_dir.join("templates"),
            locks: Arc::default(),
        }
    }

    /// `<data_dir>/templates`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the clone of repository `id` lives.
    pub fn dir_of(&self, id: &RepoId) -> PathBuf {
        self.root.join(&id.host).join(&id.account).join(&id.repo)
    }

    /// Clones the repository (or fetches into its existing clone) and checks
    /// out the revision the URL names, or the remote's default branch.
    /// Blocking: call it from `spawn_blocking`, or use [`Self::clone_or_update_async`].
    pub fn clone_or_update(&self, url: &TemplateRepoUrl) -> Result<Checkout, GitError> {
        remote::setup();
        let repo_id = url.repo_id();
        crate::url::check_id(url.as_str(), &repo_id)?;
        let target = self.dir_of(&repo_id);
        let lock = self.lock_for(&target);
        let _turn = lock.lock().unwrap_or_else(|e| e.into_inner());
        match Repository::open(&target) {
            Ok(repo) => update(url, repo_id, &target, &repo),
            Err(_) => clone_fresh(url, repo_id, &target),
        }
    }

    /// Fetches and checks out another revision (a branch, tag or commit id)
    /// of the repository at `url`, cloning it first if needed.
    /// Blocking: call it from `spawn_blocking`, or use [`Self::checkout_async`].
    pub fn checkout(&self, url: &TemplateRepoUrl, reference: &str) -> Result<Checkout, GitError> {
        self.clone_or_update(&url.with_reference(Some(reference))?)
    }

    /// What is checked out for `url` now, without touching the network: lets
    /// a robot load its templates at start even when a remote is down. The
    /// URL's `#ref` is not consulted; `reference` echoes it.
    pub fn current(&self, url: &TemplateRepoUrl) -> Option<Checkout> {
        let repo_id = url.repo_id();
        crate::url::check_id(url.as_str(), &repo_id).ok()?;
        let path = self.dir_of(&repo_id);
        let repo = Repository::open(&path).ok()?;
        let commit = repo.head().ok()?.target()?.to_string();
        Some(Checkout {
            path,
            repo_id,
            commit,
            reference: url.reference().map(str::to_owned),
            changed: false,
        })
    }

    /// [`Self::clone_or_update`] on a blocking thread.
    pub async fn clone_or_update_async(&self, url: TemplateRepoUrl) -> Result<Checkout, GitError> {
        let repos = self.clone();
        let shown = url.to_string();
        tokio::task::spawn_blocking(move || repos.clone_or_update(&url))
            .await
            .unwrap_or_else(|e| Err(thread_failed(shown, "clone", e)))
    }

    /// [`Self::checkout`] on a blocking thread.
    pub async fn checkout_async(
        &self,
        url: TemplateRepoUrl,
        reference: String,
    ) -> Result<Checkout, GitError> {
        let repos = self.clone();
        let shown = url.to_string();
        tokio::task::spawn_blocking(move || repos.checkout(&url, &reference))
            .await
            .unwrap_or_else(|e| Err(thread_failed(shown, "checkout", e)))
    }

    fn lock_for(&self, target: &Path) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(target.to_path_buf()).or_default().clone()
    }
}

pub(crate) fn thread_failed(repo: String, action: &str, e: tokio::task::JoinError) -> GitError {
    GitError::Local {
        repo,
        action: action.to_owned(),
        cause: format!(
            "the blocking thread doing it failed ({e}); this is a bug, please report it"
        ),
    }
}

/// Checks that a local source is a repository before git says it less clearly.
fn check_local_source(url: &TemplateRepoUrl) -> Result<(), GitError> {
    let Some(path) = url.local_path() else {
        return Ok(());
    };
    let cause = if !path.exists() {
        format!("{} does not exist; check the path", path.display())
    } else {
        match Repository::open(path) {
            Ok(_) => return Ok(()),
            Err(e) => format!(
                "{} is not a git repository ({}); give the root of a repository (`git init` and commit a folder to make one)",
                path.display(),
                e.message().trim_end_matches('.')
            ),
        }
    };
    Err(GitError::Clone {
        repo: url.to_string(),
        cause,
    })
}

fn clone_fresh(
    url: &TemplateRepoUrl,
    repo_id: RepoId,
    target: &Path,
) -> Result<Checkout, GitError> {
    check_local_source(url)?;
    let parent = target.parent().expect("a clone folder has a parent");
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let created =
        create_dirs(parent).map_err(|e| GitError::local(url, "creating the clone folder", e))?;
    let result = clone_into_place(url, repo_id, target, parent, &name);
    if result.is_err() {
        // Leave no empty `<host>/<account>` folders behind a failed first clone.
        for dir in created.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
    result
}

fn clone_into_place(
    url: &TemplateRepoUrl,
    repo_id: RepoId,
    target: &Path,
    parent: &Path,
    name: &str,
) -> Result<Checkout, GitError> {
    let clone_err = |e: git2::Error| GitError::Clone {
        repo: url.to_string(),
        cause: explain(url, &e),
    };
    let temp_prefix = format!(".{name}.clone-");
    remove_leftovers(parent, &temp_prefix);
    // Dropped (and so deleted) on every early return below.
    let temp = tempfile::Builder::new()
        .prefix(&temp_prefix)
        .tempdir_in(parent)
        .map_err(|e| GitError::local(url, "creating a temporary clone folder", e))?;
    let oid = {
        let repo = Repository::init(temp.path()).map_err(clone_err)?;
        repo.remote("origin", url.git_url()).map_err(clone_err)?;
        let default = remote::fetch_all(&repo).map_err(clone_err)?;
        let oid = resolve(&repo, url, default.as_deref())?;
        check_templates(&repo, url, oid)?;
        checkout_commit(&repo, oid).map_err(|e| GitError::local(url, "checking out", e))?;
        oid
    };
    let cloned = temp.keep();
    if target.exists() {
        // A clone git can no longer open (a crash mid-write, a hand edit): replace it.
        let aside = parent.join(format!(".{name}.broken-{}", uuid::Uuid::new_v4()));
        if let Err(e) = std::fs::rename(target, &aside) {
            let _ = std::fs::remove_dir_all(&cloned);
            return Err(GitError::local(url, "moving the broken old clone aside", e));
        }
        let _ = std::fs::remove_dir_all(&aside);
    }
    if let Err(e) = std::fs::rename(&cloned, target) {
        let _ = std::fs::remove_dir_all(&cloned);
        return Err(GitError::local(url, "moving the clone into place", e));
    }
    Ok(Checkout {
        path: target.to_path_buf(),
        repo_id,
        commit: oid.to_string(),
        reference: url.reference().map(str::to_owned),
        changed: true,
    })
}

fn update(
    url: &TemplateRepoUrl,
    repo_id: RepoId,
    target: &Path,
    repo: &Repository,
) -> Result<Checkout, GitError> {
    check_local_source(url)?;
    let fetch_err = |e: git2::Error| GitError::Fetch {
        repo: url.to_string(),
        cause: explain(url, &e),
    };
    // The same id may be reached by another URL (a local checkout of the
    // remote, or a moved remote): fetch from the one asked for now.
    let origin_url = repo
        .find_remote("origin")
        .ok()
        .and_then(|r| r.url().ok().map(str::to_owned));
    match origin_url {
        Some(u) if u == url.git_url() => {}
        Some(u) if another_local_repository(&u, url) => {
            return Err(GitError::Clone {
                repo: url.to_string(),
                cause: format!(
                    "its id {repo_id} is also that of the repository at {u}, whose clone is {}: \
                     two folders with the same name and parent name give the same template UIDs; \
                     rename one of them, or give it an `origin` remote",
                    target.display()
                ),
            });
        }
        Some(_) => repo
            .remote_set_url("origin", url.git_url())
            .map_err(fetch_err)?,
        None => {
            repo.remote("origin", url.git_url()).map_err(fetch_err)?;
        }
    }
    let before = repo.head().ok().and_then(|h| h.target());
    let default = remote::fetch_all(repo).map_err(fetch_err)?;
    let oid = resolve(repo, url, default.as_deref())?;
    check_templates(repo, url, oid)?;
    // Also when the commit is the same: a forced checkout repairs files
    // changed or removed behind the robot's back.
    checkout_commit(repo, oid).map_err(|e| GitError::local(url, "checking out", e))?;
    Ok(Checkout {
        path: target.to_path_buf(),
        repo_id,
        commit: oid.to_string(),
        reference: url.reference().map(str::to_owned),
        changed: before != Some(oid),
    })
}

/// Whether the clone fetched so far from `origin` (a local path still holding
/// a repository) would be taken over by another local repository, `url`,
/// that merely has the same id: that is two repositories, not one moved.
/// A remote reached another way, or a local checkout of a remote, is the same
/// repository and may take over its clone.
fn another_local_repository(origin: &str, url: &TemplateRepoUrl) -> bool {
    let Some(new) = url.local_path() else {
        return false;
    };
    let old = Path::new(origin);
    old.is_absolute()
        && old != new
        && Repository::open(old).is_ok()
        && url.repo_id() == RepoId::local(old)
        && url.repo_id() == RepoId::local(new)
}

/// The commit the URL's reference names in a freshly fetched clone: a
/// branch of origin, then a tag, then a full ref name, then a commit id (full
/// or abbreviated). Without a reference, origin's default branch.
fn resolve(
    repo: &Repository,
    url: &TemplateRepoUrl,
    default: Option<&str>,
) -> Result<Oid, GitError> {
    let commit_of = |name: &str| {
        repo.find_reference(name)
            .and_then(|r| r.peel_to_commit())
            .map(|c| c.id())
            .ok()
    };
    let Some(reference) = url.reference() else {
        let found = match default.and_then(|d| d.strip_prefix("refs/heads/")) {
            Some(branch) => commit_of(&format!("refs/remotes/origin/{branch}")),
            None => commit_of("refs/remotes/origin/HEAD"),
        };
        return found.ok_or_else(|| GitError::NoDefaultBranch {
            repo: url.to_string(),
        });
    };
    let mut names = vec![
        format!("refs/remotes/origin/{reference}"),
        format!("refs/tags/{reference}"),
    ];
    if reference.starts_with("refs/") {
        names.push(reference.to_owned());
    }
    if let Some(oid) = names.iter().find_map(|n| commit_of(n)) {
        return Ok(oid);
    }
    if (4..=40).contains(&reference.len()) && reference.chars().all(|c| c.is_ascii_hexdigit()) {
        if let Ok(commit) = repo
            .revparse_single(reference)
            .and_then(|o| o.peel_to_commit())
        {
            return Ok(commit.id());
        }
    }
    Err(GitError::NoSuchRef {
        repo: url.to_string(),
        reference: reference.to_owned(),
        known: known_refs(repo),
    })
}

/// A few of the branches and tags a clone has, for error messages.
fn known_refs(repo: &Repository) -> Vec<String> {
    const MAX: usize = 10;
    let mut branches: Vec<String> = repo
        .branches(Some(BranchType::Remote))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|(b, _)| b.name().ok().flatten().map(str::to_owned))
        .filter_map(|n| n.strip_prefix("origin/").map(str::to_owned))
        .filter(|n| n != "HEAD")
        .collect();
    branches.sort();
    branches.truncate(MAX);
    let mut tags: Vec<String> = repo
        .tag_names(None)
        .map(|t| {
            t.iter()
                .flatten()
                .flatten()
                .map(|t| format!("tag {t}"))
                .collect()
        })
        .unwrap_or_default();
    tags.sort();
    tags.truncate(MAX);
    branches
        .into_iter()
        .map(|b| format!("branch {b}"))
        .chain(tags)
        .collect()
}

fn check_templates(repo: &Repository, url: &TemplateRepoUrl, oid: Oid) -> Result<(), GitError> {
    let has = repo
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map(|tree| {
            tree.get_name("templates")
                .is_some_and(|e| e.kind() == Some(ObjectType::Tree))
        })
        .unwrap_or(false);
    if has {
        Ok(())
    } else {
        Err(GitError::NoTemplates {
            repo: url.to_string(),
            commit: oid.to_string(),
        })
    }
}

/// Makes the work tree exactly the commit's tree and detaches HEAD on it.
fn checkout_commit(repo: &Repository, oid: Oid) -> Result<(), git2::Error> {
    let commit = repo.find_commit(oid)?;
    let mut options = CheckoutBuilder::new();
    options.force().remove_untracked(true);
    repo.checkout_tree(commit.as_object(), Some(&mut options))?;
    repo.set_head_detached(oid)
}

/// Creates `dir` and its missing parents; returns those it created, outermost first.
pub(crate) fn create_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.exists() {
            break;
        }
        missing.push(d.to_path_buf());
        cur = d.parent();
    }
    std::fs::create_dir_all(dir)?;
    missing.reverse();
    Ok(missing)
}

/// Removes temp folders a crash left in `parent` (those whose name starts with `prefix`).
pub(crate) fn remove_leftovers(parent: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
