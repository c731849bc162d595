//! The data repository (`--data-repo`): every service exported as YAML,
//! committed and pushed to a git remote, as 0-robot's data repository was.
//!
//! Layout, one folder per service:
//!
//! ```text
//! <host>/<account>/<repo>/<template>/<name>/<guid>/
//!     service.yaml   guid, name, template (its UID), version, public
//!     data.yaml      the service data
//!     state.yaml     the state table: category -> tag -> state
//! ```
//!
//! Read back ([`DataRepo::read_services`]) when a robot starts on an empty
//! data directory: its services come back from the repository, without
//! their secrets.
//!
//! Secrets (even their hashes) are never written. The export is a snapshot:
//! folders of deleted services go, files that are not service folders (a
//! README) stay. When the remote moved ahead (another writer, or an export
//! of ours that never reached it), the next snapshot is committed on top of
//! the remote's branch, so pushes are always fast-forwards.
//!
//! Everything here blocks except [`DataRepo::export_async`] and
//! [`DataRepo::spawn_auto_push`], which run the work on tokio's blocking threads.

use std::collections::HashSet;
use std::future::Future;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use git2::build::CheckoutBuilder;
use git2::{IndexAddOption, Repository, RepositoryInitOptions, ResetType, Signature};
use serde::Serialize;
use tokio::task::JoinHandle;
use zrobot_core::{Robot, ServiceFilter, TemplateUid};

use crate::error::{explain, GitError};
use crate::remote;
use crate::templates::{create_dirs, remove_leftovers, thread_failed};
use crate::url::TemplateRepoUrl;

/// When the remote last received the robot's data; shared with whoever
/// reports it (`GET /robot/info`).
pub type LastPushed = Arc<Mutex<Option<SystemTime>>>;

/// The branch used when neither the URL (`#branch`) nor the remote names one.
const DEFAULT_BRANCH: &str = "main";

/// The name and address of the commits' author and committer.
const AUTHOR: (&str, &str) = ("zrobot", "zrobot@localhost");

/// A robot's data repository: a working clone in `<data_dir>/data-repo`
/// pushing to one remote branch. Cheap to clone; exports take turns.
#[derive(Clone)]
pub struct DataRepo(Arc<Inner>);

struct Inner {
    url: TemplateRepoUrl,
    dir: PathBuf,
    branch: String,
    last_pushed: LastPushed,
    /// The cause of the last failed export, cleared by a good one.
    last_error: Mutex<Option<String>>,
    /// Exports take turns: they share one work tree and index.
    turn: Mutex<()>,
}

/// What one export did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    /// How many services were written.
    pub services: usize,
    /// The commit this export made; `None` when nothing changed since the last one.
    pub commit: Option<String>,
    /// When the remote received the branch; `None` when it had everything already.
    pub pushed_at: Option<SystemTime>,
}

impl ExportReport {
    pub fn pushed(&self) -> bool {
        self.pushed_at.is_some()
    }
}

/// `service.yaml`: who the service is, never its secrets.
#[derive(Serialize)]
struct ServiceFile<'a> {
    guid: String,
    name: &'a str,
    template: String,
    version: String,
    public: bool,
}

/// `service.yaml` as read back.
#[derive(serde::Deserialize)]
struct ServiceFileRead {
    guid: uuid::Uuid,
    name: String,
    template: String,
    #[serde(default)]
    public: bool,
}

/// What [`DataRepo::read_services`] found.
#[derive(Debug, Default)]
pub struct ReadBack {
    pub services: Vec<zrobot_core::store::ServiceRecord>,
    /// Service folders that could not be read: `(folder, why)`.
    pub skipped: Vec<(String, String)>,
}

impl std::fmt::Debug for DataRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataRepo")
            .field("url", &self.0.url.to_string())
            .field("branch", &self.0.branch)
            .finish()
    }
}

