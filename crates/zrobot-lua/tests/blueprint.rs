//! Blueprints executed against a real robot: services created in order,
//! existing ones updated, actions scheduled, and all or nothing on failure.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use zrobot_core::blueprint::Blueprint;
use zrobot_core::robot::BlueprintCaller;
use zrobot_core::{Service, TaskState};

const NODE_LUA: &str = r#"
local n = {}
function n.install(self, args) self.data.installed = true; return args end
function n.update_data(self, new) self.data.hostname = new.hostname end
return n
"#;
const NODE_YAML: &str = "version: 1.2.0\ndata: {type: object, required: [hostname], properties: {hostname: {type: string}, installed: {type: boolean, default: false}}}\n";
const VM_LUA: &str = r#"
local v = {}
function v.init(self) if self.data.node == "explode" then error("init refused") end end
function v.install(self, args) return {node = self.data.node, force = args.force} end
function v.start(self, args) return "started" end
return v
"#;
const VM_YAML: &str = "version: 1.0.0\ndata: {type: object, properties: {node: {type: string}}}\n";

fn repo() -> Repo {
    let r = Repo::new();
    r.template("node", NODE_YAML, NODE_LUA);
    r.template("vm", VM_YAML, VM_LUA);
    r
}

fn allow_all(_: &Service) -> bool {
    true
}

fn secret() -> (String, String) {
    ("s3cret".into(), "hash-of-s3cret".into())
}

const CALLER: BlueprintCaller<'static> = BlueprintCaller {
    may_manage: &allow_all,
    new_secret: &secret,
};

const DESIGN_EXAMPLE: &str = r#"
services:
  - github.com/acme/templates/node/1.2.0__node1:
      hostname: 10.0.0.1
  - vm__vm1:
      node: node1
actions:
  - template: github.com/acme/templates/node/1.2.0
    service: node1
    actions: [install]
  - service: vm1
    actions: [install, start]
    args: {force: true}
"#;

#[tokio::test]
async fn the_design_example_creates_and_schedules() {
    let robot = robot();
    let r = repo();
    load(&robot, &r);
    let bp = Blueprint::from_yaml(DESIGN_EXAMPLE).unwrap();
    let out = robot.execute_blueprint(&bp, &CALLER).await.unwrap();
    let names: Vec<&str> = out.created.iter().map(|(s, _)| s.name.as_str()).collect();
    assert_eq!(names, ["node1", "vm1"]);
    assert_eq!(out.created[0].1, "s3cret");
    assert_eq!(
        out.created[0].0.secret_hashes(),
        vec!["hash-of-s3cret".to_string()]
    );
    let actions: Vec<String> = out.tasks.iter().map(|t| t.action_name()).collect();
    assert_eq!(actions, ["install", "install", "start"]);
    for t in &out.tasks {
        let r = tokio::time::timeout(Duration::from_secs(10), t.done())
            .await
            .unwrap();
        assert_eq!(r.state, TaskState::Ok, "{:?}", r.eco);
    }
    assert_eq!(
        out.tasks[1].record().result,
        Some(json!({"node": "node1", "force": true}))
    );
    assert_eq!(
        robot.service_by_name("node1").unwrap().data()["installed"],
        json!(true)
    );

    // Again: existing services get their data through update_data.
    let again = Blueprint::from_yaml(
        "services:\n  - node__node1: {hostname: 10.0.0.9}\n  - vm__vm1: {node: other}\n",
    )
    .unwrap();
    let out = robot.execute_blueprint(&again, &CALLER).await.unwrap();
    assert!(out.created.is_empty());
    assert_eq!(out.updated.len(), 2);
    assert_eq!(
        robot.service_by_name("node1").unwrap().data()["hostname"],
        json!("10.0.0.9")
    );
    // vm has no update_data hook: its data stays.
    assert_eq!(
        robot.service_by_name("vm1").unwrap().data()["node"],
        json!("node1")
    );
}

