//! Shared harness for the runtime tests: Lua template repositories written
//! into a temp dir, and a real robot (Lua engine, in-memory store) over them;
//! the rest comes from `zrobot-testkit`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use zrobot_core::robot::NewService;
use zrobot_core::store::MemoryStore;
use zrobot_core::template::RepoLoad;
use zrobot_core::{RepoId, Robot, RobotConfig, Service, TaskRecord};
use zrobot_lua::{LuaConfig, LuaEngine};
use zrobot_testkit::TemplateDir;

/// A template repository in a temp dir, its code in Lua.
pub struct Repo {
    pub dir: TemplateDir,
}

impl Repo {
    pub fn new() -> Repo {
        Repo {
            dir: TemplateDir::new(),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.root()
    }

    /// Writes `templates/<name>/template.yaml` and `<name>.lua`.
    pub fn template(&self, name: &str, manifest: &str, lua: &str) -> &Repo {
        self.dir
            .template(name, manifest, &format!("{name}.lua"), lua);
        self
    }

    /// Writes any file of the repository.
    pub fn file(&self, rel: &str, text: &str) -> &Repo {
        self.dir.file(rel, text);
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

#[allow(unused_imports)]
pub use zrobot_testkit::eventually;

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
