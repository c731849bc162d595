//! Shared harness: real git repositories made with libgit2 in a temp dir (no
//! `git` program), and a real robot (Lua engine, in-memory store).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use git2::build::CheckoutBuilder;
use git2::{IndexAddOption, Oid, Repository, RepositoryInitOptions, Signature};
use zrobot_core::store::MemoryStore;
use zrobot_core::template::RepoLoad;
use zrobot_core::{Robot, RobotConfig};
use zrobot_git::Checkout;
use zrobot_lua::{LuaConfig, LuaEngine};

/// A template repository being written, at `<tmp>/acme/<name>` so that its
/// local id is `local/acme/<name>`.
pub struct SourceRepo {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    pub repo: Repository,
}

impl SourceRepo {
    pub fn new(name: &str) -> SourceRepo {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("acme").join(name);
        std::fs::create_dir_all(&root).unwrap();
        let mut options = RepositoryInitOptions::new();
        options.initial_head("main");
        let repo = Repository::init_opts(&root, &options).unwrap();
        SourceRepo {
            _tmp: tmp,
            root,
            repo,
        }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn path_str(&self) -> String {
        self.root.display().to_string()
    }

    /// Writes any file of the work tree.
    pub fn write(&self, rel: &str, text: &str) -> &SourceRepo {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    /// Writes template `name` at `version`; its action `version` returns it.
    pub fn template(&self, name: &str, version: &str) -> &SourceRepo {
        self.write(
            &format!("templates/{name}/template.yaml"),
            &format!("version: {version}\ndescription: test template\n"),
        );
        self.write(
            &format!("templates/{name}/{name}.lua"),
            &format!(
                "local t = {{}}\nfunction t.version(self) return \"{version}\" end\nreturn t\n"
            ),
        )
    }

    /// Commits the whole work tree on the current branch.
    pub fn commit(&self, message: &str) -> Oid {
        let mut index = self.repo.index().unwrap();
        index.add_all(["*"], IndexAddOption::DEFAULT, None).unwrap();
        index.update_all(["*"], None).unwrap();
        index.write().unwrap();
        let tree = self.repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = Signature::now("test", "test@example.com").unwrap();
        let parent = self.repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        self.repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .unwrap()
    }

    /// An annotated tag on HEAD.
    pub fn tag(&self, name: &str) {
        let head = self
            .repo
            .head()
            .unwrap()
            .peel(git2::ObjectType::Commit)
            .unwrap();
        let sig = Signature::now("test", "test@example.com").unwrap();
        self.repo.tag(name, &head, &sig, name, false).unwrap();
    }

    /// A lightweight tag on HEAD.
    pub fn light_tag(&self, name: &str) {
        let head = self
            .repo
            .head()
            .unwrap()
            .peel(git2::ObjectType::Commit)
            .unwrap();
        self.repo.tag_lightweight(name, &head, false).unwrap();
    }

    /// Creates branch `name` at HEAD and switches to it.
    pub fn branch(&self, name: &str) {
        let head = self.repo.head().unwrap().peel_to_commit().unwrap();
        self.repo.branch(name, &head, false).unwrap();
        self.switch(name);
    }

    /// Switches the work tree to branch `name`.
    pub fn switch(&self, name: &str) {
        self.repo.set_head(&format!("refs/heads/{name}")).unwrap();
        self.repo
            .checkout_head(Some(CheckoutBuilder::new().force().remove_untracked(true)))
            .unwrap();
    }
}

/// A bare repository in a temp dir (a remote to push to).
pub fn bare_repo() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("data.git");
    Repository::init_bare(&path).unwrap();
    (tmp, path)
}

pub fn robot() -> Robot {
    Robot::new(
        RobotConfig::default(),
        Arc::new(LuaEngine::new(LuaConfig::default())),
        Arc::new(MemoryStore::new()),
    )
}

/// Loads a checkout and fails on any template error.
pub fn load(robot: &Robot, checkout: &Checkout) -> RepoLoad {
    let load = robot.load_repository(&checkout.path, &checkout.repo_id);
    assert!(load.errors.is_empty(), "template errors: {:?}", load.errors);
    load
}

/// The version a checkout's `templates/<name>/template.yaml` declares.
pub fn version_on_disk(checkout: &Checkout, name: &str) -> String {
    let text = std::fs::read_to_string(
        checkout
            .path
            .join("templates")
            .join(name)
            .join("template.yaml"),
    )
    .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("version: "))
        .unwrap()
        .to_owned()
}

/// Every entry under `dir`, recursively, relative to it.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in read.flatten() {
            out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}
