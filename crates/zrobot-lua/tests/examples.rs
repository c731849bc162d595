//! The example template repository (`examples/`) at work: its node, vm and
//! capacity templates run a small simulated cloud through the public API,
//! and its demo blueprint names only what those templates define.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use zrobot_core::{RepoId, Robot, Service, ServiceFilter, TagState, Task, TaskRecord, TaskState};

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn load_examples(robot: &Robot) {
    let load = robot.load_repository(
        &examples_dir(),
        &RepoId::new("github.com", "zrobot", "examples"),
    );
    assert!(load.errors.is_empty(), "template errors: {:?}", load.errors);
    let mut uids: Vec<String> = load.templates.iter().map(|t| t.uid.to_string()).collect();
    uids.sort();
    assert_eq!(
        uids,
        [
            "github.com/zrobot/examples/capacity/1.1.0",
            "github.com/zrobot/examples/node/1.0.0",
            "github.com/zrobot/examples/vm/1.1.0",
        ]
    );
}

fn tag(svc: &Service, category: &str, tag: &str) -> Option<TagState> {
    svc.state_get(category, Some(tag)).get(tag).copied()
}

/// What a node's monitor last saw.
fn network(node: &Service) -> Option<TagState> {
    tag(node, "network", "reachable")
}

/// Waits for a task scheduled earlier (bounded, so a bug fails instead of hanging).
async fn finished(task: &Arc<Task>) -> TaskRecord {
    tokio::time::timeout(Duration::from_secs(30), task.done())
        .await
        .unwrap_or_else(|_| panic!("{} did not finish within 30s", task.action_name()))
}

/// The result of a task that must have ended well.
fn ok(record: &TaskRecord) -> Value {
    assert_eq!(
        record.state,
        TaskState::Ok,
        "`{}` of {} failed: {:?}",
        record.action_name,
        record.service_name,
        record.eco
    );
    record.result.clone().unwrap_or(Value::Null)
}

