//! Figures measured on robots of this process (the core, the Lua engine and
//! a store, no HTTP): tasks executed per second and round trips between
//! services of one robot. Only tasks that ended `ok` count; the first one
//! that ends otherwise fails the figure with its eco.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::sync::Notify;
use zrobot_core::robot::NewService;
use zrobot_core::store::{MemoryStore, Retention, Store};
use zrobot_core::{Observer, RepoId, Robot, RobotConfig, Service, TaskRecord, TaskState};
use zrobot_lua::{LuaConfig, LuaEngine};
use zrobot_store::SqliteStore;

use crate::template;

/// The store a robot of this process keeps its services and tasks in.
#[derive(Clone, Copy, PartialEq)]
pub enum StoreKind {
    Memory,
    Sqlite,
}

/// How long the tasks of one figure may take to execute before the figure
/// fails: far beyond any run that works.
const DRAIN_LIMIT: Duration = Duration::from_secs(600);

/// Counts the tasks that ended `ok` and keeps the first that did not.
#[derive(Default)]
struct Outcomes {
    ok: AtomicU64,
    target: AtomicU64,
    failed: Mutex<Option<String>>,
    changed: Notify,
}

impl Observer for Outcomes {
    fn task_finished(&self, service: &Service, task: &TaskRecord) {
        if task.state == TaskState::Ok {
            let n = self.ok.fetch_add(1, Ordering::Relaxed) + 1;
            if n == self.target.load(Ordering::Relaxed) {
                self.changed.notify_one();
            }
            return;
        }
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        if failed.is_none() {
            let eco = task.eco.as_ref().map_or_else(
                || "no eco".to_owned(),
                |e| format!("{}: {}", e.category, e.message),
            );
            *failed = Some(format!(
                "task `{}` of service `{}` ended in {}: {eco}",
                task.action_name,
                service.name,
                format!("{:?}", task.state).to_lowercase()
            ));
        }
        self.changed.notify_one();
    }
}

impl Outcomes {
    /// Counts from zero towards `n` tasks ended `ok`.
    fn expect(&self, n: u64) {
        self.ok.store(0, Ordering::Relaxed);
        self.target.store(n, Ordering::Relaxed);
    }

    /// Returns once the expected tasks have all ended `ok`; fails at the
    /// first task that ended otherwise, or past [`DRAIN_LIMIT`].
    async fn all_ok(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + DRAIN_LIMIT;
        loop {
            let changed = self.changed.notified();
            if let Some(f) = self
                .failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                bail!("{f}");
            }
            let (ok, target) = (
                self.ok.load(Ordering::Relaxed),
                self.target.load(Ordering::Relaxed),
            );
            if ok >= target {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline.into(), changed)
                .await
                .is_err()
            {
                bail!(
                    "only {ok} of {target} accepted tasks ended ok within {}s",
                    DRAIN_LIMIT.as_secs()
                );
            }
        }
    }
}

/// A robot of this process on a temporary store, with the bench template.
pub struct LocalRobot {
    pub robot: Robot,
    outcomes: Arc<Outcomes>,
    /// The store, when it is SQLite: its writer's counts.
    sqlite: Option<Arc<SqliteStore>>,
    _dirs: [tempfile::TempDir; 2],
}

/// Template code runs on a runtime of its own, as in the server, so that the
/// figures include the hop between the two runtimes.
fn template_runtime() -> anyhow::Result<tokio::runtime::Handle> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if RUNTIME.get().is_none() {
        let rt =
            zrobot_core::robot::template_runtime().context("cannot start the template runtime")?;
        let _ = RUNTIME.set(rt);
    }
    Ok(RUNTIME.get().expect("set above").handle().clone())
}

