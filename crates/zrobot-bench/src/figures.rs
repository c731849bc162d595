//! The table of figures: each entry says what it measures and where, the
//! counts it runs with (full and `--quick`), the bar of each reading, and
//! the function that measures it once.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use crate::local::{self, StoreKind};
use crate::served;
use crate::subscribers;

/// A bar a reading is held to.
#[derive(Clone, Copy)]
pub enum Bar {
    AtLeast(f64),
    AtMost(f64),
}

impl Bar {
    pub fn holds(self, value: f64) -> bool {
        match self {
            Bar::AtLeast(b) => value >= b,
            Bar::AtMost(b) => value <= b,
        }
    }

    pub fn value(self) -> f64 {
        match self {
            Bar::AtLeast(b) | Bar::AtMost(b) => b,
        }
    }
}

impl std::fmt::Display for Bar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bar::AtLeast(b) => write!(f, ">= {b}"),
            Bar::AtMost(b) => write!(f, "<= {b}"),
        }
    }
}

/// One number a figure's run gives.
pub struct Reading {
    /// Its key in the JSON line.
    pub key: &'static str,
    /// What it is; `{0}`, `{1}`... stand for the figure's counts.
    pub what: &'static str,
    pub unit: &'static str,
    /// `None`: no bar, the reading shows how a cost grows or explains another.
    pub bar: Option<Bar>,
}

/// What a figure's run needs besides its counts.
#[derive(Clone, Default)]
pub struct Context {
    /// `--zrobot`: the robot binary, else the one next to this program.
    pub zrobot: Option<PathBuf>,
}

/// One run of a figure: a value per reading, in the table's order.
pub type Measure = Pin<Box<dyn Future<Output = anyhow::Result<Vec<f64>>>>>;

/// Where a figure's robots run.
#[derive(Clone, Copy, PartialEq)]
pub enum Place {
    /// Robots of the benchmark's own process (core, Lua, store; no HTTP).
    Here,
    /// `zrobot server start` processes the benchmark starts.
    Servers,
}

