//! A request retried with its `Idempotency-Key` gets the task of its first
//! try: sent twice in a row, sent many times at once, and sent again after
//! the robot was killed and started again. A real robot process on a real
//! SQLite file.

mod util;

use std::time::Duration;

use serde_json::json;
use util::*;
use uuid::Uuid;
use zrobot_client::wire::TaskState;
use zrobot_client::{Client, ScheduleOptions};

const NOTE_LUA: &str = r#"
local n = {}
function n.note(self, args)
  robot.sleep(0.01)
  table.insert(self.data.notes, args.id)
end
function n.other(self) end
return n
"#;
const NOTE_YAML: &str = "version: 1.0.0\ndata: {type: object, properties: {notes: {type: array, items: {type: string}, default: []}}}\n";

fn keyed(key: &str) -> ScheduleOptions {
    ScheduleOptions {
        idempotency_key: Some(key.to_owned()),
        ..ScheduleOptions::default()
    }
}

async fn notes(client: &Client, svc: Uuid) -> Vec<String> {
    let data = client.service(svc).await.unwrap().data.unwrap();
    serde_json::from_value(data["notes"].clone()).unwrap()
}

async fn wait_ok(client: &Client, svc: Uuid, task: Uuid) {
    let done = client
        .wait_task(svc, task, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(done.state, TaskState::Ok, "{done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_gets_the_first_task_concurrently_and_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = template_repo(
        &tmp.path().join("repo"),
        &[
            ("templates/note/template.yaml", NOTE_YAML),
            ("templates/note/note.lua", NOTE_LUA),
        ],
    );
    let repo_arg = format!("file://{}", repo.display());
    let mut robot = RobotProcess::start(&tmp.path().join("data"), &["--god", "-T", &repo_arg]);
    let client = robot.god_client();
    let svc = new_service(&client, "note", "notes").await;

    // Twice in a row: the second gets the first's task.
    let first = client
        .schedule_with(svc, "note", json!({"id": "a"}), &keyed("key-a"))
        .await
        .unwrap();
    let again = client
        .schedule_with(svc, "note", json!({"id": "a"}), &keyed("key-a"))
        .await
        .unwrap();
    assert_eq!(again.guid, first.guid);

    // Many at once, each on its own connection, opened beforehand so that
    // they arrive together: one task, whichever request got there first.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(32));
    let mut sends = Vec::new();
    for _ in 0..32 {
        let client = robot.god_client();
        client.robot_info().await.unwrap();
        let start = start.clone();
        sends.push(tokio::spawn(async move {
            start.wait().await;
            client
                .schedule_with(svc, "note", json!({"id": "b"}), &keyed("key-b"))
                .await
                .unwrap()
                .guid
        }));
    }
    let mut guids = Vec::new();
    for send in sends {
        guids.push(send.await.unwrap());
    }
    guids.sort();
    guids.dedup();
    assert_eq!(guids.len(), 1, "one task for one key: {guids:?}");
    wait_ok(&client, svc, first.guid).await;
    wait_ok(&client, svc, guids[0]).await;
    assert_eq!(notes(&client, svc).await, ["a", "b"]);

    // The same key for another action is a client's mistake.
    let err = client
        .schedule_with(svc, "other", json!({}), &keyed("key-a"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("key-a"), "{err}");
    assert_eq!(err.status(), Some(409), "{err}");

    // A key that cannot be one is refused, and nothing is scheduled.
    let long = "k".repeat(300);
    let err = client
        .schedule_with(svc, "note", json!({"id": "c"}), &keyed(&long))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");

    // A waiting task keeps its key across a crash too.
    let waiting = client
        .schedule_with(svc, "note", json!({"id": "d"}), &keyed("key-d"))
        .await
        .unwrap();
    robot.restart();
    let client = robot.god_client();
    for (key, id, task) in [
        ("key-a", "a", first.guid),
        ("key-b", "b", guids[0]),
        ("key-d", "d", waiting.guid),
    ] {
        let retried = client
            .schedule_with(svc, "note", json!({ "id": id }), &keyed(key))
            .await
            .unwrap();
        assert_eq!(retried.guid, task, "{key} after a restart");
    }
    wait_ok(&client, svc, waiting.guid).await;
    assert_eq!(notes(&client, svc).await, ["a", "b", "d"]);
    let all = client.tasks(svc, true).await.unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
}