impl LocalRobot {
    pub fn new(kind: StoreKind) -> anyhow::Result<LocalRobot> {
        let data = tempfile::tempdir().context("cannot make a temp dir for the store")?;
        let repo = tempfile::tempdir().context("cannot make a temp dir for the template")?;
        template::write(repo.path())?;
        let sqlite = match kind {
            StoreKind::Memory => None,
            StoreKind::Sqlite => Some(Arc::new(
                SqliteStore::open(&data.path().join("zrobot.db"), Retention::default())
                    .context("cannot open the SQLite store")?,
            )),
        };
        let store: Arc<dyn Store> = match &sqlite {
            Some(s) => s.clone(),
            None => Arc::new(MemoryStore::new()),
        };
        let robot = Robot::with_template_runtime(
            RobotConfig::default(),
            Arc::new(LuaEngine::new(LuaConfig::default())),
            store,
            template_runtime()?,
        );
        let load = robot.load_repository(repo.path(), &RepoId::new("bench", "zrobot", "bench"));
        if !load.errors.is_empty() {
            bail!("the bench template does not load: {:?}", load.errors);
        }
        let outcomes = Arc::new(Outcomes::default());
        robot.add_observer(outcomes.clone());
        Ok(LocalRobot {
            robot,
            outcomes,
            sqlite,
            _dirs: [data, repo],
        })
    }

    /// Creates `n` services named `prefix0`.., from several tasks at once so
    /// that their commits group.
    pub async fn services(&self, prefix: &str, n: usize) -> anyhow::Result<Vec<Arc<Service>>> {
        let chunks = 16.min(n.max(1));
        let mut handles = Vec::new();
        for c in 0..chunks {
            let robot = self.robot.clone();
            let prefix = prefix.to_owned();
            handles.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for i in (c..n).step_by(chunks) {
                    let svc = robot
                        .create_service(NewService {
                            template: template::NAME.into(),
                            name: format!("{prefix}{i}"),
                            data: json!({}),
                            ..Default::default()
                        })
                        .await
                        .with_context(|| format!("cannot create service {prefix}{i}"))?;
                    out.push((i, svc));
                }
                anyhow::Ok(out)
            }));
        }
        let mut out = Vec::with_capacity(n);
        for h in handles {
            out.extend(h.await.context("a creating task panicked")??);
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out.into_iter().map(|(_, s)| s).collect())
    }
}

/// A run of [`tasks_per_second`].
pub struct TaskRun {
    pub per_second: f64,
    /// How the SQLite store's writer grouped the run's commits: commits per
    /// transaction, and transactions per second.
    pub grouping: Option<(f64, f64)>,
}

/// No-op tasks executed per second over `n_services`, scheduled by 32
/// producers at once; the clock stops when the last one ended `ok`.
pub async fn tasks_per_second(
    kind: StoreKind,
    n_services: usize,
    n_tasks: usize,
) -> anyhow::Result<TaskRun> {
    let b = LocalRobot::new(kind)?;
    let svcs = b.services("s", n_services).await?;
    b.run_noops(&svcs, n_tasks).await
}

impl LocalRobot {
    /// Runs `n_tasks` no-ops over `svcs` (task `i` on `svcs[i % len]`),
    /// scheduled by 32 producers at once; the clock stops when the last one
    /// ended `ok`.
    pub async fn run_noops(
        &self,
        svcs: &[Arc<Service>],
        n_tasks: usize,
    ) -> anyhow::Result<TaskRun> {
        let svcs = Arc::new(svcs.to_vec());
        self.outcomes.expect(n_tasks as u64);
        let producers = 32.min(n_tasks);
        let before = self.sqlite.as_ref().map(|s| s.writer_stats());
        let start = Instant::now();
        let mut handles = Vec::new();
        for p in 0..producers {
            let robot = self.robot.clone();
            let svcs = svcs.clone();
            handles.push(tokio::spawn(async move {
                for i in (p..n_tasks).step_by(producers) {
                    let svc = &svcs[i % svcs.len()];
                    robot
                        .schedule(svc, "noop", Value::Null)
                        .await
                        .with_context(|| format!("cannot schedule noop on {}", svc.name))?;
                }
                anyhow::Ok(())
            }));
        }
        for h in handles {
            h.await.context("a producer panicked")??;
        }
        self.outcomes.all_ok().await?;
        let secs = start.elapsed().as_secs_f64();
        let grouping = self.sqlite.as_ref().zip(before).map(|(s, before)| {
            let after = s.writer_stats();
            let transactions = (after.transactions - before.transactions).max(1) as f64;
            (
                (after.commits - before.commits) as f64 / transactions,
                transactions / secs,
            )
        });
        Ok(TaskRun {
            per_second: n_tasks as f64 / secs,
            grouping,
        })
    }
}