impl DataRepo {
    /// Opens the data repository of the robot whose data directory is
    /// `data_dir`: reuses its working clone when it already pushes to this
    /// URL and branch, else clones the remote (an empty remote, such as a new
    /// bare repository, gives a fresh branch). A `#branch` in the URL picks
    /// the branch; otherwise the remote's default branch, or `main`.
    /// Blocking: call it from `spawn_blocking` in async code.
    pub fn open(url_or_path: &str, data_dir: &Path) -> Result<DataRepo, GitError> {
        remote::setup();
        let url = TemplateRepoUrl::parse(url_or_path)?;
        let dir = data_dir.join("data-repo");
        let reused = Repository::open(&dir).ok().and_then(|repo| {
            let origin = repo.find_remote("origin").ok()?.url().ok()?.to_owned();
            let branch = head_branch(&repo)?;
            let wanted = url.reference().unwrap_or(&branch);
            (origin == url.git_url() && wanted == branch).then_some(branch)
        });
        let branch = match reused {
            Some(branch) => branch,
            None => clone_fresh(&url, &dir, data_dir)?,
        };
        let data_repo = DataRepo(Arc::new(Inner {
            url,
            dir,
            branch,
            last_pushed: Arc::default(),
            last_error: Mutex::new(None),
            turn: Mutex::new(()),
        }));
        data_repo.recall_last_push();
        Ok(data_repo)
    }

    /// The services the working clone holds (as the last export left them):
    /// identity, template, data and state. They have no secrets: an admin or
    /// the god token manages them.
    pub fn read_services(&self) -> ReadBack {
        let mut out = ReadBack::default();
        let mut folders = Vec::new();
        find_service_folders(&self.0.dir, 0, &mut folders);
        folders.sort();
        for dir in folders {
            let shown = dir
                .strip_prefix(&self.0.dir)
                .unwrap_or(&dir)
                .display()
                .to_string();
            match read_service(&dir) {
                Ok(record) => out.services.push(record),
                Err(why) => out.skipped.push((shown, why)),
            }
        }
        out
    }

    /// The remote, with any password hidden.
    pub fn url(&self) -> String {
        self.0.url.to_string()
    }

    /// The remote as configured (it may hold a token: do not log it).
    pub fn url_unredacted(&self) -> &str {
        self.0.url.as_str()
    }

    /// The branch exports are pushed to.
    pub fn branch(&self) -> &str {
        &self.0.branch
    }

    /// The working clone.
    pub fn dir(&self) -> &Path {
        &self.0.dir
    }

