//! Moving services to a newer template version: waiting tasks kept, migrate
//! run, and a failed move leaves the service where it was.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use zrobot_core::{TagState, TaskState};

const V1_LUA: &str = r#"
local t = {}
function t.slow(self) robot.sleep(0.3) end
function t.note(self, args) table.insert(self.data.notes, "v1:" .. args.what) end
return t
"#;

const V2_LUA: &str = r#"
local t = {}
function t.migrate(self, from)
  self.data.migrated_from = from
  if self.data.refuse then error("cannot migrate this one") end
end
function t.slow(self) robot.sleep(0.3) end
function t.note(self, args) table.insert(self.data.notes, "v2:" .. args.what) end
return t
"#;

const V1_YAML: &str = "version: 1.9.0\ndata: {type: object, properties: {notes: {type: array, default: []}, refuse: {type: boolean, default: false}}}\n";
const V2_YAML: &str = "version: 1.10.0\ndata: {type: object, properties: {notes: {type: array, default: []}, refuse: {type: boolean, default: false}, migrated_from: {type: string}, level: {type: integer, default: 3}}}\n";

#[tokio::test]
async fn services_move_to_the_newer_version_with_their_waiting_tasks() {
    let robot = robot();
    let v1 = Repo::new();
    v1.template("thing", V1_YAML, V1_LUA);
    load(&robot, &v1);
    let a = create(&robot, "thing", "a", json!({})).await;
    let b = create(&robot, "thing", "b", json!({"refuse": true})).await;
    let slow = robot.schedule(&a, "slow", json!({})).await.unwrap();
    let queued = robot
        .schedule(&a, "note", json!({"what": "queued"}))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || slow.state()
            == TaskState::Running)
        .await
    );

    let v2 = Repo::new();
    v2.template("thing", V2_YAML, V2_LUA);
    load(&robot, &v2);
    let report = robot.upgrade_services().await;
    assert_eq!(
        report.moved,
        vec![(
            "a".to_string(),
            "github.com/acme/templates/thing/1.9.0".to_string(),
            "github.com/acme/templates/thing/1.10.0".to_string()
        )]
    );
    assert_eq!(report.failed.len(), 1);
    assert!(
        report.failed[0].2.contains("cannot migrate this one"),
        "{:?}",
        report.failed
    );

    // The running task ended first; the waiting one ran on the new code.
    assert_eq!(slow.record().state, TaskState::Ok);
    let r = tokio::time::timeout(Duration::from_secs(10), queued.done())
        .await
        .unwrap();
    assert_eq!(r.state, TaskState::Ok, "{:?}", r.eco);
    assert_eq!(a.template_uid(), "github.com/acme/templates/thing/1.10.0");
    assert_eq!(a.data()["notes"], json!(["v2:queued"]));
    assert_eq!(a.data()["migrated_from"], json!("1.9.0"));
    assert_eq!(a.data()["level"], json!(3));
    assert!(a
        .log_lines()
        .iter()
        .any(|l| l.message.contains("moved from")));

    assert_eq!(b.template_uid(), "github.com/acme/templates/thing/1.9.0");
    assert_eq!(
        b.state_get("upgrade", None).get("1.10.0"),
        Some(&TagState::Error)
    );
    assert!(b
        .log_lines()
        .iter()
        .any(|l| l.message.contains("cannot migrate this one")));
    assert!(b.data().get("migrated_from").is_none());
    assert_eq!(
        run(&robot, &b, "note", json!({"what": "still"}))
            .await
            .state,
        TaskState::Ok
    );
    assert_eq!(b.data()["notes"], json!(["v1:still"]));
}

/// A move that failed leaves `upgrade/<version>=error`; a later move that
/// works clears it, and any other earlier one: the state table tells the
/// last move, not every attempt.
#[tokio::test]
async fn a_successful_move_clears_earlier_upgrade_errors() {
    let robot = robot();
    let v1 = Repo::new();
    v1.template("thing", V1_YAML, V1_LUA);
    load(&robot, &v1);
    let b = create(&robot, "thing", "b", json!({"refuse": true})).await;
    let v2 = Repo::new();
    v2.template("thing", V2_YAML, V2_LUA);
    load(&robot, &v2);
    let report = robot.upgrade_services().await;
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(
        b.state_get("upgrade", None).get("1.10.0"),
        Some(&TagState::Error)
    );

    // 1.11.0 migrates every service: b moves, and its old error goes.
    let v3 = Repo::new();
    let fixed = V2_LUA.replace(
        "if self.data.refuse then error(\"cannot migrate this one\") end",
        "",
    );
    v3.template("thing", &V2_YAML.replace("1.10.0", "1.11.0"), &fixed);
    load(&robot, &v3);
    let report = robot.upgrade_services().await;
    assert_eq!(report.failed, vec![], "{report:?}");
    assert_eq!(b.template_uid(), "github.com/acme/templates/thing/1.11.0");
    assert!(
        b.state_get("upgrade", None).is_empty(),
        "{:?}",
        b.state_get("upgrade", None)
    );
}