#[tokio::test]
async fn actions_without_filters_reach_every_service() {
    let robot = robot();
    let r = repo();
    load(&robot, &r);
    create(&robot, "vm", "old", json!({"node": "n"})).await;
    let bp =
        Blueprint::from_yaml("services:\n  - vm__new: {node: n}\nactions:\n  actions: start\n")
            .unwrap();
    let out = robot.execute_blueprint(&bp, &CALLER).await.unwrap();
    let mut targets: Vec<String> = out.tasks.iter().map(|t| t.record().service_name).collect();
    targets.sort();
    assert_eq!(targets, ["new", "old"]);
}

async fn fails_and_leaves_nothing(yaml: &str, want: &str) {
    let robot = robot();
    let r = repo();
    load(&robot, &r);
    create(&robot, "vm", "before", json!({"node": "n"})).await;
    let bp = match Blueprint::from_yaml(yaml) {
        Ok(bp) => bp,
        Err(e) => {
            assert!(e.to_string().contains(want), "{e}");
            return;
        }
    };
    let err = robot
        .execute_blueprint(&bp, &CALLER)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(want), "{err} does not contain {want}");
    let names: Vec<String> = robot
        .find_services(&Default::default())
        .iter()
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(names, ["before"], "{yaml}");
    let before = robot.service_by_name("before").unwrap();
    assert!(robot.tasks(&before, false).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_failing_blueprint_leaves_nothing_behind() {
    fails_and_leaves_nothing(
        "services:\n  - node__n1: {hostname: h}\n  - vm__v1: {node: explode}\n",
        "services[1] (vm__v1): init of service `v1` failed",
    )
    .await;
    fails_and_leaves_nothing(
        "services:\n  - node__n1: {hostname: h}\nactions:\n  - service: n1\n    actions: [install, nosuch]\n",
        "actions[0]: service `n1`: template github.com/acme/templates/node/1.2.0 has no action `nosuch`",
    )
    .await;
    fails_and_leaves_nothing(
        "services:\n  - node__n1: {hostname: 5}\n",
        "services[0] (node__n1): invalid data",
    )
    .await;
    fails_and_leaves_nothing(
        "services:\n  - nosuch__n1: {}\n",
        "no template matches `nosuch`",
    )
    .await;
    fails_and_leaves_nothing(
        "services:\n  - node__bad/name: {hostname: h}\n",
        "invalid service name",
    )
    .await;
    fails_and_leaves_nothing(
        "services:\n  - node__n1: {hostname: h}\n  - node__before: {hostname: h}\n",
        "exists already",
    )
    .await;
    fails_and_leaves_nothing(
        "services:\n  - node__n1: {hostname: h}\nactions:\n  - service: nobody\n    actions: [install]\n",
        "actions[0]: matches no service",
    )
    .await;
    fails_and_leaves_nothing(
        "services:\n  - node__n1: {hostname: h}\nactions:\n  - service: n1\n",
        "`actions` is missing",
    )
    .await;
    fails_and_leaves_nothing("services:\n  - noname: {}\n", "the key must be").await;
}

/// Every problem of a blueprint is told at once, each naming its block, up
/// to ten; nothing is made.
#[tokio::test]
async fn a_blueprint_with_several_problems_names_each() {
    let three = "services:\n  - node__n1: {hostname: 5}\n  - nosuch__x: {}\n  - node__n3: {hostname: h, }\n  - node__bad/name: {hostname: h}\n";
    let robot = robot();
    let r = repo();
    load(&robot, &r);
    let bp = Blueprint::from_yaml(three).unwrap();
    let err = robot
        .execute_blueprint(&bp, &CALLER)
        .await
        .unwrap_err()
        .to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[0].starts_with("services[0] (node__n1): invalid data"),
        "{err}"
    );
    assert!(
        lines[1].starts_with("services[1] (nosuch__x): no template matches"),
        "{err}"
    );
    assert!(
        lines[2].starts_with("services[3] (node__bad/name): invalid service name"),
        "{err}"
    );
    assert!(robot.find_services(&Default::default()).is_empty());

    // Action blocks too, once the services are right.
    let actions = "services:\n  - node__n1: {hostname: h}\nactions:\n  - {service: n1, actions: [instal]}\n  - {service: nobody, actions: [install]}\n";
    let err = robot
        .execute_blueprint(&Blueprint::from_yaml(actions).unwrap(), &CALLER)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("actions[0]: service `n1`: template"), "{err}");
    assert!(err.contains("\nactions[1]: matches no service"), "{err}");
    assert!(robot.find_services(&Default::default()).is_empty());

    // Past ten, the rest are counted.
    let many: String = (0..14)
        .map(|i| format!("  - nosuch__s{i}: {{}}\n"))
        .collect();
    let err = robot
        .execute_blueprint(
            &Blueprint::from_yaml(&format!("services:\n{many}")).unwrap(),
            &CALLER,
        )
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(err.lines().count(), 11, "{err}");
    assert!(err.ends_with("(and 4 more problem(s))"), "{err}");

    // Parsing gathers its problems the same way.
    let err = Blueprint::from_yaml("services:\n  - noname: {}\n  - a__b: 5\nactoins: []\n")
        .unwrap_err()
        .to_string();
    assert_eq!(err.lines().count(), 3, "{err}");
    assert!(err.contains("unknown key `actoins`"), "{err}");
    assert!(
        err.contains("services[0] (noname): the key must be"),
        "{err}"
    );
    assert!(
        err.contains("services[1] (a__b): the service data must be a mapping"),
        "{err}"
    );
}

