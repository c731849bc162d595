//! How the history holds up across moves, interrupted moves and restarts:
//! what the conformance suite cannot reach without writing thousands of tasks.

use std::path::Path;

use serde_json::json;
use zrobot_core::store::{ServiceRecord, StoreOp};
use zrobot_core::task::{Priority, TaskRecord, TaskState};

use super::*;

fn service(name: &str) -> ServiceRecord {
    ServiceRecord {
        guid: Uuid::new_v4(),
        name: name.to_owned(),
        template_uid: "github.com/zrobot/templates/node/0.0.1".to_owned(),
        public: false,
        data: json!({}),
        state: Default::default(),
        secrets: Vec::new(),
        created: zrobot_core::time::now(),
    }
}

fn finished(service: &ServiceRecord, seq: u64) -> TaskRecord {
    TaskRecord {
        guid: Uuid::new_v4(),
        service_guid: service.guid,
        service_name: service.name.clone(),
        template_uid: service.template_uid.clone(),
        action_name: "install".to_owned(),
        args: json!({ "seq": seq }),
        priority: Priority::Normal,
        seq,
        state: TaskState::Ok,
        attempt: 1,
        created: zrobot_core::time::now(),
        started: Some(zrobot_core::time::now()),
        duration: Some(0.1),
        result: Some(json!(seq)),
        eco: None,
        trace: None,
    }
}

async fn history(store: &SqliteStore, service: &ServiceRecord) -> Vec<u64> {
    let tasks = store
        .finished_tasks(service.guid, usize::MAX)
        .await
        .expect("finished tasks");
    tasks.iter().map(|t| t.seq).collect()
}

fn count(path: &Path, table: &str) -> i64 {
    let conn = Connection::open(path).expect("a connection");
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .expect("a count")
}

#[tokio::test]
async fn moves_keep_every_task_once_and_in_order() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("robot.db");
    let services: Vec<ServiceRecord> = (0..3).map(|i| service(&format!("s{i}"))).collect();
    let expected = |i: u64, upto: u64| (0..upto).filter(|seq| seq % 3 == i).collect::<Vec<_>>();
    {
        let store = SqliteStore::open_file(&path, Retention::default(), |h| h.set_switch_at(8))
            .expect("open");
        let puts = services.iter().cloned().map(StoreOp::PutService).collect();
        store.commit(puts).await.expect("services");
        for seq in 0..60 {
            let task = finished(&services[(seq % 3) as usize], seq);
            store
                .commit(vec![StoreOp::PutTask(task)])
                .await
                .expect("a task");
        }
        for (i, svc) in services.iter().enumerate() {
            assert_eq!(history(&store, svc).await, expected(i as u64, 60));
        }
        // The writer moved some on its own, between commits.
        assert!(count(&path, "finished_tasks") > 0);
        store.compact().await.expect("compaction");
        for (i, svc) in services.iter().enumerate() {
            assert_eq!(history(&store, svc).await, expected(i as u64, 60));
        }
        assert_eq!(
            count(&path, "recent_tasks_a") + count(&path, "recent_tasks_b"),
            0
        );
        assert_eq!(count(&path, "finished_tasks"), 60);
    }
    let store = SqliteStore::open(&path, Retention::default()).expect("reopen");
    store
        .commit(vec![StoreOp::PutTask(finished(&services[0], 60))])
        .await
        .expect("a task");
    let mut after = expected(0, 60);
    after.push(60);
    assert_eq!(history(&store, &services[0]).await, after);
}

#[tokio::test]
async fn an_interrupted_move_is_finished_after_reopening() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("robot.db");
    let (a, b) = (service("a"), service("b"));
    {
        let store = SqliteStore::open(&path, Retention::default()).expect("open");
        let mut ops = vec![
            StoreOp::PutService(a.clone()),
            StoreOp::PutService(b.clone()),
        ];
        ops.extend(
            (0..20).map(|seq| StoreOp::PutTask(finished(if seq % 2 == 0 { &a } else { &b }, seq))),
        );
        store.commit(ops).await.expect("tasks");
    }
    // What a crash in the middle of a move leaves: part of one recent table
    // already in the history, and newer tasks in the other recent table.
    let conn = Connection::open(&path).expect("a connection");
    let columns = crate::history::HISTORY_COLUMNS;
    conn.execute(
        &format!(
            "INSERT INTO finished_tasks ({columns}) SELECT {columns} FROM recent_tasks_a \
             WHERE service_guid = ?1 AND id <= 10"
        ),
        [a.guid.as_bytes()],
    )
    .expect("a partial move");
    conn.execute_batch(&format!(
        "INSERT INTO recent_tasks_b ({columns}) SELECT {columns} FROM recent_tasks_a WHERE id > 15; \
         DELETE FROM recent_tasks_a WHERE id > 15;"
    ))
    .expect("newer tasks");
    drop(conn);

    let evens: Vec<u64> = (0..20).filter(|s| s % 2 == 0).collect();
    let odds: Vec<u64> = (0..20).filter(|s| s % 2 == 1).collect();
    {
        let store = SqliteStore::open(&path, Retention::default()).expect("reopen");
        assert_eq!(history(&store, &a).await, evens);
        assert_eq!(history(&store, &b).await, odds);
        store
            .commit(vec![StoreOp::PutTask(finished(&a, 20))])
            .await
            .expect("a task");
        store.compact().await.expect("compaction");
        let mut evens = evens.clone();
        evens.push(20);
        assert_eq!(history(&store, &a).await, evens);
        assert_eq!(history(&store, &b).await, odds);
        assert_eq!(
            count(&path, "recent_tasks_a") + count(&path, "recent_tasks_b"),
            0
        );
    }
    // Both recent tables are empty now: new ids still come after the old ones.
    let store = SqliteStore::open(&path, Retention::default()).expect("reopen");
    store
        .commit(vec![StoreOp::PutTask(finished(&b, 21))])
        .await
        .expect("a task");
    let mut odds = odds;
    odds.push(21);
    assert_eq!(history(&store, &b).await, odds);
}

#[tokio::test]
async fn a_task_finished_again_shows_once_at_the_end() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("robot.db");
    let store = SqliteStore::open(&path, Retention::default()).expect("open");
    let svc = service("svc");
    let (first, second) = (finished(&svc, 1), finished(&svc, 2));
    store
        .commit(vec![
            StoreOp::PutService(svc.clone()),
            StoreOp::PutTask(first.clone()),
            StoreOp::PutTask(second),
        ])
        .await
        .expect("tasks");
    let mut again = first.clone();
    again.result = Some(json!("again"));
    // Once from the recent table, once from the history.
    for moved in [false, true] {
        if moved {
            store.compact().await.expect("compaction");
        }
        store
            .commit(vec![StoreOp::PutTask(again.clone())])
            .await
            .expect("again");
        assert_eq!(history(&store, &svc).await, vec![2, 1]);
        let found = store.task(svc.guid, first.guid).await.expect("a task");
        assert_eq!(found, Some(again.clone()));
    }
}
