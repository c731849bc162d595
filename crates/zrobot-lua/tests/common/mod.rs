//! Shared harness for the runtime tests: template repositories written into a
//! temp dir, and a real robot (Lua engine, in-memory store) over them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use zrobot_core::robot::NewService;
use zrobot_core::store::MemoryStore;
use zrobot_core::template::RepoLoad;
use zrobot_core::{RepoId, Robot, RobotConfig, Service, TaskRecord};
use zrobot_lua::{LuaConfig, LuaEngine};

/// A template repository in a temp dir.
pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    pub fn new() -> Repo {
        Repo {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Writes `templates/<name>/template.yaml` and `<name>.lua`.
    pub fn template(&self, name: &str, manifest: &str, lua: &str) -> &Repo {
        let d = self.dir.path().join("templates").join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("template.yaml"), manifest).unwrap();
        std::fs::write(d.join(format!("{name}.lua")), lua).unwrap();
        self
    }

    /// Writes any file of the repository.
    pub fn file(&self, rel: &str, text: &str) -> &Repo {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    pub fn id(&self, account: &str, repo: &str) -> RepoId {
        RepoId::new("github.com", account, repo)
    }
}

pub fn robot_with(config: RobotConfig, lua: LuaConfig) -> Robot {
    Robot::new(
        config,
        Arc::new(LuaEngine::new(lua)),
        Arc::new(MemoryStore::new()),
    )
}

pub fn robot() -> Robot {
    robot_with(RobotConfig::default(), LuaConfig::default())
}

/// Loads `repo` as github.com/acme/templates and fails on any template error.
pub fn load(robot: &Robot, repo: &Repo) -> RepoLoad {
    let load = robot.load_repository(&repo.root(), &repo.id("acme", "templates"));
    assert!(load.errors.is_empty(), "template errors: {:?}", load.errors);
    load
}

pub async fn create(robot: &Robot, template: &str, name: &str, data: Value) -> Arc<Service> {
    robot
        .create_service(NewService {
            template: template.into(),
            name: name.into(),
            data,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"))
}

/// Schedules `action` and waits for its end (bounded, so a bug fails instead of hanging).
pub async fn run(robot: &Robot, svc: &Arc<Service>, action: &str, args: Value) -> TaskRecord {
    let task = robot
        .schedule(svc, action, args)
        .await
        .unwrap_or_else(|e| panic!("schedule {action}: {e}"));
    tokio::time::timeout(Duration::from_secs(30), task.done())
        .await
        .unwrap_or_else(|_| panic!("{action} did not finish within 30s"))
}

/// Polls `cond` until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
