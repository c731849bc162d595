//! The project's benchmark: measures the speed and size figures of the design
//! on this machine and prints each next to its bar, then all of them as one
//! JSON object on the last line.
//!
//! Robots run in this process (their API on loopback where a figure goes over
//! HTTP), on the real SQLite store unless a figure says otherwise.

/// The robot binary's allocator, so that the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};
use tokio::sync::Notify;
use zrobot_core::robot::NewService;
use zrobot_core::store::{MemoryStore, Retention, ServiceRecord, Store, StoreOp};
use zrobot_core::{
    Observer, Priority, RepoId, Robot, RobotConfig, Service, ServiceStatus, TaskRecord, TaskState,
};
use zrobot_lua::{LuaConfig, LuaEngine};
use zrobot_store::SqliteStore;

/// Measure zrobot against the bars of its design.
#[derive(Parser)]
struct Args {
    /// Small counts, a few seconds in all: proves the benchmark runs (CI).
    #[arg(long)]
    quick: bool,
    /// How many times each figure is measured; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Measure only the figures whose key contains this (e.g. `restart`).
    #[arg(long)]
    only: Option<String>,
    /// Measure in this process (by default each figure runs in a process of
    /// its own, so that no figure pays for what an earlier one left behind).
    #[arg(long)]
    in_process: bool,
}

/// The figures, in the order they are measured; a child process measures
/// one group (the HTTP group gives three figures).
const GROUPS: [&str; 10] = [
    "tasks_per_second",
    "tasks_per_second_memory",
    "tasks_per_second_1_service",
    "tasks_per_second_many_services",
    "round_trips_per_second_local",
    "round_trips_per_second_local_memory",
    "round_trips_per_second_remote",
    "http_schedule",
    "bytes_per_idle_service",
    "restart_seconds",
];

/// Runs each group of figures in a child process and prints them all.
fn run_children(args: &Args) -> std::process::ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot find this program to run its figures: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut header = None;
    let mut lines = Vec::new();
    let mut all = serde_json::Map::new();
    for group in GROUPS {
        if args.only.as_deref().is_some_and(|o| !group.contains(o)) {
            continue;
        }
        let mut cmd = std::process::Command::new(&exe);
        cmd.args([
            "--in-process",
            "--only",
            group,
            "--runs",
            &args.runs.to_string(),
        ]);
        if args.quick {
            cmd.arg("--quick");
        }
        let out = match cmd.stderr(std::process::Stdio::inherit()).output() {
            Ok(o) if o.status.success() => o,
            Ok(o) => {
                eprintln!("error: measuring `{group}` failed ({})", o.status);
                return std::process::ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("error: cannot run the figure `{group}`: {e}");
                return std::process::ExitCode::from(2);
            }
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut it = text.lines();
        let head = it.next().unwrap_or_default().to_owned();
        header.get_or_insert(head);
        let rest: Vec<&str> = it.collect();
        if let Some((json, body)) = rest.split_last() {
            lines.extend(body.iter().map(|l| l.to_string()));
            if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(json) {
                all.extend(m);
            }
        }
    }
    println!(
        "{} (each figure in its own process)",
        header.unwrap_or_default()
    );
    for l in lines {
        println!("{l}");
    }
    println!("{}", Value::Object(all));
    std::process::ExitCode::SUCCESS
}

const BENCH_YAML: &str = "version: 1.0.0\n";
const BENCH_LUA: &str = r#"
local b = {}
function b.noop(self) end
function b.ask(self, args)
  local p = robot.services:get({name = args.producer})
  for i = 1, args.n do
    p:schedule_action("noop", {}):wait()
  end
end
function b.ask_remote(self, args)
  local p = robot.robots[args.robot].services:get({name = args.producer})
  for i = 1, args.n do
    p:schedule_action("noop", {}):wait()
  end
end
return b
"#;

/// Counts finished tasks and wakes the measurer at a target.
#[derive(Default)]
struct Counter {
    done: AtomicU64,
    target: AtomicU64,
    reached: Notify,
}

impl Observer for Counter {
    fn task_finished(&self, _: &Service, _: &TaskRecord) {
        let n = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if n == self.target.load(Ordering::Relaxed) {
            self.reached.notify_one();
        }
    }
}

impl Counter {
    fn expect(&self, n: u64) {
        self.done.store(0, Ordering::Relaxed);
        self.target.store(n, Ordering::Relaxed);
    }
}

