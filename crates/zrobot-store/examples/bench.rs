use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;
use zrobot_core::store::{Retention, ServiceRecord, Store, StoreOp};
use zrobot_core::task::{Priority, TaskRecord, TaskState};
use zrobot_store::SqliteStore;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or("full".into());
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let inflight: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(4000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let path = dir.path().join("bench.db");
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(
                &path,
                if std::env::var("NORET").is_ok() {
                    Retention {
                        max_tasks: usize::MAX,
                        max_age_secs: f64::INFINITY,
                    }
                } else {
                    Retention::default()
                },
            )
            .unwrap(),
        );
        let services: Vec<ServiceRecord> = (0..1000)
            .map(|i| ServiceRecord {
                guid: Uuid::new_v4(),
                name: format!("svc{i}"),
                template_uid: "github.com/x/y/node/0.0.1".into(),
                public: false,
                data: json!({"i": i, "name": "node"}),
                state: Default::default(),
                secrets: vec!["h".into()],
                created: zrobot_core::time::now(),
            })
            .collect();
        store
            .commit(services.iter().cloned().map(StoreOp::PutService).collect())
            .await
            .unwrap();
        let done = Arc::new(AtomicU64::new(0));
        let seq = Arc::new(AtomicU64::new(0));
        let stop = Instant::now() + Duration::from_secs(secs);
        let mut set = tokio::task::JoinSet::new();
        for w in 0..inflight {
            let svc = services[w % services.len()].clone();
            let store = store.clone();
            let done = done.clone();
            let seq = seq.clone();
            let mode = mode.clone();
            set.spawn(async move {
                let mut n = 0u64;
                while Instant::now() < stop {
                    let mut t = TaskRecord {
                        guid: Uuid::new_v4(),
                        service_guid: svc.guid,
                        service_name: svc.name.clone(),
                        template_uid: svc.template_uid.clone(),
                        action_name: "noop".into(),
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
                    };
                    if mode == "full" {
                        store
                            .commit(vec![StoreOp::PutTask(t.clone())])
                            .await
                            .unwrap();
                        let started = zrobot_core::time::now();
                        drop(store.commit(vec![StoreOp::TaskStarted {
                            guid: t.guid,
                            attempt: 1,
                            started,
                        }]));
                        t.started = Some(started);
                        t.attempt = 1;
                    }
                    t.state = TaskState::Ok;
                    t.duration = Some(0.0001);
                    t.result = Some(json!(null));
                    n += 1;
                    store
                        .commit(vec![
                            StoreOp::PutTask(t),
                            StoreOp::SaveData {
                                service: svc.guid,
                                data: Arc::new(json!({"n": n, "name": "node"})),
                            },
                        ])
                        .await
                        .unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let start = Instant::now();
        let mut last = 0;
        let mut last_t = start;
        while Instant::now() < stop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let d = done.load(Ordering::Relaxed);
            let now = Instant::now();
            println!(
                "{:>5.1}s  {:>8.0} tasks/s  total {d}",
                (now - start).as_secs_f64(),
                (d - last) as f64 / (now - last_t).as_secs_f64()
            );
            last = d;
            last_t = now;
        }
        while set.join_next().await.is_some() {}
        let total = done.load(Ordering::Relaxed);
        let mut per: std::collections::BTreeMap<String, f64> = Default::default();
        for e in std::fs::read_dir("/proc/self/task").unwrap() {
            let p = e.unwrap().path();
            let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
            let name = std::fs::read_to_string(p.join("comm"))
                .unwrap_or_default()
                .trim()
                .to_string();
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            let f: Vec<&str> = after.split(' ').collect();
            let cpu = (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0;
            *per.entry(name).or_default() += cpu;
        }
        println!("cpu seconds per thread: {per:?}");
        let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
        println!(
            "{}",
            io.lines()
                .filter(|l| l.starts_with("write_bytes") || l.starts_with("wchar"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let w = per.get("zrobot-store-wr").copied().unwrap_or(0.0);
        println!(
            "writer µs/task {:.2}  tokio µs/task {:.2}",
            w * 1e6 / total as f64,
            per.get("tokio-rt-worker").copied().unwrap_or(0.0) * 1e6 / total as f64
        );
        println!(
            "mean {:.0} tasks/s",
            total as f64 / start.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        let loaded = store.load().await.unwrap();
        println!(
            "load: {} services {} waiting in {:?}",
            loaded.services.len(),
            loaded.waiting.len(),
            t.elapsed()
        );
        let t = Instant::now();
        let f = store
            .finished_tasks(services[0].guid, usize::MAX)
            .await
            .unwrap();
        println!("finished_tasks: {} in {:?}", f.len(), t.elapsed());
        drop(store);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!("db size {} MB", size / 1_000_000);
    });
}