    /// When the remote last received the robot's data.
    pub fn last_pushed(&self) -> Option<SystemTime> {
        *self.0.last_pushed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shared cell [`Self::last_pushed`] reads, for holders that should not keep the repo.
    pub fn last_pushed_handle(&self) -> LastPushed {
        self.0.last_pushed.clone()
    }

    /// Why the last export failed, until one succeeds.
    pub fn last_error(&self) -> Option<String> {
        self.0
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// After a restart, the remote already holding our branch means our
    /// data reached it when that commit was made.
    fn recall_last_push(&self) {
        let Ok(repo) = Repository::open(&self.0.dir) else {
            return;
        };
        let local = repo.refname_to_id(&format!("refs/heads/{}", self.0.branch));
        let remote = repo.refname_to_id(&format!("refs/remotes/origin/{}", self.0.branch));
        if let (Ok(local), Ok(remote)) = (local, remote) {
            if local == remote {
                if let Ok(commit) = repo.find_commit(local) {
                    let secs = commit.time().seconds().max(0) as u64;
                    *self.0.last_pushed.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
                }
            }
        }
    }

    /// Writes every service of `robot`, commits if anything changed, and
    /// pushes whatever the remote does not have yet.
    /// Blocking: call it from `spawn_blocking`, or use [`Self::export_async`].
    pub fn export(&self, robot: &Robot) -> Result<ExportReport, GitError> {
        let _turn = self.0.turn.lock().unwrap_or_else(|e| e.into_inner());
        let result = self.export_locked(robot);
        *self.0.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
            result.as_ref().err().map(ToString::to_string);
        result
    }

    /// [`Self::export`] on a blocking thread.
    pub async fn export_async(&self, robot: Robot) -> Result<ExportReport, GitError> {
        let repo = self.clone();
        tokio::task::spawn_blocking(move || repo.export(&robot))
            .await
            .unwrap_or_else(|e| Err(thread_failed(self.url(), "export", e)))
    }

    /// One export under the repository's lock: fetch, write every service's
    /// folder, remove the folders of services gone, commit, push. Kept whole
    /// (about 110 lines) so that the order of these git steps, and what a
    /// failure of each leaves behind, reads in one place.
    fn export_locked(&self, robot: &Robot) -> Result<ExportReport, GitError> {
        let url = &self.0.url;
        let local = |action: &str| {
            let action = action.to_owned();
            move |e: git2::Error| GitError::local(url, &action, e.message())
        };
        let repo = Repository::open(&self.0.dir).map_err(local("opening the working clone"))?;
        let branch_ref = format!("refs/heads/{}", self.0.branch);
        let tracking_ref = format!("refs/remotes/origin/{}", self.0.branch);

        // Catch up with the remote so the push below is a fast-forward. A
        // failure here shows again, clearer, at the push.
        let fetched = remote::fetch_branch(&repo, &self.0.branch);
        let remote_tip = repo.refname_to_id(&tracking_ref).ok();
        let local_tip = repo.refname_to_id(&branch_ref).ok();
        if let Some(remote_tip) = remote_tip {
            let ahead = match local_tip {
                Some(l) => {
                    l == remote_tip
                        || repo
                            .graph_descendant_of(l, remote_tip)
                            .map_err(local("comparing with the remote"))?
                }
                None => false,
            };
            if !ahead {
                // Our snapshot, written next, goes on top of what the remote
                // has; commits of ours it never got are superseded by it.
                repo.reference(&branch_ref, remote_tip, true, "zrobot: follow the remote")
                    .map_err(local("following the remote"))?;
                repo.set_head(&branch_ref)
                    .map_err(local("following the remote"))?;
                let object = repo
                    .find_object(remote_tip, None)
                    .map_err(local("following the remote"))?;
                repo.reset(&object, ResetType::Hard, None)
                    .map_err(local("following the remote"))?;
            }
        }

        let services = write_snapshot(&self.0.dir, robot)
            .map_err(|e| GitError::local(url, "writing the service files", e))?;

        let mut index = repo.index().map_err(local("reading the index"))?;
        index
            .add_all(["*"], IndexAddOption::DEFAULT, None)
            .and_then(|_| index.update_all(["*"], None))
            .and_then(|_| index.write())
            .map_err(local("staging the service files"))?;
        let tree_id = index.write_tree().map_err(local("writing the tree"))?;
        let head = repo
            .refname_to_id(&branch_ref)
            .ok()
            .and_then(|id| repo.find_commit(id).ok());
        let unchanged = match &head {
            Some(h) => h.tree_id() == tree_id,
            None => index.is_empty(),
        };
        let commit = if unchanged {
            None
        } else {
            let tree = repo.find_tree(tree_id).map_err(local("writing the tree"))?;
            let signature =
                Signature::now(AUTHOR.0, AUTHOR.1).map_err(local("signing the commit"))?;
            let parents: Vec<&git2::Commit> = head.iter().collect();
            let message = format!("zrobot: {services} service(s)");
            let id = repo
                .commit(
                    Some(&branch_ref),
                    &signature,
                    &signature,
                    &message,
                    &tree,
                    &parents,
                )
                .map_err(local("committing"))?;
            Some(id.to_string())
        };

        let local_tip = repo.refname_to_id(&branch_ref).ok();
        let pushed_at = match local_tip {
            Some(tip) if Some(tip) != remote_tip => {
                remote::push_branch(&repo, &self.0.branch).map_err(|e| {
                    let mut cause = explain(url, &e);
                    if let Err(f) = &fetched {
                        cause = format!(
                            "{cause} (the fetch before it failed too: {})",
                            explain(url, f)
                        );
                    }
                    GitError::Push {
                        repo: url.to_string(),
                        cause,
                    }
                })?;
                // Recorded so the next export knows the remote has this commit.
                repo.reference(&tracking_ref, tip, true, "zrobot: pushed")
                    .map_err(local("recording the push"))?;
                let now = SystemTime::now();
                *self.0.last_pushed.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
                Some(now)
            }
            _ => None,
        };
        Ok(ExportReport {
            services,
            commit,
            pushed_at,
        })
    }

    /// Exports and pushes every `interval` until `shutdown` resolves, then
    /// exports once more. A failure is logged and retried sooner (5 s,
    /// doubling, up to `interval`); the loop never ends on an error.
    /// Start it once the robot restored its services: an export of a robot
    /// still starting would remove their folders.
    pub fn spawn_auto_push(
        &self,
        robot: Robot,
        interval: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<()> {
        let repo = self.clone();
        let interval = interval.max(Duration::from_millis(10));
        tokio::spawn(async move {
            tokio::pin!(shutdown);
            let mut wait = interval;
            let mut failures: u32 = 0;
            loop {
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(wait) => {}
                }
                match repo.export_async(robot.clone()).await {
                    Ok(report) => {
                        failures = 0;
                        wait = interval;
                        if report.pushed() {
                            tracing::info!(services = report.services, commit = ?report.commit, "data repository pushed");
                        }
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        wait = retry_delay(failures, interval);
                        tracing::warn!(error = %e, retry_in = ?wait, "data repository export failed");
                    }
                }
            }
            if let Err(e) = repo.export_async(robot).await {
                tracing::warn!(error = %e, "last data repository export before shutdown failed");
            }
        })
    }
}

/// 5 s after a first failure, doubling, never more than the interval.
fn retry_delay(failures: u32, interval: Duration) -> Duration {
    let backoff = Duration::from_secs(5).saturating_mul(1 << failures.saturating_sub(1).min(16));
    backoff.min(interval)
}

/// The branch HEAD points to (born or not).
fn head_branch(repo: &Repository) -> Option<String> {
    let head = repo.find_reference("HEAD").ok()?;
    head.symbolic_target()
        .ok()??
        .strip_prefix("refs/heads/")
        .map(str::to_owned)
}

/// Makes the working clone in a temp folder and swaps it into `dir`;
/// returns the branch it is on.
fn clone_fresh(url: &TemplateRepoUrl, dir: &Path, data_dir: &Path) -> Result<String, GitError> {
    let clone_err = |e: git2::Error| GitError::Clone {
        repo: url.to_string(),
        cause: explain(url, &e),
    };
    if let Some(path) = url.local_path() {
        if !path.exists() {
            return Err(GitError::Clone {
                repo: url.to_string(),
                cause: format!(
                    "{} does not exist; create the repository first (`git init --bare`)",
                    path.display()
                ),
            });
        }
    }
    create_dirs(data_dir).map_err(|e| GitError::local(url, "creating the data directory", e))?;
    remove_leftovers(data_dir, ".data-repo.clone-");
    let temp = tempfile::Builder::new()
        .prefix(".data-repo.clone-")
        .tempdir_in(data_dir)
        .map_err(|e| GitError::local(url, "creating a temporary clone folder", e))?;
    let branch = {
        let wanted = url.reference().unwrap_or(DEFAULT_BRANCH);
        let mut options = RepositoryInitOptions::new();
        options.initial_head(wanted);
        let repo = Repository::init_opts(temp.path(), &options).map_err(clone_err)?;
        repo.remote("origin", url.git_url()).map_err(clone_err)?;
        let default = remote::fetch_all(&repo).map_err(clone_err)?;
        let branch = match (url.reference(), default.as_deref()) {
            (Some(r), _) => r.to_owned(),
            (None, Some(d)) => d.strip_prefix("refs/heads/").unwrap_or(d).to_owned(),
            (None, None) => DEFAULT_BRANCH.to_owned(),
        };
        let branch_ref = format!("refs/heads/{branch}");
        if let Ok(tip) = repo.refname_to_id(&format!("refs/remotes/origin/{branch}")) {
            repo.reference(&branch_ref, tip, true, "zrobot: data repository")
                .map_err(clone_err)?;
            let mut checkout = CheckoutBuilder::new();
            checkout.force();
            repo.set_head(&branch_ref).map_err(clone_err)?;
            repo.checkout_head(Some(&mut checkout)).map_err(clone_err)?;
        } else {
            // An empty remote (or a new branch): start it unborn.
            repo.set_head(&branch_ref).map_err(clone_err)?;
        }
        branch
    };
    let cloned = temp.keep();
    if dir.exists() {
        // A working clone of another remote or branch: the remote is the
        // truth, the old clone holds nothing the new export will not rewrite.
        let aside = data_dir.join(format!(".data-repo.old-{}", uuid::Uuid::new_v4()));
        if let Err(e) = std::fs::rename(dir, &aside) {
            let _ = std::fs::remove_dir_all(&cloned);
            return Err(GitError::local(
                url,
                "moving the old working clone aside",
                e,
            ));
        }
        let _ = std::fs::remove_dir_all(&aside);
    }
    if let Err(e) = std::fs::rename(&cloned, dir) {
        let _ = std::fs::remove_dir_all(&cloned);
        return Err(GitError::local(
            url,
            "moving the working clone into place",
            e,
        ));
    }
    Ok(branch)
}

/// Whether `s` can be one folder name of the export (no escape, no hidden folder).
fn plain_segment(s: &str) -> bool {
    let mut components = Path::new(s).components();
    matches!(components.next(), Some(Component::Normal(_)))
        && components.next().is_none()
        && !s.starts_with('.')
}

/// Writes every service's folder under `root`, removes the folders of
/// services that are gone, and returns how many services were written.
fn write_snapshot(root: &Path, robot: &Robot) -> std::io::Result<usize> {
    let mut keep: HashSet<PathBuf> = HashSet::new();
    let mut count = 0;
    for svc in robot.find_services(&ServiceFilter::default()) {
        let template = svc.template();
        let uid = &template.uid;
        let guid = svc.guid.to_string();
        let segments = [
            uid.repo.host.as_str(),
            uid.repo.account.as_str(),
            uid.repo.repo.as_str(),
            uid.name.as_str(),
            svc.name.as_str(),
            guid.as_str(),
        ];
        if !segments.iter().all(|s| plain_segment(s)) {
            tracing::warn!(service = %svc.name, template = %uid, "service left out of the data repository: its name or template cannot be a folder name");
            continue;
        }
        let rel: PathBuf = segments.iter().collect();
        let dir = root.join(&rel);
        std::fs::create_dir_all(&dir)?;
        // One snapshot of data and state, taken under the service's lock.
        let record = robot.service_record(&svc);
        let service_file = ServiceFile {
            guid: guid.clone(),
            name: &svc.name,
            template: uid.to_string(),
            version: uid.version.to_string(),
            public: svc.public,
        };
        write_if_changed(&dir.join("service.yaml"), &to_yaml(&service_file)?)?;
        write_if_changed(&dir.join("data.yaml"), &to_yaml(&record.data)?)?;
        write_if_changed(&dir.join("state.yaml"), &to_yaml(&record.state)?)?;
        keep.insert(rel);
        count += 1;
    }
    // Services kept aside until their template loads are still services:
    // keep their folders as they are.
    let mut keep_names: HashSet<PathBuf> = HashSet::new();
    for (name, uid) in robot.missing_services() {
        if let Some(uid) = TemplateUid::parse(&uid) {
            keep_names.insert(
                [
                    uid.repo.host.as_str(),
                    uid.repo.account.as_str(),
                    uid.repo.repo.as_str(),
                    uid.name.as_str(),
                    name.as_str(),
                ]
                .iter()
                .collect(),
            );
        }
    }
    remove_gone(root, Path::new(""), 0, &keep, &keep_names)?;
    Ok(count)
}

/// The `<guid>` folders below `dir` that hold a `service.yaml`: six
/// levels down (`host/account/repo/template/name/guid`).
fn find_service_folders(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth == 6 {
        if dir.join("service.yaml").is_file() {
            out.push(dir.to_path_buf());
        }
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let path = e.path();
        let hidden = e.file_name().to_string_lossy().starts_with('.');
        if !hidden && path.is_dir() && !path.is_symlink() {
            find_service_folders(&path, depth + 1, out);
        }
    }
}

/// One service folder, read back.
fn read_service(dir: &Path) -> Result<zrobot_core::store::ServiceRecord, String> {
    let read =
        |file: &str| std::fs::read_to_string(dir.join(file)).map_err(|e| format!("{file}: {e}"));
    let text = read("service.yaml")?;
    let service: ServiceFileRead = zrobot_core::yaml::from_str(&text)
        .map_err(|e| zrobot_core::yaml::describe_error(&e, "service.yaml", &text))?;
    if TemplateUid::parse(&service.template).is_none() {
        return Err(format!(
            "service.yaml: `{}` is not a template UID",
            service.template
        ));
    }
    let data = match read("data.yaml") {
        Ok(text) => zrobot_core::yaml::from_str(&text)
            .map_err(|e| zrobot_core::yaml::describe_error(&e, "data.yaml", &text))?,
        Err(_) => serde_json::Value::Object(Default::default()),
    };
    let state = match read("state.yaml") {
        Ok(text) => zrobot_core::yaml::from_str(&text)
            .map_err(|e| zrobot_core::yaml::describe_error(&e, "state.yaml", &text))?,
        Err(_) => Default::default(),
    };
    Ok(zrobot_core::store::ServiceRecord {
        guid: service.guid,
        name: service.name,
        template_uid: service.template,
        public: service.public,
        data,
        state,
        secrets: Vec::new(),
        created: zrobot_core::time::now(),
    })
}

/// Depth of the `<guid>` folders below the root.
const GUID_DEPTH: usize = 5;

/// Removes the `<guid>` folders (at [`GUID_DEPTH`]) not kept, then folders
/// left empty. Only folders shaped like service folders are touched.
fn remove_gone(
    root: &Path,
    rel: &Path,
    depth: usize,
    keep: &HashSet<PathBuf>,
    keep_names: &HashSet<PathBuf>,
) -> std::io::Result<()> {
    if depth == GUID_DEPTH && keep_names.contains(rel) {
        return Ok(());
    }
    let dir = root.join(rel);
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !entry.file_type()?.is_dir() {
            continue;
        }
        let child = rel.join(&*name);
        if depth == GUID_DEPTH {
            if uuid::Uuid::parse_str(&name).is_ok() && !keep.contains(&child) {
                std::fs::remove_dir_all(root.join(&child))?;
            }
        } else {
            remove_gone(root, &child, depth + 1, keep, keep_names)?;
            // Not empty (a kept service, or a file of someone else's): stays.
            let _ = std::fs::remove_dir(root.join(&child));
        }
    }
    Ok(())
}

fn to_yaml<T: Serialize>(value: &T) -> std::io::Result<String> {
    serde_saphyr::to_string(value).map_err(|e| std::io::Error::other(e.to_string()))
}

/// Leaves unchanged files alone so git's index sees them unchanged cheaply.
fn write_if_changed(path: &Path, text: &str) -> std::io::Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(());
    }
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_come_sooner_than_the_interval_then_back_off_to_it() {
        let interval = Duration::from_secs(60);
        let delays: Vec<u64> = (1..=6)
            .map(|n| retry_delay(n, interval).as_secs())
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 60, 60]);
        assert_eq!(
            retry_delay(1, Duration::from_secs(2)),
            Duration::from_secs(2)
        );
        assert_eq!(retry_delay(u32::MAX, interval), interval);
    }

    #[test]
    fn folder_names_cannot_escape() {
        for ok in ["node", "node1", "a.b", "github.com"] {
            assert!(plain_segment(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", ".git", "/abs"] {
            assert!(!plain_segment(bad), "{bad}");
        }
    }
}