struct Bench {
    robot: Robot,
    counter: Arc<Counter>,
    _dirs: Vec<tempfile::TempDir>,
}

fn write_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let t = dir.path().join("templates/bench");
    std::fs::create_dir_all(&t).expect("template dir");
    std::fs::write(t.join("template.yaml"), BENCH_YAML).expect("manifest");
    std::fs::write(t.join("bench.lua"), BENCH_LUA).expect("code");
    dir
}

#[derive(Clone, Copy, PartialEq)]
enum StoreKind {
    Memory,
    Sqlite,
}

fn open_sqlite(dir: &Path) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(&dir.join("zrobot.db"), Retention::default()).expect("sqlite store"))
}

fn new_bench(kind: StoreKind) -> Bench {
    let data = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> = match kind {
        StoreKind::Memory => Arc::new(MemoryStore::new()),
        StoreKind::Sqlite => open_sqlite(data.path()),
    };
    bench_on(store, vec![data])
}

/// Template code runs on a runtime of its own, as in the server, so that the
/// figures include the hop between the two runtimes.
fn template_runtime() -> tokio::runtime::Handle {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| zrobot_core::robot::template_runtime().expect("template runtime"))
        .handle()
        .clone()
}

fn bench_on(store: Arc<dyn Store>, mut dirs: Vec<tempfile::TempDir>) -> Bench {
    let repo = write_repo();
    let robot = Robot::with_template_runtime(
        RobotConfig::default(),
        Arc::new(LuaEngine::new(LuaConfig::default())),
        store,
        template_runtime(),
    );
    let load = robot.load_repository(repo.path(), &RepoId::new("bench", "zrobot", "bench"));
    assert!(load.errors.is_empty(), "{:?}", load.errors);
    let counter = Arc::new(Counter::default());
    robot.add_observer(counter.clone());
    dirs.push(repo);
    Bench {
        robot,
        counter,
        _dirs: dirs,
    }
}

async fn services(robot: &Robot, prefix: &str, n: usize) -> Vec<Arc<Service>> {
    // Created from several tasks at once, so that their commits group.
    let mut handles = Vec::new();
    let chunks = 16.min(n.max(1));
    for c in 0..chunks {
        let robot = robot.clone();
        let prefix = prefix.to_owned();
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut i = c;
            while i < n {
                out.push(
                    robot
                        .create_service(NewService {
                            template: "bench".into(),
                            name: format!("{prefix}{i}"),
                            data: json!({}),
                            ..Default::default()
                        })
                        .await
                        .expect("create"),
                );
                i += chunks;
            }
            out
        }));
    }
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.extend(h.await.expect("create task"));
    }
    out
}

/// Figure 1: no-op tasks executed per second over `n_services`, scheduled
/// by several producers at once.
async fn tasks_per_second(kind: StoreKind, n_services: usize, n_tasks: usize) -> f64 {
    let b = new_bench(kind);
    let svcs = Arc::new(services(&b.robot, "s", n_services).await);
    b.counter.expect(n_tasks as u64);
    let producers = 32.min(n_tasks);
    let start = Instant::now();
    let mut handles = Vec::new();
    for p in 0..producers {
        let robot = b.robot.clone();
        let svcs = svcs.clone();
        handles.push(tokio::spawn(async move {
            let mut i = p;
            while i < n_tasks {
                robot
                    .schedule(&svcs[i % svcs.len()], "noop", Value::Null)
                    .await
                    .expect("schedule");
                i += producers;
            }
        }));
    }
    for h in handles {
        h.await.expect("producer");
    }
    b.counter.reached.notified().await;
    n_tasks as f64 / start.elapsed().as_secs_f64()
}

/// Figure 2: consumer -> producer round trips per second in one robot.
async fn round_trips(kind: StoreKind, pairs: usize, per_consumer: usize) -> f64 {
    let b = new_bench(kind);
    services(&b.robot, "p", pairs).await;
    let consumers = services(&b.robot, "c", pairs).await;
    b.counter.expect((pairs * (per_consumer + 1)) as u64);
    let start = Instant::now();
    for c in consumers.iter() {
        let i: usize = c.name[1..].parse().expect("index");
        b.robot
            .schedule(
                c,
                "ask",
                json!({"producer": format!("p{i}"), "n": per_consumer}),
            )
            .await
            .expect("schedule");
    }
    b.counter.reached.notified().await;
    (pairs * per_consumer) as f64 / start.elapsed().as_secs_f64()
}

