//! How many tasks per second the store makes durable, the way a robot uses
//! it: 1,000 services and many tasks at once, each scheduled (a waiting task,
//! awaited), started (not awaited) and finished with new service data
//! (awaited), with the default retention. With `completions`, tasks are only
//! finished.
//!
//! `cargo run --release -p zrobot-store --example throughput -- [seconds] [tasks at once] [completions]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;
use zrobot_core::store::{Retention, ServiceRecord, Store, StoreOp};
use zrobot_core::task::{Priority, TaskRecord, TaskState};
use zrobot_store::SqliteStore;

const SERVICES: usize = 1000;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);
    let at_once: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let lifecycle = args.next().as_deref() != Some("completions");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(seconds, at_once, lifecycle))
}

async fn run(seconds: u64, at_once: usize, lifecycle: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(
        &dir.path().join("robot.db"),
        Retention::default(),
    )?);
    let services: Vec<ServiceRecord> = (0..SERVICES)
        .map(|i| ServiceRecord {
            guid: Uuid::new_v4(),
            name: format!("node{i}"),
            template_uid: "github.com/zrobot/templates/node/0.0.1".to_owned(),
            public: false,
            data: json!({ "runs": 0 }),
            state: Default::default(),
            secrets: Vec::new(),
            created: zrobot_core::time::now(),
        })
        .collect();
    store
        .commit(services.iter().cloned().map(StoreOp::PutService).collect())
        .await?;

    let done = Arc::new(AtomicU64::new(0));
    let seq = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..at_once {
        let (svc, store, done, seq) = (
            services[i % SERVICES].clone(),
            store.clone(),
            done.clone(),
            seq.clone(),
        );
        tasks.spawn(async move {
            let mut runs = 0u64;
            while Instant::now() < stop {
                let mut task = TaskRecord {
                    guid: Uuid::new_v4(),
                    service_guid: svc.guid,
                    service_name: svc.name.clone(),
                    template_uid: svc.template_uid.clone(),
                    action_name: "noop".to_owned(),
                    args: json!({}),
                    priority: Priority::Normal,
                    seq: seq.fetch_add(1, Ordering::Relaxed),
                    state: TaskState::New,
                    attempt: 0,
                    created: zrobot_core::time::now(),
                    started: None,
                    duration: None,
                    result: None,
                    eco: None,
                    trace: None,
                    key: None,
                };
                if lifecycle {
                    store.commit(vec![StoreOp::PutTask(task.clone())]).await?;
                    let started = zrobot_core::time::now();
                    drop(store.commit(vec![StoreOp::TaskStarted {
                        guid: task.guid,
                        seq: task.seq,
                        attempt: 1,
                        started,
                    }]));
                    task.attempt = 1;
                    task.started = Some(started);
                }
                runs += 1;
                task.state = TaskState::Ok;
                task.duration = Some(0.0001);
                task.result = Some(json!(null));
                store
                    .commit(vec![
                        StoreOp::PutTask(task),
                        StoreOp::SaveData {
                            service: svc.guid,
                            data: Arc::new(json!({ "runs": runs })),
                        },
                    ])
                    .await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }

    let start = Instant::now();
    let mut last = (start, 0);
    while Instant::now() < stop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (now, total) = (Instant::now(), done.load(Ordering::Relaxed));
        let rate = (total - last.1) as f64 / (now - last.0).as_secs_f64();
        println!(
            "{:>5.1} s {rate:>10.0} tasks/s",
            (now - start).as_secs_f64()
        );
        last = (now, total);
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    let total = done.load(Ordering::Relaxed);
    println!(
        "{} {total} tasks in {:.1} s: {:.0} tasks/s",
        if lifecycle {
            "scheduled, started and finished"
        } else {
            "finished"
        },
        start.elapsed().as_secs_f64(),
        total as f64 / start.elapsed().as_secs_f64()
    );
    Ok(())
}
