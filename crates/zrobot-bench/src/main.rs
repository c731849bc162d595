//! The project's benchmark: measures the speed and size figures of the design
//! on this machine and prints each next to its bar, then all of them as one
//! JSON object on the last line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use serde_json::{json, Value};
use tokio::sync::Notify;
use zrobot_core::robot::NewService;
use zrobot_core::store::{MemoryStore, Store};
use zrobot_core::{Observer, RepoId, Robot, RobotConfig, Service, TaskRecord};
use zrobot_lua::{LuaConfig, LuaEngine};

/// Measure zrobot against the bars of its design.
#[derive(Parser)]
struct Args {
    /// Small counts, a few seconds in all: proves the benchmark runs (CI).
    #[arg(long)]
    quick: bool,
    /// How many times each figure is measured; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
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

struct Bench {
    robot: Robot,
    counter: Arc<Counter>,
    _repo: tempfile::TempDir,
}

fn write_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let t = dir.path().join("templates/bench");
    std::fs::create_dir_all(&t).expect("template dir");
    std::fs::write(t.join("template.yaml"), BENCH_YAML).expect("manifest");
    std::fs::write(t.join("bench.lua"), BENCH_LUA).expect("code");
    dir
}

fn new_bench(store: Arc<dyn Store>) -> Bench {
    let repo = write_repo();
    let robot = Robot::new(
        RobotConfig::default(),
        Arc::new(LuaEngine::new(LuaConfig::default())),
        store,
    );
    let load = robot.load_repository(repo.path(), &RepoId::new("bench", "zrobot", "bench"));
    assert!(load.errors.is_empty(), "{:?}", load.errors);
    let counter = Arc::new(Counter::default());
    robot.add_observer(counter.clone());
    Bench {
        robot,
        counter,
        _repo: repo,
    }
}

async fn services(robot: &Robot, prefix: &str, n: usize) -> Vec<Arc<Service>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
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
    }
    out
}

/// Figure 1: no-op tasks executed per second over `n_services`, scheduled
/// by several producers at once.
async fn tasks_per_second(store: Arc<dyn Store>, n_services: usize, n_tasks: usize) -> f64 {
    let b = new_bench(store);
    let svcs = Arc::new(services(&b.robot, "s", n_services).await);
    b.counter.done.store(0, Ordering::Relaxed);
    b.counter.target.store(n_tasks as u64, Ordering::Relaxed);
    let producers = 8.min(n_tasks);
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
async fn round_trips(store: Arc<dyn Store>, pairs: usize, per_consumer: usize) -> f64 {
    let b = new_bench(store);
    services(&b.robot, "p", pairs).await;
    let consumers = services(&b.robot, "c", pairs).await;
    b.counter.done.store(0, Ordering::Relaxed);
    let target = pairs * (per_consumer + 1);
    b.counter.target.store(target as u64, Ordering::Relaxed);
    let start = Instant::now();
    for (i, c) in consumers.iter().enumerate() {
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

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Figure 5: resident memory per idle service.
async fn memory_per_service(n: usize) -> f64 {
    let b = new_bench(Arc::new(MemoryStore::new()));
    // Warm the allocator and the template's state pool first.
    services(&b.robot, "warm", 10).await;
    let before = rss_bytes().unwrap_or(0);
    let svcs = services(&b.robot, "idle", n).await;
    let after = rss_bytes().unwrap_or(0);
    drop(svcs);
    (after.saturating_sub(before)) as f64 / n as f64
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
    bar: f64,
    higher_is_better: bool,
}

impl Figure {
    fn holds(&self) -> bool {
        if self.higher_is_better {
            self.value >= self.bar
        } else {
            self.value <= self.bar
        }
    }
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let runs = if args.quick { 1 } else { args.runs.max(1) };
    let (services_many, tasks_many, rt_pairs, rt_each, idle) = if args.quick {
        (100, 20_000, 10, 200, 10_000)
    } else {
        (1_000, 500_000, 100, 2_000, 100_000)
    };
    let mut figures = Vec::new();
    runtime.block_on(async {
        let mut v = Vec::new();
        for _ in 0..runs {
            v.push(tasks_per_second(Arc::new(MemoryStore::new()), services_many, tasks_many).await);
        }
        figures.push(Figure {
            key: "tasks_per_second",
            what: format!(
                "no-op tasks executed per second, {services_many} services (in-memory store)"
            ),
            value: median(v),
            unit: "tasks/s",
            bar: 100_000.0,
            higher_is_better: true,
        });
        let mut v = Vec::new();
        for _ in 0..runs {
            v.push(tasks_per_second(Arc::new(MemoryStore::new()), 1, tasks_many / 10).await);
        }
        figures.push(Figure {
            key: "tasks_per_second_1_service",
            what: "no-op tasks executed per second, 1 service (in-memory store)".into(),
            value: median(v),
            unit: "tasks/s",
            bar: 0.0,
            higher_is_better: true,
        });
        let mut v = Vec::new();
        for _ in 0..runs {
            v.push(round_trips(Arc::new(MemoryStore::new()), rt_pairs, rt_each).await);
        }
        figures.push(Figure {
            key: "round_trips_per_second_local",
            what: format!(
                "consumer -> producer round trips per second, same robot, {rt_pairs} pairs"
            ),
            value: median(v),
            unit: "trips/s",
            bar: 50_000.0,
            higher_is_better: true,
        });
        let mut v = Vec::new();
        for _ in 0..runs {
            v.push(memory_per_service(idle).await);
        }
        figures.push(Figure {
            key: "bytes_per_idle_service",
            what: format!("resident memory per idle service, {idle} services"),
            value: median(v),
            unit: "bytes",
            bar: 16.0 * 1024.0,
            higher_is_better: false,
        });
    });
    println!(
        "zrobot benchmark: {} cores, {} mode, median of {runs} run(s)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        if args.quick { "quick" } else { "full" }
    );
    let mut out = serde_json::Map::new();
    for f in &figures {
        let bar = if f.bar > 0.0 {
            format!(
                "bar {} {:.0} {}",
                if f.higher_is_better { ">=" } else { "<=" },
                f.bar,
                if f.holds() { "holds" } else { "MISSED" }
            )
        } else {
            "(no bar: shows how the cost grows)".to_owned()
        };
        println!("{:>14.0} {:<8} {}  {}", f.value, f.unit, f.what, bar);
        out.insert(
            f.key.to_owned(),
            json!({"value": f.value, "unit": f.unit, "bar": f.bar, "holds": f.bar <= 0.0 || f.holds()}),
        );
    }
    println!("{}", Value::Object(out));
}