/// Serves `robot`'s API on a loopback port until `stop` is set.
async fn serve(robot: Robot, stop: Arc<Notify>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = zrobot_api::serve(
            listener,
            robot,
            zrobot_api::ApiConfig::default(),
            async move { stop.notified().await },
        )
        .await;
    });
    url
}

/// Figure 3: round trips across two robots on loopback.
async fn remote_round_trips(pairs: usize, per_consumer: usize) -> f64 {
    let b_robot = new_bench(StoreKind::Sqlite);
    let a_robot = new_bench(StoreKind::Sqlite);
    let stop = Arc::new(Notify::new());
    let b_url = serve(b_robot.robot.clone(), stop.clone()).await;
    a_robot
        .robot
        .add_remote_robot("b", &b_url, None)
        .await
        .expect("remote robot");
    services(&b_robot.robot, "p", pairs).await;
    let consumers = services(&a_robot.robot, "c", pairs).await;
    a_robot.counter.expect(pairs as u64);
    let start = Instant::now();
    for c in consumers.iter() {
        let i: usize = c.name[1..].parse().expect("index");
        a_robot
            .robot
            .schedule(
                c,
                "ask_remote",
                json!({"robot": "b", "producer": format!("p{i}"), "n": per_consumer}),
            )
            .await
            .expect("schedule");
    }
    a_robot.counter.reached.notified().await;
    let rate = (pairs * per_consumer) as f64 / start.elapsed().as_secs_f64();
    stop.notify_waiters();
    rate
}

/// Figure 4: `POST /services/{guid}/task_list` over keep-alive HTTP: requests
/// per second and the p50 and p99 latencies in ms.
async fn http_schedule(connections: usize, duration: Duration) -> (f64, f64, f64) {
    let b = new_bench(StoreKind::Sqlite);
    let svcs = services(&b.robot, "s", 100).await;
    let stop = Arc::new(Notify::new());
    let url = serve(b.robot.clone(), stop.clone()).await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let done = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for c in 0..connections {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .expect("client");
        let target = format!("{url}/services/{}/task_list", svcs[c % svcs.len()].guid);
        let done = done.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let body = br#"{"action_name": "noop", "args": {}}"#.to_vec();
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = client
                    .post(&target)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("request");
                assert_eq!(r.status().as_u16(), 201);
                let _ = r.bytes().await;
                lat.push(t.elapsed().as_micros() as u32);
            }
            lat
        }));
    }
    tokio::time::sleep(duration).await;
    done.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await.expect("load"));
    }
    stop.notify_waiters();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    (
        lat.len() as f64 / duration.as_secs_f64(),
        pct(0.50),
        pct(0.99),
    )
}

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Figure 5: resident memory per idle service.
async fn memory_per_service(n: usize) -> f64 {
    let b = new_bench(StoreKind::Memory);
    services(&b.robot, "warm", 10).await;
    let before = rss_bytes().unwrap_or(0);
    let svcs = services(&b.robot, "idle", n).await;
    let after = rss_bytes().unwrap_or(0);
    drop(svcs);
    (after.saturating_sub(before)) as f64 / n as f64
}