fn vm_names(node: &Service) -> Vec<String> {
    node.data()["vms"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[tokio::test]
async fn each_template_has_the_actions_its_manifest_and_readme_name() {
    let robot = robot();
    load_examples(&robot);
    let actions = |t: &str| robot.templates().resolve(t).unwrap().actions().to_vec();
    assert_eq!(
        actions("node"),
        [
            "create_vm",
            "delete_vm",
            "info",
            "install",
            "monitor",
            "uninstall"
        ]
    );
    assert_eq!(actions("vm"), ["install", "start", "uninstall"]);
    assert_eq!(actions("capacity"), ["place", "report"]);
}

#[tokio::test]
async fn the_examples_run_a_small_cloud() {
    let robot = robot();
    load_examples(&robot);
    let tmp = tempfile::tempdir().unwrap();
    let health = tmp.path().join("node1.health");
    std::fs::write(&health, "up\n").unwrap();

    // A node; the schema fills in every default, nested ones too.
    let node1 = create(
        &robot,
        "node",
        "node1",
        json!({"hostname": "node1.example.com", "capacity": {"memory": 32768}, "health_file": path_str(&health)}),
    )
    .await;
    assert_eq!(node1.data()["capacity"], json!({"memory": 32768, "cpu": 8}));
    assert_eq!(node1.data()["subnet"], json!("10.0.0"));
    assert_eq!(node1.data()["vms"], json!({}));

    // The recurring monitor runs on its own from creation on.
    assert!(
        eventually(Duration::from_secs(10), || {
            network(&node1) == Some(TagState::Ok) && node1.data()["checks"].as_u64() >= Some(1)
        })
        .await,
        "monitor did not run: {:?} {}",
        node1.state(),
        node1.data()
    );

    // Two vms install at once; the node's task list places them one at a time.
    let web = create(
        &robot,
        "vm",
        "web",
        json!({"node": "node1", "memory": 2048}),
    )
    .await;
    let db = create(
        &robot,
        "vm",
        "db",
        json!({"node": "node1", "cpu": 2, "boot_dir": path_str(tmp.path()), "boot_after": 3}),
    )
    .await;
    assert_eq!(db.data()["memory"], json!(1024));
    let web_install = robot.schedule(&web, "install", json!({})).await.unwrap();
    let db_install = robot.schedule(&db, "install", json!({})).await.unwrap();
    let web_result = ok(&finished(&web_install).await);
    ok(&finished(&db_install).await);
    let web_ip = web.data()["ip"].as_str().unwrap().to_owned();
    let db_ip = db.data()["ip"].as_str().unwrap().to_owned();
    let ips: BTreeSet<&str> = [web_ip.as_str(), db_ip.as_str()].into();
    assert_eq!(ips, BTreeSet::from(["10.0.0.2", "10.0.0.3"]));
    assert_eq!(web_result, json!({"node": "node1", "ip": web_ip}));
    assert_eq!(
        node1.data()["vms"]["web"],
        json!({"ip": web_ip, "memory": 2048, "cpu": 1})
    );
    assert_eq!(
        node1.data()["vms"]["db"],
        json!({"ip": db_ip, "memory": 1024, "cpu": 2})
    );
    assert_eq!(tag(&web, "actions", "install"), Some(TagState::Ok));
    assert_eq!(tag(&db, "actions", "install"), Some(TagState::Ok));

    // db answers from its third boot try: `start` fails twice, and the retry
    // policy runs it until it succeeds.
    let start = run(&robot, &db, "start", json!({})).await;
    assert_eq!(ok(&start), json!({"ip": db_ip, "tries": 3}));
    assert_eq!(start.attempt, 3);
    let eco = start.eco.expect("the failed runs leave an eco");
    assert_eq!(eco.count, 2);
    assert!(
        eco.message.contains("db is not answering yet (try 2)"),
        "{}",
        eco.message
    );
    let boot_log = std::fs::read_to_string(tmp.path().join("db.boot")).unwrap();
    assert_eq!(boot_log.lines().count(), 3);
    assert_eq!(tag(&db, "status", "running"), Some(TagState::Ok));
    let start = run(&robot, &web, "start", json!({})).await;
    assert_eq!(ok(&start), json!({"ip": web_ip, "tries": 1}));
    assert_eq!((start.attempt, start.eco), (1, None));

    // vms whose node does not exist yet create it (the producer on demand),
    // once, even when they install at the same time.
    let cache = create(&robot, "vm", "cache", json!({"node": "node2"})).await;
    let queue = create(&robot, "vm", "queue", json!({"node": "node2"})).await;
    assert!(robot.service_by_name("node2").is_none());
    let cache_install = robot.schedule(&cache, "install", json!({})).await.unwrap();
    let queue_install = robot.schedule(&queue, "install", json!({})).await.unwrap();
    ok(&finished(&cache_install).await);
    ok(&finished(&queue_install).await);
    let node2 = robot
        .service_by_name("node2")
        .expect("install created its node");
    assert_eq!(
        node2.template_uid(),
        "github.com/zrobot/examples/node/1.0.0"
    );
    assert_eq!(node2.data()["hostname"], json!("node2"));
    assert_eq!(vm_names(&node2), ["cache", "queue"]);
    let ips: BTreeSet<String> = [&cache, &queue]
        .map(|vm| vm.data()["ip"].as_str().unwrap().to_owned())
        .into();
    assert_eq!(
        ips,
        BTreeSet::from(["10.0.0.2".to_owned(), "10.0.0.3".to_owned()])
    );

    // A vm too big for its node: the node's refusal becomes the vm's eco, and
    // neither side keeps anything of the failed install.
    let big = create(
        &robot,
        "vm",
        "big",
        json!({"node": "node1", "memory": 65536}),
    )
    .await;
    let r = run(&robot, &big, "install", json!({})).await;
    let eco = r.eco.unwrap();
    assert_eq!((r.state, r.attempt, eco.count), (TaskState::Error, 3, 3));
    let m = eco.message;
    assert!(m.contains("`create_vm` of service `node1` failed"), "{m}");
    assert!(
        m.contains("not enough memory on node1 for big: 65536 MiB asked, 29696 MiB free"),
        "{m}"
    );
    assert_eq!(big.data()["ip"], json!(""));
    assert_eq!(vm_names(&node1), ["db", "web"]);
    // Starting it fails its state check on every run the retry policy allows.
    let r = run(&robot, &big, "start", json!({})).await;
    let eco = r.eco.unwrap();
    assert_eq!((r.state, r.attempt, eco.count), (TaskState::Error, 5, 5));
    assert_eq!(eco.category, "state.check");
    assert!(
        eco.message
            .contains("actions/install is not set, expected ok"),
        "{}",
        eco.message
    );
    robot.delete_service(big.guid).await.unwrap();

    // The planner finds both nodes and adds up what they report.
    let seen = eventually(Duration::from_secs(10), || {
        network(&node2) == Some(TagState::Ok)
    })
    .await;
    assert!(seen, "node2 network: {:?}", network(&node2));
    let planner = create(&robot, "capacity", "capacity", json!({})).await;
    let report = ok(&run(&robot, &planner, "report", json!({})).await);
    assert_eq!(
        report,
        json!({
            "nodes": {
                "node1": {"hostname": "node1.example.com", "reachable": true, "vms": 2,
                          "memory": {"total": 32768, "used": 3072, "free": 29696},
                          "cpu": {"total": 8, "used": 3, "free": 5}},
                "node2": {"hostname": "node2", "reachable": true, "vms": 2,
                          "memory": {"total": 16384, "used": 2048, "free": 14336},
                          "cpu": {"total": 8, "used": 2, "free": 6}},
            },
            "total": {"nodes": 2, "reachable": 2, "vms": 4,
                      "memory": {"total": 49152, "used": 5120, "free": 44032},
                      "cpu": {"total": 16, "used": 5, "free": 11}},
            "usable_memory": 44032,
            "problems": {},
        })
    );
    assert_eq!(planner.data()["reports"], json!(1));
    assert_eq!(planner.data()["last_report"]["memory_free"], json!(44032));
    assert_eq!(tag(&planner, "capacity", "memory"), Some(TagState::Ok));
    assert_eq!(tag(&planner, "capacity", "nodes"), Some(TagState::Ok));

    // Deleting a vm runs its on_delete `uninstall`, which gives the room back
    // to the node before the vm is gone.
    robot.delete_service(db.guid).await.unwrap();
    assert!(robot.service_by_name("db").is_none());
    let gave_back = format!("gave {db_ip} back to node1");
    assert!(db.log_lines().iter().any(|l| l.message == gave_back));
    assert_eq!(vm_names(&node1), ["web"]);
    let node_tasks = robot.tasks(&node1, true).await.unwrap();
    let delete_vm = |vm: &str| {
        node_tasks
            .iter()
            .find(|t| t.action_name == "delete_vm" && t.args == json!({"name": vm}))
            .unwrap_or_else(|| panic!("the uninstall of {vm} did not ask the node"))
    };
    assert_eq!(ok(delete_vm("db")), json!({"deleted": true, "ip": db_ip}));
    // big never got a place: asking anyway was harmless.
    assert_eq!(ok(delete_vm("big")), json!({"deleted": false}));
    // The freed address goes to the next vm.
    let api = create(&robot, "vm", "api", json!({"node": "node1"})).await;
    ok(&run(&robot, &api, "install", json!({})).await);
    assert_eq!(api.data()["ip"], json!(db_ip));

    let place = ok(&run(&robot, &planner, "place", json!({"memory": 2048})).await);
    assert_eq!(
        place,
        json!({"node": "node1", "memory_free": 29696, "cpu_free": 6})
    );

    // node1 goes down: the recurring monitor notices, and the planner stops
    // placing vms there.
    let checks_before = node1.data()["checks"].as_u64().unwrap();
    std::fs::remove_file(&health).unwrap();
    let seen = eventually(Duration::from_secs(15), || {
        network(&node1) == Some(TagState::Error)
    })
    .await;
    assert!(seen, "monitor did not notice: {:?}", node1.state());
    let checks = || node1.data()["checks"].as_u64().unwrap();
    let ran_again = eventually(Duration::from_secs(15), || checks() > checks_before).await;
    assert!(ran_again, "monitor ran {} times, as before", checks());
    let place = ok(&run(&robot, &planner, "place", json!({"memory": 2048})).await);
    assert_eq!(
        place,
        json!({"node": "node2", "memory_free": 14336, "cpu_free": 6})
    );
    let r = run(&robot, &planner, "place", json!({"memory": 20000})).await;
    let m = r.eco.unwrap().message;
    assert!(
        m.contains("no reachable node has 20000 MiB and 1 cpu free"),
        "{m}"
    );
    let report = ok(&run(&robot, &planner, "report", json!({})).await);
    assert_eq!(report["nodes"]["node1"]["reachable"], json!(false));
    assert_eq!(report["total"]["reachable"], json!(1));
    assert_eq!(report["usable_memory"], json!(14336));
    assert_eq!(tag(&planner, "capacity", "nodes"), Some(TagState::Warning));
    assert_eq!(planner.data()["reports"], json!(2));
    assert!(node1
        .log_lines()
        .iter()
        .any(|l| l.message == "node1.example.com reachable: error"));

    // A node deleted under its vms warns; the vms deleted afterwards cope.
    robot.delete_service(node2.guid).await.unwrap();
    assert!(node2
        .log_lines()
        .iter()
        .any(|l| l.message.contains("still hosts 2 vm(s): cache, queue")));
    for vm in [&cache, &queue] {
        robot.delete_service(vm.guid).await.unwrap();
        assert!(vm
            .log_lines()
            .iter()
            .any(|l| l.message == "node node2 is gone; nothing to give back"));
    }
    let names: Vec<String> = robot
        .find_services(&ServiceFilter::default())
        .iter()
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(names, ["api", "capacity", "node1", "web"]);
}

#[tokio::test]
async fn bad_data_and_arguments_are_refused_by_the_schemas() {
    let robot = robot();
    load_examples(&robot);
    let err = robot
        .create_service(zrobot_core::robot::NewService {
            template: "node".into(),
            name: "n".into(),
            data: json!({"hostnme": "typo"}),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("'hostnme' was unexpected"),
        "{err}"
    );
    let err = robot
        .create_service(zrobot_core::robot::NewService {
            template: "vm".into(),
            name: "loop".into(),
            data: json!({"node": "loop"}),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("a vm cannot be its own node"),
        "{err}"
    );
    // A node of another robot may have any name.
    let vm = create(
        &robot,
        "vm",
        "twin",
        json!({"node": "twin", "robot": "edge"}),
    )
    .await;
    assert_eq!(vm.data()["robot"], json!("edge"));
    let node = create(&robot, "node", "n", json!({"hostname": "h"})).await;
    let err = robot
        .schedule(&node, "create_vm", json!({"memory": 512}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("name"), "{err}");
    let err = robot
        .schedule(&node, "create_vm", json!({"name": "x", "memory": 0}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/memory"), "{err}");
    let placed = ok(&run(&robot, &node, "create_vm", json!({"name": "x"})).await);
    assert_eq!(placed, json!({"ip": "10.0.0.2"}));
    assert_eq!(
        node.data()["vms"]["x"],
        json!({"ip": "10.0.0.2", "memory": 1024, "cpu": 1})
    );
    // Asking again gives the same place, not a second one.
    assert_eq!(
        ok(&run(&robot, &node, "create_vm", json!({"name": "x"})).await),
        placed
    );
    assert_eq!(vm_names(&node), ["x"]);
}

/// Until the robot executes blueprints itself, this does by hand what
/// DESIGN.md §4 says: create the services in order, then queue each block's
/// actions on the services it selects. Returns the queued tasks.
async fn execute(robot: &Robot, file: &str) -> Vec<Arc<Task>> {
    let text = std::fs::read_to_string(examples_dir().join("blueprints").join(file)).unwrap();
    let blueprint: Value = serde_saphyr::from_str(&text).unwrap();

    let mut created = Vec::new();
    for entry in blueprint["services"]
        .as_array()
        .expect("services is a list")
    {
        let entry = entry.as_object().expect("a service entry is a one-key map");
        assert_eq!(entry.len(), 1, "{entry:?}");
        let (key, data) = entry.iter().next().unwrap();
        let (template, name) = key.split_once("__").expect("keys are <template>__<name>");
        created.push(create(robot, template, name, data.clone()).await);
    }

    let blocks = match &blueprint["actions"] {
        Value::Array(list) => list.clone(),
        block => vec![block.clone()],
    };
    let mut tasks = Vec::new();
    for block in &blocks {
        let actions: Vec<String> = match &block["actions"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(list) => list
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect(),
            other => panic!("a block needs `actions`, got {other}"),
        };
        let filter = ServiceFilter {
            name: block
                .get("service")
                .and_then(Value::as_str)
                .map(str::to_owned),
            template_uid: block
                .get("template")
                .and_then(Value::as_str)
                .map(str::to_owned),
            ..Default::default()
        };
        let targets: Vec<&Arc<Service>> = created.iter().filter(|s| filter.matches(s)).collect();
        assert!(!targets.is_empty(), "block {block} selects no service");
        let args = block.get("args").cloned().unwrap_or(json!({}));
        for svc in targets {
            for action in &actions {
                tasks.push(robot.schedule(svc, action, args.clone()).await.unwrap());
            }
        }
    }
    tasks
}

#[tokio::test]
async fn the_one_robot_blueprint_runs_on_the_examples() {
    let robot = robot();
    load_examples(&robot);
    let tasks = execute(&robot, "one-robot.yaml").await;
    // node1 install, web install+start, db install+start, the report.
    assert_eq!(tasks.len(), 6);
    for t in &tasks {
        ok(&finished(t).await);
    }

    let node1 = robot.service_by_name("node1").unwrap();
    assert_eq!(tag(&node1, "actions", "install"), Some(TagState::Ok));
    assert_eq!(vm_names(&node1), ["db", "web"]);
    for vm in ["web", "db"] {
        assert_eq!(
            tag(&robot.service_by_name(vm).unwrap(), "status", "running"),
            Some(TagState::Ok)
        );
    }
    let seen = eventually(Duration::from_secs(10), || {
        network(&node1) == Some(TagState::Ok)
    })
    .await;
    assert!(seen, "node1 network: {:?}", network(&node1));
    let planner = robot.service_by_name("capacity").unwrap();
    let report = ok(&run(&robot, &planner, "report", json!({})).await);
    assert_eq!(
        report["total"],
        json!({"nodes": 1, "reachable": 1, "vms": 2,
               "memory": {"total": 32768, "used": 10240, "free": 22528},
               "cpu": {"total": 16, "used": 6, "free": 10}})
    );
}

/// The demo's blueprint puts the vms' node on another robot, `edge`
/// (`zrobot demo` runs it across two real robots: see the CLI's tests). On a
/// robot told of no `edge` its services are still valid; the installs fail
/// saying how to name that robot, and the planner reports the robot it
/// cannot ask instead of failing. A robot that is named but cannot be
/// reached gives the same kind of answers, through the remote calls.
#[tokio::test]
async fn the_demo_blueprint_asks_another_robot_for_the_node() {
    let robot = robot();
    load_examples(&robot);
    let tasks = execute(&robot, "demo.yaml").await;
    // web install+start, db install+start, the report.
    assert_eq!(tasks.len(), 5);
    for t in &tasks {
        let r = finished(t).await;
        match (r.service_name.as_str(), r.action_name.as_str()) {
            ("web" | "db", "install") => {
                assert_eq!(r.state, TaskState::Error);
                let m = r.eco.unwrap().message;
                assert!(
                    m.contains("no robot named `edge`") && m.contains("--robot edge=URL"),
                    "{m}"
                );
            }
            ("web" | "db", "start") => {
                assert_eq!(r.state, TaskState::Error);
                assert_eq!(r.eco.unwrap().category, "state.check");
            }
            ("capacity", "report") => {
                let report = ok(&r);
                assert_eq!(report["total"]["nodes"], json!(0));
                let m = report["problems"]["robot edge"].as_str().unwrap();
                assert!(m.contains("no robot named `edge`"), "{m}");
            }
            other => panic!("the demo blueprint queued {other:?}"),
        }
    }
    let web = robot.service_by_name("web").unwrap();
    assert_eq!(web.data()["robot"], json!("edge"));
    assert_eq!(web.data()["node"], json!("node1"));
    // The node was looked for on `edge` only, never made here.
    assert!(robot.service_by_name("node1").is_none());
    let planner = robot.service_by_name("capacity").unwrap();
    assert_eq!(planner.data()["robots"], json!(["edge"]));
    assert_eq!(tag(&planner, "capacity", "nodes"), Some(TagState::Warning));

    // `edge` named, but nothing answers at its address.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    robot.add_remote_robot("edge", &url, None).await.unwrap();
    let r = run(&robot, &web, "install", json!({})).await;
    assert_eq!(r.state, TaskState::Error);
    let m = r.eco.unwrap().message;
    assert!(
        m.contains("robot `edge`") && m.contains("cannot reach"),
        "{m}"
    );
    let report = ok(&run(&robot, &planner, "report", json!({})).await);
    let m = report["problems"]["robot edge"].as_str().unwrap();
    assert!(m.contains("cannot reach"), "{m}");
    // Its uninstall cannot give the room back; the vm goes all the same.
    robot.delete_service(web.guid).await.unwrap();
    assert!(robot.service_by_name("web").is_none());
}
