//! Figures measured on real `zrobot server start` processes: memory per idle
//! service, restart after SIGKILL, scheduling over HTTP with credentials
//! checked and load from another process, and round trips between two robot
//! processes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use uuid::Uuid;
use zrobot_client::wire::{ServiceCreate, TaskState};
use zrobot_client::Client;
use zrobot_core::store::{Retention, ServiceRecord, Store, StoreOp};
use zrobot_core::{Priority, TaskRecord};
use zrobot_store::SqliteStore;

use crate::load::{self, Plan, Target};
use crate::process::{zrobot_binary, Ecos, RobotProcess, Setup};
use crate::template;

/// How long the tasks accepted during a figure may take to execute after
/// it, before the figure fails.
const DRAIN_LIMIT: Duration = Duration::from_secs(600);

/// The robots of one figure: a temp dir holding their data directories and
/// the template repository, and the webhook their failed tasks go to.
pub struct Lab {
    bin: PathBuf,
    dir: tempfile::TempDir,
    repo: PathBuf,
    ecos: Ecos,
    webhook: String,
}

impl Lab {
    pub async fn new(zrobot: Option<&Path>) -> anyhow::Result<Lab> {
        let bin = zrobot_binary(zrobot)?;
        let dir = tempfile::tempdir().context("cannot make a temp dir for the robots")?;
        // `local/zrobot/bench`: the UID prefix a local repository gets.
        let repo = template::git_repo(&dir.path().join("zrobot").join("bench"))?;
        let ecos = Ecos::default();
        let webhook = ecos.listen().await?;
        Ok(Lab {
            bin,
            dir,
            repo,
            ecos,
            webhook,
        })
    }

    async fn robot(&self, name: &'static str, args: Vec<String>) -> anyhow::Result<RobotProcess> {
        RobotProcess::start(
            &self.bin,
            &self.dir.path().join(name),
            &self.repo,
            Setup { name, args },
            &self.webhook,
        )
        .await
    }
}

/// Creates services `prefix0..prefix{n}` of the bench template through the
/// API, 16 requests at a time; returns their guids and secrets in order.
async fn create_services(
    client: &Client,
    prefix: &str,
    n: usize,
) -> anyhow::Result<Vec<(Uuid, String)>> {
    let lanes = 16.min(n.max(1));
    let mut handles = Vec::new();
    for lane in 0..lanes {
        let (client, prefix) = (client.clone(), prefix.to_owned());
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in (lane..n).step_by(lanes) {
                let created = client
                    .create_service(&ServiceCreate {
                        template: template::NAME.into(),
                        name: format!("{prefix}{i}"),
                        data: json!({}),
                        public: false,
                    })
                    .await
                    .with_context(|| format!("cannot create service {prefix}{i}"))?;
                out.push((i, created.service.guid, created.secret));
            }
            anyhow::Ok(out)
        }));
    }
    let mut all = Vec::with_capacity(n);
    for h in handles {
        all.extend(h.await.context("a creating task panicked")??);
    }
    all.sort_by_key(|(i, ..)| *i);
    Ok(all.into_iter().map(|(_, g, s)| (g, s)).collect())
}

/// Waits for each of `tasks` (service guid, task guid) to end; fails with
/// the eco of the first that did not end `ok`.
async fn wait_all_ok(client: &Client, tasks: &[(Uuid, Uuid)]) -> anyhow::Result<()> {
    for &(service, task) in tasks {
        let t = client
            .wait_done(service, task, DRAIN_LIMIT)
            .await
            .with_context(|| format!("cannot follow task {task}"))?;
        if t.state != TaskState::Ok {
            let eco = t
                .eco
                .map_or("no eco".to_owned(), |e| format!("{}: {}", e.cat, e.message));
            bail!(
                "task `{}` of service `{}` ended in {}: {eco}",
                t.action_name,
                t.service_name,
                format!("{:?}", t.state).to_lowercase()
            );
        }
    }
    Ok(())
}