/// Figure 6: restart to ready with `n_services` and `n_tasks` finished tasks
/// in the store: seconds until the API answers and every service runs tasks.
async fn restart(n_services: usize, n_tasks: usize) -> f64 {
    let data = tempfile::tempdir().expect("temp dir");
    let repo = write_repo();
    let uid = "bench/zrobot/bench/bench/1.0.0";
    {
        let store = open_sqlite(data.path());
        let now = zrobot_core::time::now();
        let per = (n_tasks / n_services.max(1)).max(1);
        let mut ops = Vec::new();
        let mut seq = 0u64;
        for i in 0..n_services {
            let guid = uuid::Uuid::new_v4();
            ops.push(StoreOp::PutService(ServiceRecord {
                guid,
                name: format!("s{i}"),
                template_uid: uid.into(),
                public: false,
                data: json!({}),
                state: Default::default(),
                secrets: vec![],
                created: now,
            }));
            for _ in 0..per {
                seq += 1;
                ops.push(StoreOp::PutTask(TaskRecord {
                    guid: uuid::Uuid::new_v4(),
                    service_guid: guid,
                    service_name: format!("s{i}"),
                    template_uid: uid.into(),
                    action_name: "noop".into(),
                    args: json!({}),
                    priority: Priority::Normal,
                    seq,
                    state: TaskState::Ok,
                    attempt: 1,
                    created: now,
                    started: Some(now),
                    duration: Some(0.0),
                    result: None,
                    eco: None,
                    trace: None,
                }));
            }
            if ops.len() >= 20_000 {
                store.commit(std::mem::take(&mut ops)).await.expect("fill");
            }
        }
        store.commit(ops).await.expect("fill");
    }
    let start = Instant::now();
    let store = open_sqlite(data.path());
    let robot = Robot::with_template_runtime(
        RobotConfig::default(),
        Arc::new(LuaEngine::new(LuaConfig::default())),
        store,
        template_runtime(),
    );
    robot.load_repository(repo.path(), &RepoId::new("bench", "zrobot", "bench"));
    robot.restore().await.expect("restore");
    let stop = Arc::new(Notify::new());
    let url = serve(robot.clone(), stop.clone()).await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let answered = client
        .get(format!("{url}/robot/info"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    assert!(answered, "the API did not answer after the restart");
    // Every service validated and running tasks.
    loop {
        let waiting = robot
            .find_services(&Default::default())
            .iter()
            .filter(|s| s.status() != ServiceStatus::Ok)
            .count();
        if waiting == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = start.elapsed().as_secs_f64();
    assert_eq!(robot.service_count(), n_services);
    stop.notify_waiters();
    took
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

struct Figure {
    key: &'static str,
    what: String,
    value: f64,
    unit: &'static str,
    /// `None`: no bar, the figure shows how a cost grows.
    bar: Option<(f64, bool)>,
}

impl Figure {
    fn holds(&self) -> bool {
        match self.bar {
            None => true,
            Some((bar, higher_is_better)) => {
                if higher_is_better {
                    self.value >= bar
                } else {
                    self.value <= bar
                }
            }
        }
    }
}

macro_rules! median_of {
    ($runs:expr, $e:expr) => {{
        let mut v = Vec::new();
        for _ in 0..$runs {
            v.push($e);
        }
        median(v)
    }};
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if !args.in_process {
        return run_children(&args);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let runs = if args.quick { 1 } else { args.runs.max(1) };
    let q = args.quick;
    let only = args.only.clone();
    // Exact keys, except the HTTP group's three figures.
    let wanted = move |key: &str| {
        only.as_deref()
            .is_none_or(|o| key == o || (o == "http_schedule" && key.starts_with(o)))
    };
    let mut figures = Vec::new();
    runtime.block_on(async {
        let (svcs, tasks) = if q { (100, 20_000) } else { (1_000, 500_000) };
        if wanted("tasks_per_second") {
            figures.push(Figure {
                key: "tasks_per_second",
                what: format!("no-op tasks executed per second, {svcs} services, durable (SQLite)"),
                value: median_of!(runs, tasks_per_second(StoreKind::Sqlite, svcs, tasks).await),
                unit: "tasks/s",
                bar: Some((100_000.0, true)),
            });
        }
        if wanted("tasks_per_second_memory") {
            figures.push(Figure {
                key: "tasks_per_second_memory",
                what: format!("no-op tasks executed per second, {svcs} services, in-memory store"),
                value: median_of!(runs, tasks_per_second(StoreKind::Memory, svcs, tasks).await),
                unit: "tasks/s",
                bar: None,
            });
        }
        if wanted("tasks_per_second_1_service") {
            figures.push(Figure {
                key: "tasks_per_second_1_service",
                what: "no-op tasks executed per second, 1 service, durable".into(),
                value: median_of!(runs, tasks_per_second(StoreKind::Sqlite, 1, tasks / 10).await),
                unit: "tasks/s",
                bar: None,
            });
        }
        let many = if q { 2_000 } else { 100_000 };
        if wanted("tasks_per_second_many_services") {
            figures.push(Figure {
                key: "tasks_per_second_many_services",
                what: format!("no-op tasks executed per second, {many} services, durable"),
                value: median_of!(runs, tasks_per_second(StoreKind::Sqlite, many, tasks).await),
                unit: "tasks/s",
                bar: None,
            });
        }
        let (pairs, each) = if q { (10, 200) } else { (100, 2_000) };
        if wanted("round_trips_per_second_local") {
            figures.push(Figure {
                key: "round_trips_per_second_local",
                what: format!("consumer -> producer round trips per second, same robot, {pairs} pairs, durable"),
                value: median_of!(runs, round_trips(StoreKind::Sqlite, pairs, each).await),
                unit: "trips/s",
                bar: Some((50_000.0, true)),
            });
        }
        if wanted("round_trips_per_second_local_memory") {
            figures.push(Figure {
                key: "round_trips_per_second_local_memory",
                what: format!(
                    "consumer -> producer round trips per second, same robot, {pairs} pairs, in-memory store"
                ),
                value: median_of!(runs, round_trips(StoreKind::Memory, pairs, each).await),
                unit: "trips/s",
                bar: None,
            });
        }
        let (pairs, each) = if q { (4, 50) } else { (400, 50) };
        if wanted("round_trips_per_second_remote") {
            figures.push(Figure {
                key: "round_trips_per_second_remote",
                what: format!("consumer -> producer round trips per second, two robots on loopback, {pairs} pairs"),
                value: median_of!(runs, remote_round_trips(pairs, each).await),
                unit: "trips/s",
                bar: Some((5_000.0, true)),
            });
        }
        let (conns, secs) = if q { (8, 1) } else { (16, 10) };
        let mut rates = Vec::new();
        let mut p50s = Vec::new();
        let mut p99s = Vec::new();
        for _ in 0..if wanted("http_schedule_per_second") { runs } else { 0 } {
            let (r, p50, p99) = http_schedule(conns, Duration::from_secs(secs)).await;
            rates.push(r);
            p50s.push(p50);
            p99s.push(p99);
        }
        if wanted("http_schedule_per_second") {
            figures.push(Figure {
                key: "http_schedule_per_second",
                what: format!("POST /services/{{guid}}/task_list per second, keep-alive, {conns} connections"),
                value: median(rates),
                unit: "req/s",
                bar: Some((20_000.0, true)),
            });
        }
        if wanted("http_schedule_p50_ms") {
            figures.push(Figure {
                key: "http_schedule_p50_ms",
                what: "  its p50 latency".into(),
                value: median(p50s),
                unit: "ms",
                bar: None,
            });
        }
        if wanted("http_schedule_p99_ms") {
            figures.push(Figure {
                key: "http_schedule_p99_ms",
                what: "  its p99 latency".into(),
                value: median(p99s),
                unit: "ms",
                bar: Some((5.0, false)),
            });
        }
        let idle = if q { 10_000 } else { 100_000 };
        if wanted("bytes_per_idle_service") {
            figures.push(Figure {
                key: "bytes_per_idle_service",
                what: format!("resident memory per idle service, {idle} services"),
                value: median_of!(runs, memory_per_service(idle).await),
                unit: "bytes",
                bar: Some((16.0 * 1024.0, false)),
            });
        }
        let (svcs, tasks) = if q { (2_000, 20_000) } else { (100_000, 1_000_000) };
        if wanted("restart_seconds") {
            figures.push(Figure {
                key: "restart_seconds",
                what: format!("restart to ready, {svcs} services and {tasks} finished tasks"),
                value: median_of!(runs, restart(svcs, tasks).await),
                unit: "s",
                bar: Some((3.0, false)),
            });
        }
    });
    println!(
        "zrobot benchmark: {} cores, {} mode, median of {runs} run(s), SQLite store (WAL, synchronous=NORMAL) unless said, mimalloc, zrobot {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        if q { "quick (counts far below the bars' conditions)" } else { "full" },
        env!("CARGO_PKG_VERSION"),
    );
    let mut out = serde_json::Map::new();
    for f in &figures {
        let bar = match f.bar {
            Some((bar, higher)) => format!(
                "bar {} {bar} {}",
                if higher { ">=" } else { "<=" },
                if f.holds() { "holds" } else { "MISSED" }
            ),
            None => String::new(),
        };
        let value = if f.value >= 100.0 {
            format!("{:.0}", f.value)
        } else {
            format!("{:.2}", f.value)
        };
        println!("{value:>12} {:<8} {}  {bar}", f.unit, f.what);
        out.insert(
            f.key.to_owned(),
            json!({"value": f.value, "unit": f.unit, "bar": f.bar.map(|b| b.0), "holds": f.holds()}),
        );
    }
    println!("{}", Value::Object(out));
    std::process::ExitCode::SUCCESS
}
