//! How the history holds up across indexing rounds, interrupted rounds,
//! restarts and the migration from the old layout:
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
        key: None,
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
async fn indexing_keeps_every_task_once_and_in_order() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("robot.db");
    let services: Vec<ServiceRecord> = (0..3).map(|i| service(&format!("s{i}"))).collect();
    let expected = |i: u64, upto: u64| (0..upto).filter(|seq| seq % 3 == i).collect::<Vec<_>>();
    {
        let store = SqliteStore::open_file(&path, Retention::default(), |h| h.set_index_at(8))
            .expect("open");
        let puts = services.iter().cloned().map(StoreOp::PutService).collect();
        store.commit(puts).await.expect("services");
        for seq in 0..60 {
            let task = finished(&services[(seq % 3) as usize], seq);
            store
                .commit(vec![StoreOp::PutTask(task)])
                .await
                .expect("a task");
            // Read between commits too: some tasks indexed, some not.
            if seq % 7 == 0 {
                let svc = (seq % 3) as usize;
                assert_eq!(
                    history(&store, &services[svc]).await,
                    expected(svc as u64, seq + 1)
                );
            }
        }
        for (i, svc) in services.iter().enumerate() {
            assert_eq!(history(&store, svc).await, expected(i as u64, 60));
        }
        // The writer indexed some on its own, between commits.
        assert!(count(&path, "done_by_service") > 0);
        store.compact().await.expect("compaction");
        for (i, svc) in services.iter().enumerate() {
            assert_eq!(history(&store, svc).await, expected(i as u64, 60));
        }
        assert_eq!(count(&path, "done_by_service"), 60);
        assert_eq!(count(&path, "done_tasks"), 60);
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
async fn an_interrupted_round_is_finished_after_reopening() {
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
    // What a crash in the middle of a round leaves: some services' tasks
    // indexed, but the round's end not recorded.
    let conn = Connection::open(&path).expect("a connection");
    conn.execute(
        "INSERT INTO done_by_service (service_guid, id) SELECT service_guid, id FROM done_tasks \
         WHERE service_guid = ?1 AND id <= 10",
        [a.guid.as_bytes()],
    )
    .expect("a partial round");
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
        assert_eq!(count(&path, "done_by_service"), 21);
    }
    // Everything indexed, then every task gone (as retention may do): new
    // ids still come after the old ones, so that none is taken as indexed.
    let conn = Connection::open(&path).expect("a connection");
    conn.execute_batch("DELETE FROM done_tasks; DELETE FROM done_by_service;")
        .expect("emptied");
    drop(conn);
    {
        let store = SqliteStore::open(&path, Retention::default()).expect("reopen");
        store
            .commit(vec![StoreOp::PutTask(finished(&b, 21))])
            .await
            .expect("a task");
        assert_eq!(history(&store, &b).await, vec![21]);
    }
    let store = SqliteStore::open(&path, Retention::default()).expect("reopen");
    assert_eq!(history(&store, &b).await, vec![21]);
}

/// The layout of schema version 2: a queue keyed by guid, two recent tables
/// and a history keyed by service.
#[tokio::test]
async fn a_version_2_database_keeps_its_queue_and_history() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("robot.db");
    let svc = service("old");
    let task = |seq: u64, state: &str| {
        format!(
            "x'{}', x'{}', 'old', 'github.com/zrobot/templates/node/0.0.1', 'install', '{{}}', 'normal', \
             {seq}, '{state}', 1, {}, NULL, NULL, NULL, NULL, NULL",
            hex(&Uuid::new_v4()),
            hex(&svc.guid),
            zrobot_core::time::now(),
        )
    };
    let columns =
        "guid, service_guid, service_name, template_uid, action_name, args, priority, seq, \
                   state, attempt, created, started, duration, result, eco, trace";
    {
        let mut conn = Connection::open(&path).expect("a connection");
        let tx = conn.transaction().expect("a transaction");
        for sql in &crate::schema::MIGRATIONS[..2] {
            tx.execute_batch(sql).expect("an old migration");
        }
        tx.pragma_update(None, "user_version", 2)
            .expect("a version");
        tx.execute_batch(&format!(
            "INSERT INTO waiting_tasks ({columns}) VALUES ({}), ({});
             INSERT INTO finished_tasks (id, {columns}) VALUES (1, {}), (2, {});
             -- Task 2 was being moved: in a recent table and in the history.
             INSERT INTO recent_tasks_a (id, {columns}) SELECT id, {columns} FROM finished_tasks WHERE id = 2;
             INSERT INTO recent_tasks_b (id, {columns}) VALUES (3, {});
             INSERT INTO store_meta (key, value) VALUES ('finished_id', 7);",
            task(11, "running"),
            task(10, "new"),
            task(1, "ok").replace("NULL, NULL, NULL, NULL, NULL", "NULL, NULL, '1', NULL, NULL"),
            task(2, "ok").replace("NULL, NULL, NULL, NULL, NULL", "NULL, NULL, '2', NULL, NULL"),
            task(3, "error"),
        ))
        .expect("old rows");
        tx.commit().expect("committed");
    }
    let store = SqliteStore::open(&path, Retention::default()).expect("migrated");
    let loaded = store.load().await.expect("loaded");
    assert_eq!(
        loaded.waiting.iter().map(|t| t.seq).collect::<Vec<_>>(),
        vec![10, 11]
    );
    assert_eq!(history(&store, &svc).await, vec![1, 2, 3]);
    store
        .commit(vec![StoreOp::PutTask(finished(&svc, 12))])
        .await
        .expect("a task");
    assert_eq!(history(&store, &svc).await, vec![1, 2, 3, 12]);
    // Ids go on after the highest the old layout had given.
    let conn = Connection::open(&path).expect("a connection");
    let newest: i64 = conn
        .query_row("SELECT max(id) FROM done_tasks", [], |r| r.get(0))
        .expect("an id");
    assert_eq!(newest, 8);
}

fn hex(guid: &Uuid) -> String {
    guid.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
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
    // Once not indexed yet, once indexed.
    for indexed in [false, true] {
        if indexed {
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

#[tokio::test]
async fn a_quiet_store_indexes_what_few_tasks_it_has() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("robot.db");
    let store = SqliteStore::open(&path, Retention::default()).expect("open");
    let svc = service("quiet");
    let mut ops = vec![StoreOp::PutService(svc.clone())];
    ops.extend((0..5).map(|seq| StoreOp::PutTask(finished(&svc, seq))));
    store.commit(ops).await.expect("tasks");
    assert_eq!(
        count(&path, "done_by_service"),
        0,
        "far below a round's size"
    );
    // Once the writer has been idle a while, without compaction.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while count(&path, "done_by_service") < 5 {
        assert!(std::time::Instant::now() < deadline, "never indexed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(history(&store, &svc).await, vec![0, 1, 2, 3, 4]);
    assert_eq!(crate::history::lock(&store.unindexed).len(), 0);
}