/// Consumer -> producer round trips per second in one robot: each consumer's
/// `ask` schedules `per_consumer` no-ops on its producer, one after the
/// other, waiting for each.
pub async fn round_trips(
    kind: StoreKind,
    pairs: usize,
    per_consumer: usize,
) -> anyhow::Result<f64> {
    let b = LocalRobot::new(kind)?;
    b.services("p", pairs).await?;
    let consumers = b.services("c", pairs).await?;
    b.outcomes.expect((pairs * (per_consumer + 1)) as u64);
    let start = Instant::now();
    for (i, c) in consumers.iter().enumerate() {
        b.robot
            .schedule(
                c,
                "ask",
                json!({"producer": format!("p{i}"), "n": per_consumer}),
            )
            .await
            .with_context(|| format!("cannot schedule ask on {}", c.name))?;
    }
    b.outcomes.all_ok().await?;
    Ok((pairs * per_consumer) as f64 / start.elapsed().as_secs_f64())
}

/// Services a blueprint creates per second, each with a `noop` scheduled, in
/// a robot already holding `holding` services, and in an empty one for the
/// baseline of the same run: `[full, empty, full / empty]`. The blueprints
/// list `per_blueprint` services; the clock stops when their tasks all
/// ended `ok`.
pub async fn blueprint_services_per_second(
    holding: usize,
    per_blueprint: usize,
) -> anyhow::Result<[f64; 3]> {
    let empty = LocalRobot::new(StoreKind::Sqlite)?;
    let full = LocalRobot::new(StoreKind::Sqlite)?;
    full.services("held", holding).await?;
    // The empty robot before and after the full one, the better of the two
    // standing for it, so that a machine warming up favours neither.
    let before = blueprint_into(&empty, "a", per_blueprint).await?;
    let at_size = blueprint_into(&full, "b", per_blueprint).await?;
    let after = blueprint_into(&empty, "c", per_blueprint).await?;
    let baseline = before.max(after);
    Ok([at_size, baseline, at_size / baseline])
}

/// Executes one blueprint of `n` new services named `prefix0`.. with a
/// `noop` on each; services per second.
async fn blueprint_into(b: &LocalRobot, prefix: &str, n: usize) -> anyhow::Result<f64> {
    let services: Vec<Value> = (0..n)
        .map(|i| json!({ format!("{}__{prefix}{i}", template::NAME): {"n": i} }))
        .collect();
    let bp = zrobot_core::blueprint::Blueprint::from_value(&json!({
        "services": services,
        "actions": (0..n).map(|i| json!({"service": format!("{prefix}{i}"), "actions": ["noop"]})).collect::<Vec<_>>(),
    }))
    .map_err(|e| anyhow::anyhow!("the bench blueprint is refused: {e}"))?;
    let may_manage = |_: &Service| true;
    let new_secret = || (uuid::Uuid::new_v4().to_string(), String::new());
    b.outcomes.expect(n as u64);
    let start = Instant::now();
    let outcome = b
        .robot
        .execute_blueprint(
            &bp,
            &zrobot_core::robot::BlueprintCaller {
                may_manage: &may_manage,
                new_secret: &new_secret,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("the bench blueprint failed: {e}"))?;
    if outcome.created.len() != n {
        bail!(
            "the blueprint created {} services, not {n}",
            outcome.created.len()
        );
    }
    b.outcomes.all_ok().await?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}