#[tokio::test]
async fn services_the_caller_may_not_manage_are_not_touched() {
    let robot = robot();
    let r = repo();
    load(&robot, &r);
    create(&robot, "vm", "theirs", json!({"node": "n"})).await;
    fn only_mine(s: &Service) -> bool {
        s.name != "theirs"
    }
    let caller = BlueprintCaller {
        may_manage: &only_mine,
        new_secret: &secret,
    };
    let bp =
        Blueprint::from_yaml("services:\n  - vm__mine: {node: n}\nactions:\n  actions: start\n")
            .unwrap();
    let out = robot.execute_blueprint(&bp, &caller).await.unwrap();
    assert_eq!(out.tasks.len(), 1);
    assert_eq!(out.tasks[0].record().service_name, "mine");
    let bp = Blueprint::from_yaml("services:\n  - vm__theirs: {node: x}\n").unwrap();
    let err = robot.execute_blueprint(&bp, &caller).await.unwrap_err();
    assert!(err.to_string().contains("may not manage"), "{err}");
}

#[tokio::test]
async fn an_action_block_naming_a_service_reaches_only_that_one() {
    let robot = robot();
    let r = repo();
    load(&robot, &r);
    create(&robot, "vm", "mine", json!({"node": "n"})).await;
    create(&robot, "vm", "theirs", json!({"node": "n"})).await;
    create(&robot, "vm", "other", json!({"node": "n"})).await;
    fn not_theirs(s: &Service) -> bool {
        s.name != "theirs"
    }
    let caller = BlueprintCaller {
        may_manage: &not_theirs,
        new_secret: &secret,
    };
    // A service of the robot, not of the blueprint, and one of the blueprint.
    let bp = Blueprint::from_yaml(
        "services:\n  - vm__new: {node: n}\nactions:\n  - service: mine\n    actions: [start]\n  - service: new\n    actions: [start]\n",
    )
    .unwrap();
    let out = robot.execute_blueprint(&bp, &caller).await.unwrap();
    let names: Vec<String> = out.tasks.iter().map(|t| t.record().service_name).collect();
    assert_eq!(names, ["mine", "new"]);
    // Named but not the caller's to manage, named but missing, and named
    // with a template filter it does not match: each refused, nothing made.
    for (block, why) in [
        ("  - service: theirs\n    actions: [start]\n", "theirs"),
        ("  - service: ghost\n    actions: [start]\n", "ghost"),
        (
            "  - service: mine\n    template: node\n    actions: [install]\n",
            "node filter",
        ),
    ] {
        let bp = Blueprint::from_yaml(&format!(
            "services:\n  - vm__fresh: {{node: n}}\nactions:\n{block}"
        ))
        .unwrap();
        let err = robot.execute_blueprint(&bp, &caller).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("matches no service you may manage"),
            "{why}: {err}"
        );
        assert!(robot.service_by_name("fresh").is_none(), "{why}");
    }
}
