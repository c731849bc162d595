//! What every zrobot integration test shares: polling with a bound,
//! template folders and git repositories in temp dirs, and signed JWTs.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(5);

/// Polls `cond` until it holds or `limit` passes; whether it held. Checked
/// once more at the limit, so a slow machine fails only a real bug.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    eventually_async(limit, || std::future::ready(cond())).await
}

/// [`eventually`] with a condition that must await (an HTTP call, a read).
pub async fn eventually_async<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(POLL).await;
    }
    cond().await
}

/// Template folders written into a temp dir, as a repository's work tree
/// (not a git repository: see [`git`] for that).
pub struct TemplateDir {
    pub dir: tempfile::TempDir,
}

impl Default for TemplateDir {
    fn default() -> Self {
        TemplateDir::new()
    }
}

impl TemplateDir {
    pub fn new() -> TemplateDir {
        TemplateDir {
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Writes `templates/<name>/template.yaml` and `templates/<name>/<code_file>`.
    pub fn template(&self, name: &str, manifest: &str, code_file: &str, code: &str) -> &Self {
        self.file(&format!("templates/{name}/template.yaml"), manifest)
            .file(&format!("templates/{name}/{code_file}"), code)
    }

    /// Writes any file, making its folders.
    pub fn file(&self, rel: &str, text: &str) -> &Self {
        write(self.dir.path(), rel, text);
        self
    }
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("a file has a folder")).expect("folders");
    std::fs::write(path, text).expect("a file written");
}

/// Real git repositories, made with libgit2.
pub mod git {
    use std::path::{Path, PathBuf};

    /// A repository at `dir` whose first commit holds `files` (`(path, text)` pairs).
    pub fn template_repo(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
        std::fs::create_dir_all(dir).expect("the repository's folder");
        git2::Repository::init(dir).expect("a repository");
        commit_files(dir, files, None);
        dir.to_path_buf()
    }

    /// Writes `files` into the repository at `dir`, commits everything, and
    /// tags the commit with `tag` if given.
    pub fn commit_files(dir: &Path, files: &[(&str, &str)], tag: Option<&str>) {
        for (rel, text) in files {
            super::write(dir, rel, text);
        }
        let repo = git2::Repository::open(dir).expect("a repository");
        let mut index = repo.index().expect("its index");
        index
            .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
            .expect("files added");
        index.write().expect("the index written");
        let tree = repo
            .find_tree(index.write_tree().expect("a tree"))
            .expect("the tree");
        let sig = git2::Signature::now("test", "test@example.com").expect("a signature");
        // The first commit has no parent.
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let oid = repo
            .commit(Some("HEAD"), &sig, &sig, "update", &tree, &parents)
            .expect("a commit");
        if let Some(tag) = tag {
            let obj = repo.find_object(oid, None).expect("the commit");
            repo.tag_lightweight(tag, &obj, false).expect("a tag");
        }
    }

    /// Tags the current commit.
    pub fn tag_head(dir: &Path, tag: &str) {
        let repo = git2::Repository::open(dir).expect("a repository");
        let head = repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .expect("a commit");
        repo.tag_lightweight(tag, head.as_object(), false)
            .expect("a tag");
    }
}

/// JWTs as identity providers send them.
pub mod jwt {
    use serde_json::{json, Value};

    /// An HS256 JWT signed with `key`: `scope` (a list or a space-separated
    /// string), expiring `expires_in` seconds from now (negative: expired),
    /// for `username`.
    pub fn sign(key: &[u8], scope: Value, expires_in: i64, username: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs() as i64;
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({"scope": scope, "exp": now + expires_in, "username": username}),
            &jsonwebtoken::EncodingKey::from_secret(key),
        )
        .expect("a signed token")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn eventually_waits_for_a_condition_and_gives_up_at_its_limit() {
        let start = Instant::now();
        let mut n = 0;
        assert!(
            eventually(Duration::from_secs(5), || {
                n += 1;
                n == 3
            })
            .await
        );
        assert!(!eventually(Duration::from_millis(30), || false).await);
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn a_template_repo_has_its_files_committed_and_tagged() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = git::template_repo(&tmp.path().join("r"), &[("templates/a/x.txt", "1")]);
        git::commit_files(&dir, &[("templates/a/x.txt", "2")], Some("v2"));
        let repo = git2::Repository::open(&dir).unwrap();
        let head = repo.head().unwrap().peel_to_commit().unwrap();
        assert_eq!(head.parent_count(), 1);
        let tagged = repo
            .revparse_single("v2")
            .unwrap()
            .peel_to_commit()
            .unwrap();
        assert_eq!(tagged.id(), head.id());
        let blob = head
            .tree()
            .unwrap()
            .get_path(Path::new("templates/a/x.txt"))
            .unwrap()
            .to_object(&repo)
            .unwrap()
            .peel_to_blob()
            .unwrap();
        assert_eq!(blob.content(), b"2");
    }
}