/// Resident bytes per idle service: the robot process's RSS before and after
/// creating `n` services through its API (SQLite store).
pub async fn bytes_per_idle_service(zrobot: Option<&Path>, n: usize) -> anyhow::Result<f64> {
    let lab = Lab::new(zrobot).await?;
    let robot = lab.robot("a", vec![]).await?;
    // Warms up what the first requests and services allocate once.
    create_services(&robot.admin, "warm", 100).await?;
    let before = robot.rss_bytes()?;
    create_services(&robot.admin, "idle", n).await?;
    let after = robot.rss_bytes()?;
    Ok(after.saturating_sub(before) as f64 / n as f64)
}

/// Restart to ready: a store of `n_services` services and `n_tasks` finished
/// tasks, the robot killed with SIGKILL, then `zrobot server start` again
/// (its `-T` repository fetched, the services' `validate` run): seconds
/// until the API answers, and until a no-op has run `ok` on each of
/// `probes` services spread over the store. Returns `[ready, api]`.
pub async fn restart(
    zrobot: Option<&Path>,
    n_services: usize,
    n_tasks: usize,
    probes: usize,
) -> anyhow::Result<Vec<f64>> {
    let lab = Lab::new(zrobot).await?;
    let mut robot = lab.robot("a", vec![]).await?;
    let uid = robot.template_uid().await?;
    robot.kill().await?;
    let guids = fill_store(&robot.data_dir.join("zrobot.db"), &uid, n_services, n_tasks).await?;
    let step = (n_services / probes.max(1)).max(1);
    let probed: Vec<Uuid> = guids.iter().step_by(step).take(probes).copied().collect();
    // A first start on the filled store, a task run, then the kill: the
    // measured start finds the store as a crash leaves it.
    robot.start_again().await?;
    probe(&robot.admin, &probed).await?;
    robot.kill().await?;

    let start = Instant::now();
    robot.start_again().await?;
    loop {
        match robot.admin.robot_info().await {
            Ok(_) => break,
            Err(e) if start.elapsed() > Duration::from_secs(60) => {
                bail!("robot a listens but its API did not answer within 60s: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
    let api = start.elapsed().as_secs_f64();
    probe(&robot.admin, &probed).await?;
    let ready = start.elapsed().as_secs_f64();

    let metrics = robot.admin.prometheus_metrics().await?;
    let restored = metrics
        .lines()
        .find_map(|l| l.strip_prefix("zrobot_services "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .context("robot a's /metrics has no zrobot_services")? as usize;
    if restored != n_services {
        bail!("robot a restored {restored} services of the {n_services} in its store");
    }
    Ok(vec![ready, api])
}

/// Schedules a no-op on every service of `guids` and waits for each to end `ok`.
async fn probe(client: &Client, guids: &[Uuid]) -> anyhow::Result<()> {
    let mut tasks = Vec::with_capacity(guids.len());
    for &g in guids {
        let t = client
            .schedule(g, "noop", json!({}))
            .await
            .with_context(|| format!("cannot schedule a probe on service {g}"))?;
        tasks.push((g, t.guid));
    }
    wait_all_ok(client, &tasks).await
}

/// Writes services of template `uid`, each with its share of finished tasks,
/// straight into the SQLite store at `db` (the robot being down); returns
/// the services' guids.
async fn fill_store(
    db: &Path,
    uid: &str,
    n_services: usize,
    n_tasks: usize,
) -> anyhow::Result<Vec<Uuid>> {
    let store = SqliteStore::open(db, Retention::default())
        .with_context(|| format!("cannot open the robot's store {}", db.display()))?;
    let now = zrobot_core::time::now();
    let per = (n_tasks / n_services.max(1)).max(1);
    let mut guids = Vec::with_capacity(n_services);
    let mut ops = Vec::new();
    let mut seq = 0u64;
    for i in 0..n_services {
        let guid = Uuid::new_v4();
        guids.push(guid);
        ops.push(StoreOp::PutService(ServiceRecord {
            guid,
            name: format!("s{i}"),
            template_uid: uid.into(),
            public: false,
            data: json!({"n": 0}),
            state: Default::default(),
            secrets: vec![],
            created: now,
        }));
        for _ in 0..per {
            seq += 1;
            ops.push(StoreOp::PutTask(TaskRecord {
                guid: Uuid::new_v4(),
                service_guid: guid,
                service_name: format!("s{i}"),
                template_uid: uid.into(),
                action_name: "noop".into(),
                args: json!({}),
                priority: Priority::Normal,
                seq,
                state: zrobot_core::TaskState::Ok,
                attempt: 1,
                created: now,
                started: Some(now),
                duration: Some(0.0),
                result: None,
                eco: None,
                trace: None,
                key: None,
            }));
        }
        if ops.len() >= 20_000 {
            store
                .commit(std::mem::take(&mut ops))
                .await
                .context("cannot fill the store")?;
        }
    }
    store.commit(ops).await.context("cannot fill the store")?;
    Ok(guids)
}

/// `POST /services/{guid}/task_list` over `connections` keep-alive
/// connections for `seconds`, each presenting its service's secret to a
/// robot that checks JWTs, the load from another process; and the same load
/// on `GET /robot/info` just before, as the baseline. Every accepted task
/// must then end `ok`. Returns `[rate, p50, p99, info rate, info p99, rate
/// ratio, p99 ratio]`.
pub async fn http_schedule(
    zrobot: Option<&Path>,
    connections: usize,
    seconds: usize,
) -> anyhow::Result<Vec<f64>> {
    let lab = Lab::new(zrobot).await?;
    let robot = lab.robot("a", vec![]).await?;
    let services = create_services(&robot.admin, "s", 100).await?;
    let plan = |path: &dyn Fn(Uuid) -> String, method: &str, body: Option<&str>, status| Plan {
        connections,
        seconds: seconds as f64,
        method: method.into(),
        body: body.map(str::to_owned),
        status,
        targets: services
            .iter()
            .map(|(guid, secret)| Target {
                url: format!("{}{}", robot.url, path(*guid)),
                secret: Some(secret.clone()),
            })
            .collect(),
    };
    let info = load::in_child(&plan(&|_| "/robot/info".into(), "GET", None, 200)).await?;
    let schedule = load::in_child(&plan(
        &|g| format!("/services/{g}/task_list"),
        "POST",
        Some(r#"{"action_name": "noop", "args": {}}"#),
        201,
    ))
    .await?;
    let accepted = schedule.accepted.iter().sum();
    robot
        .all_ok(&lab.ecos, "noop", accepted, DRAIN_LIMIT)
        .await?;
    Ok(vec![
        schedule.per_second,
        schedule.p50_ms,
        schedule.p99_ms,
        info.per_second,
        info.p99_ms,
        schedule.per_second / info.per_second,
        schedule.p99_ms / info.p99_ms,
    ])
}

/// Round trips across two robot processes on loopback: consumers on robot
/// `a` (told of `b` with `--robot`, holding an admin JWT of it) each create
/// a producer on `b`, then schedule `per_consumer` no-ops on it one after
/// the other, waiting for each.
pub async fn cross_robot(
    zrobot: Option<&Path>,
    pairs: usize,
    per_consumer: usize,
) -> anyhow::Result<f64> {
    let lab = Lab::new(zrobot).await?;
    let b = lab.robot("b", vec![]).await?;
    let token = lab.dir.path().join("b.jwt");
    std::fs::write(&token, &b.admin_jwt).context("cannot write robot b's token")?;
    let a = lab
        .robot(
            "a",
            vec!["--robot".into(), format!("b={},{}", b.url, token.display())],
        )
        .await?;
    let consumers = create_services(&a.admin, "c", pairs).await?;
    let mut connects = Vec::new();
    for (i, (guid, _)) in consumers.iter().enumerate() {
        let args = json!({"robot": "b", "producer": format!("p{i}")});
        let t = a.admin.schedule(*guid, "connect", args).await?;
        connects.push((*guid, t.guid));
    }
    wait_all_ok(&a.admin, &connects).await?;

    let start = Instant::now();
    let mut asks = Vec::new();
    for (i, (guid, _)) in consumers.iter().enumerate() {
        let args = json!({"robot": "b", "producer": format!("p{i}"), "n": per_consumer});
        let t = a.admin.schedule(*guid, "ask_remote", args).await?;
        asks.push((*guid, t.guid));
    }
    wait_all_ok(&a.admin, &asks).await?;
    let rate = (pairs * per_consumer) as f64 / start.elapsed().as_secs_f64();
    b.all_ok(
        &lab.ecos,
        "noop",
        (pairs * per_consumer) as u64,
        DRAIN_LIMIT,
    )
    .await?;
    Ok(rate)
}