/// One figure of the design.
pub struct Figure {
    /// The name `--only` and the child processes go by.
    pub key: &'static str,
    pub place: Place,
    pub readings: &'static [Reading],
    /// The counts of a full run, and of `--quick`.
    pub full: &'static [usize],
    pub quick: &'static [usize],
    pub run: fn(Context, &'static [usize]) -> Measure,
}

const fn reading(
    key: &'static str,
    what: &'static str,
    unit: &'static str,
    bar: Option<Bar>,
) -> Reading {
    Reading {
        key,
        what,
        unit,
        bar,
    }
}

/// The readings of an HTTP schedule figure at `{0}` connections.
macro_rules! http_readings {
    ($p:literal) => {
        &[
            reading(concat!($p, "_per_second"), "POST /services/{guid}/task_list per second, {0} keep-alive connections, service secrets on a JWT robot (`zrobot server start`, SQLite), load from another process", "req/s", Some(Bar::AtLeast(20_000.0))),
            reading(concat!($p, "_p50_ms"), "  its p50 latency", "ms", None),
            reading(concat!($p, "_p99_ms"), "  its p99 latency", "ms", None),
            reading(concat!($p, "_info_per_second"), "  GET /robot/info per second, same robot, same load (the baseline)", "req/s", None),
            reading(concat!($p, "_info_p99_ms"), "  its p99 latency", "ms", None),
            reading(concat!($p, "_rate_ratio"), "  schedule rate / info rate", "x", None),
            reading(concat!($p, "_p99_ratio"), "  schedule p99 / info p99", "x", Some(Bar::AtMost(2.0))),
        ]
    };
}

/// Every figure, in the order they are measured.
pub const FIGURES: &[Figure] = &[
    Figure {
        key: "tasks_per_second",
        place: Place::Here,
        readings: &[
            reading("tasks_per_second", "no-op tasks executed per second, {0} services, SQLite store, robot in the benchmark's process", "tasks/s", Some(Bar::AtLeast(100_000.0))),
            reading("tasks_per_second_commits_per_transaction", "  the store writer's group: commits per transaction", "commits", None),
            reading("tasks_per_second_transactions_per_second", "  the store writer's transactions per second", "tx/s", None),
        ],
        full: &[1_000, 500_000],
        quick: &[100, 20_000],
        run: |_, n| Box::pin(async move {
            let run = local::tasks_per_second(StoreKind::Sqlite, n[0], n[1]).await?;
            let (group, rate) = run.grouping.unwrap_or_default();
            Ok(vec![run.per_second, group, rate])
        }),
    },
    Figure {
        key: "tasks_per_second_subscribed",
        place: Place::Here,
        readings: &[
            reading("tasks_per_second_subscribed", "no-op tasks executed per second, {0} services, SQLite store, while another process follows GET /events: one stream per service (`?service=`) and one of everything", "tasks/s", None),
            reading("tasks_per_second_unsubscribed", "  the same robot with no reader (the baseline, before each run with readers)", "tasks/s", None),
            reading("subscribed_ratio", "  with readers / without", "x", Some(Bar::AtLeast(0.9))),
            reading("subscribed_cpu_us_per_task", "  CPU time of the robot's process per task, with readers (the readers' process not counted)", "us", None),
            reading("unsubscribed_cpu_us_per_task", "  the same without readers", "us", None),
            reading("readers_cpu_us_per_task", "  CPU time of the readers' process per task", "us", None),
            reading("subscribed_filtered_missed", "  events the one-service streams missed (gaps)", "events", Some(Bar::AtMost(0.0))),
            reading("subscribed_unfiltered_missed", "  events the stream of everything missed (a slow reader is dropped behind, never waited for)", "events", None),
        ],
        full: &[100, 200_000],
        quick: &[100, 4_000],
        run: |_, n| Box::pin(async move { subscribers::tasks_with_subscribers(n[0], n[1]).await }),
    },
    Figure {
        key: "tasks_per_second_memory",
        place: Place::Here,
        readings: &[reading("tasks_per_second_memory", "no-op tasks executed per second, {0} services, in-memory store, robot in the benchmark's process", "tasks/s", None)],
        full: &[1_000, 500_000],
        quick: &[100, 20_000],
        run: |_, n| Box::pin(async move { Ok(vec![local::tasks_per_second(StoreKind::Memory, n[0], n[1]).await?.per_second]) }),
    },
    Figure {
        key: "tasks_per_second_1_service",
        place: Place::Here,
        readings: &[reading("tasks_per_second_1_service", "no-op tasks executed per second, {0} service, SQLite store, robot in the benchmark's process", "tasks/s", None)],
        full: &[1, 50_000],
        quick: &[1, 2_000],
        run: |_, n| Box::pin(async move { Ok(vec![local::tasks_per_second(StoreKind::Sqlite, n[0], n[1]).await?.per_second]) }),
    },
    Figure {
        key: "tasks_per_second_many_services",
        place: Place::Here,
        readings: &[reading("tasks_per_second_many_services", "no-op tasks executed per second, {0} services, SQLite store, robot in the benchmark's process", "tasks/s", None)],
        full: &[100_000, 500_000],
        quick: &[2_000, 20_000],
        run: |_, n| Box::pin(async move { Ok(vec![local::tasks_per_second(StoreKind::Sqlite, n[0], n[1]).await?.per_second]) }),
    },
    Figure {
        key: "blueprint_services_per_second",
        place: Place::Here,
        readings: &[
            reading("blueprint_services_per_second", "services a blueprint of {1} creates (a no-op scheduled on each) per second, into a robot holding {0}, SQLite store, robot in the benchmark's process", "services/s", None),
            reading("blueprint_services_per_second_empty", "  the same blueprint into an empty robot (the baseline)", "services/s", None),
            reading("blueprint_size_ratio", "  holding {0} / empty: what the robot's size costs a blueprint", "x", Some(Bar::AtLeast(0.7))),
        ],
        full: &[1_000_000, 1_000],
        quick: &[20_000, 1_000],
        run: |_, n| Box::pin(async move { Ok(local::blueprint_services_per_second(n[0], n[1]).await?.to_vec()) }),
    },
    Figure {
        key: "round_trips_per_second_local",
        place: Place::Here,
        readings: &[reading("round_trips_per_second_local", "consumer -> producer round trips per second, same robot, {0} pairs, SQLite store, robot in the benchmark's process", "trips/s", Some(Bar::AtLeast(50_000.0)))],
        full: &[100, 2_000],
        quick: &[10, 200],
        run: |_, n| Box::pin(async move { Ok(vec![local::round_trips(StoreKind::Sqlite, n[0], n[1]).await?]) }),
    },
    Figure {
        key: "round_trips_per_second_local_memory",
        place: Place::Here,
        readings: &[reading("round_trips_per_second_local_memory", "consumer -> producer round trips per second, same robot, {0} pairs, in-memory store, robot in the benchmark's process", "trips/s", None)],
        full: &[100, 2_000],
        quick: &[10, 200],
        run: |_, n| Box::pin(async move { Ok(vec![local::round_trips(StoreKind::Memory, n[0], n[1]).await?]) }),
    },
    Figure {
        key: "round_trips_per_second_remote",
        place: Place::Servers,
        readings: &[reading("round_trips_per_second_remote", "consumer -> producer round trips per second, two `zrobot server start` processes on loopback (SQLite, JWTs), {0} pairs", "trips/s", Some(Bar::AtLeast(5_000.0)))],
        full: &[400, 50],
        quick: &[4, 50],
        run: |c, n| Box::pin(async move { Ok(vec![served::cross_robot(c.zrobot.as_deref(), n[0], n[1]).await?]) }),
    },
    Figure {
        key: "http_schedule",
        place: Place::Servers,
        readings: http_readings!("http_schedule"),
        full: &[8, 10],
        quick: &[8, 1],
        run: |c, n| Box::pin(async move { served::http_schedule(c.zrobot.as_deref(), n[0], n[1]).await }),
    },
    Figure {
        key: "http_schedule_32",
        place: Place::Servers,
        readings: http_readings!("http_schedule_32"),
        full: &[32, 10],
        quick: &[32, 1],
        run: |c, n| Box::pin(async move { served::http_schedule(c.zrobot.as_deref(), n[0], n[1]).await }),
    },
    Figure {
        key: "bytes_per_idle_service",
        place: Place::Servers,
        readings: &[reading("bytes_per_idle_service", "resident memory per idle service, {0} services created through the API of a `zrobot server start` process (SQLite)", "bytes", Some(Bar::AtMost(2_048.0)))],
        full: &[100_000],
        quick: &[2_000],
        run: |c, n| Box::pin(async move { Ok(vec![served::bytes_per_idle_service(c.zrobot.as_deref(), n[0]).await?]) }),
    },
    Figure {
        key: "restart_seconds",
        place: Place::Servers,
        readings: &[
            reading("restart_seconds", "restart after SIGKILL (`zrobot server start`, SQLite, `validate` hooks), {0} services and {1} finished tasks, until a task ran ok on each of {2} probed services", "s", Some(Bar::AtMost(3.0))),
            reading("restart_api_seconds", "  until the API answered", "s", None),
        ],
        full: &[100_000, 1_000_000, 100],
        quick: &[1_000, 10_000, 10],
        run: |c, n| Box::pin(async move { served::restart(c.zrobot.as_deref(), n[0], n[1], n[2]).await }),
    },
];
