//! Services asking services of other robots: real robot processes on
//! loopback, a chain across three of them, failures and recovery.

mod util;

use std::time::{Duration, Instant};

use serde_json::json;
use util::*;
use zrobot_client::wire::{ServiceCreate, TaskState};

const NODE_YAML: &str =
    "version: 1.0.0\ndata: {type: object, properties: {vms: {type: array, default: []}}}\n";
const NODE_LUA: &str = r#"
local n = {}
function n.create_vm(self, args)
  table.insert(self.data.vms, args.name)
  return {ip = "10.0.0." .. #self.data.vms, by = self.name}
end
function n.slow(self, args) robot.sleep(args.s) return "slept" end
function n.fail(self) error("node refuses") end
function n.relay(self, args)
  -- B asks C: a chain A -> B -> C.
  local c = robot.robots[args.next].services:find_or_create("node", "deep", {})
  local r = c:schedule_action(args.action, {name = "via-" .. self.name}):wait(30)
  return r
end
return n
"#;
const VM_YAML: &str = "version: 1.0.0\ndata: {type: object, properties: {ip: {type: string}}}\n";
const VM_LUA: &str = r#"
local vm = {}
function vm.install(self, args)
  local node = robot.robots[args.robot].services:find_or_create("node", args.node, {})
  local t = node:schedule_action("create_vm", {name = self.name})
  local r = t:wait(30)
  self.data.ip = r.ip
  return {ip = r.ip, by = r.by, task = t.guid, state = t:state(), node_uid = node.template_uid,
          actions = node:actions(), result = t:result().ip}
end
function vm.chain(self, args)
  local b = robot.robots[args.robot].services:find_or_create("node", "middle", {})
  local r = b:schedule_action("relay", {next = args.next, action = args.action}):wait(60)
  return r
end
function vm.wait_slow(self, args)
  local node = robot.robots[args.robot].services:get({name = args.node})
  local r = node:schedule_action("slow", {s = args.s}):wait(args.timeout)
  return r
end
function vm.get(self, args)
  local r = robot.robots[args.robot].services:get({name = args.node})
  return r.guid
end
function vm.register(self, args)
  local r = robot.robots:get(args.name, args.url)
  return r.name
end
return vm
"#;

fn repo(dir: &std::path::Path) -> String {
    let repo = template_repo(
        dir,
        &[
            ("templates/node/template.yaml", NODE_YAML),
            ("templates/node/node.lua", NODE_LUA),
            ("templates/vm/template.yaml", VM_YAML),
            ("templates/vm/vm.lua", VM_LUA),
        ],
    );
    format!("file://{}", repo.display())
}

async fn run(
    robot: &RobotProcess,
    svc: &str,
    action: &str,
    args: serde_json::Value,
) -> zrobot_client::wire::Task {
    let c = robot.god_client();
    let s = c.service_by_name(svc).await;
    let guid = s.guid;
    let t = c.schedule(guid, action, args).await.unwrap();
    c.wait_done(guid, t.guid, Duration::from_secs(120))
        .await
        .unwrap()
}

trait ByName {
    async fn service_by_name(&self, name: &str) -> zrobot_client::wire::Service;
}

impl ByName for zrobot_client::Client {
    async fn service_by_name(&self, name: &str) -> zrobot_client::wire::Service {
        let filter = zrobot_client::wire::ServiceFilter {
            name: Some(name.into()),
            ..Default::default()
        };
        self.services(&filter).await.unwrap().remove(0)
    }
}

async fn vm(robot: &RobotProcess, name: &str) {
    robot
        .god_client()
        .create_service(&ServiceCreate {
            template: "vm".into(),
            name: name.into(),
            data: json!({}),
            public: false,
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_uses_a_producer_on_another_robot_and_a_chain_of_three() {
    let tmp = tempfile::tempdir().unwrap();
    let url = repo(&tmp.path().join("acme/templates"));
    let c = RobotProcess::start(&tmp.path().join("c"), &["--god", "-T", &url]);
    let b = RobotProcess::start(
        &tmp.path().join("b"),
        &["--god", "-T", &url, "--robot", &format!("c={}", c.url)],
    );
    let a = RobotProcess::start(
        &tmp.path().join("a"),
        &["--god", "-T", &url, "--robot", &format!("b={}", b.url)],
    );
    vm(&a, "vm1").await;

    let t = run(&a, "vm1", "install", json!({"robot": "b", "node": "node1"})).await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    let r = t.result_value().unwrap();
    assert_eq!(r["ip"], json!("10.0.0.1"));
    assert_eq!(r["by"], json!("node1"));
    assert_eq!(r["state"], json!("ok"));
    assert_eq!(r["result"], json!("10.0.0.1"));
    assert_eq!(r["node_uid"], json!("local/acme/templates/node/1.0.0"));
    assert_eq!(r["actions"], json!(["create_vm", "fail", "relay", "slow"]));
    // The producer's task records who asked.
    let bc = b.god_client();
    let node = bc.service_by_name("node1").await;
    let remote_task: uuid::Uuid = r["task"].as_str().unwrap().parse().unwrap();
    let seen = bc.task(node.guid, remote_task).await.unwrap();
    assert_eq!(
        seen.caller_task.as_deref(),
        Some(t.guid.to_string().as_str())
    );
    assert!(
        seen.traceparent
            .as_deref()
            .is_some_and(|tp| tp.starts_with("00-") && tp.len() == 55),
        "{seen:?}"
    );
    // A's secret for node1 was kept: A still reaches it after a restart of A.
    let t = run(&a, "vm1", "install", json!({"robot": "b", "node": "node1"})).await;
    assert_eq!(t.result_value().unwrap()["ip"], json!("10.0.0.2"));

    // A -> B -> C, and an error on C arrives on A with its message.
    let t = run(
        &a,
        "vm1",
        "chain",
        json!({"robot": "b", "next": "c", "action": "create_vm"}),
    )
    .await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    assert_eq!(t.result_value().unwrap()["by"], json!("deep"));
    let t = run(
        &a,
        "vm1",
        "chain",
        json!({"robot": "b", "next": "c", "action": "fail"}),
    )
    .await;
    assert_eq!(t.state, TaskState::Error);
    let msg = t.eco.unwrap().message;
    assert!(
        msg.contains("node refuses") && msg.contains("robot `c`") && msg.contains("robot `b`"),
        "{msg}"
    );

    // Unknown robots and unknown actions are clear errors.
    let t = run(
        &a,
        "vm1",
        "install",
        json!({"robot": "nobody", "node": "x"}),
    )
    .await;
    assert!(t.eco.unwrap().message.contains("no robot named `nobody`"));
    let t = run(&a, "vm1", "get", json!({"robot": "b", "node": "not-there"})).await;
    assert!(t.eco.unwrap().message.contains("no service matches"));
    // A robot learnt from a template is kept.
    let t = run(&a, "vm1", "register", json!({"name": "c2", "url": c.url})).await;
    assert_eq!(t.result_value().unwrap(), json!("c2"));
    let t = run(
        &a,
        "vm1",
        "install",
        json!({"robot": "c2", "node": "from-a"}),
    )
    .await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_frozen_robot_gives_bounded_failures_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let url = repo(&tmp.path().join("acme/templates"));
    let mut b = RobotProcess::start(&tmp.path().join("b"), &["--god", "-T", &url]);
    let a = RobotProcess::start(
        &tmp.path().join("a"),
        &[
            "--god",
            "-T",
            &url,
            "--robot",
            &format!("b={}", b.url),
            "--remote-timeout",
            "2",
            "--remote-unreachable-after",
            "2",
        ],
    );
    vm(&a, "vm1").await;
    assert_eq!(
        run(&a, "vm1", "install", json!({"robot": "b", "node": "node1"}))
            .await
            .state,
        TaskState::Ok
    );

    // B dies while A waits on a long task there.
    let ac = a.god_client();
    let vm1 = ac.service_by_name("vm1").await.guid;
    let waiting = ac
        .schedule(
            vm1,
            "wait_slow",
            json!({"robot": "b", "node": "node1", "s": 3, "timeout": 60}),
        )
        .await
        .unwrap();
    let bc = b.god_client();
    let node = bc.service_by_name("node1").await.guid;
    assert!(
        eventually(Duration::from_secs(20), || async {
            bc.tasks(node, false)
                .await
                .is_ok_and(|ts| ts.iter().any(|t| t.action_name == "slow"))
        })
        .await
    );
    let acked = bc
        .tasks(node, false)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.action_name == "slow")
        .unwrap();
    let killed_at = Instant::now();
    b.kill();
    let t = ac
        .wait_done(vm1, waiting.guid, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(t.state, TaskState::Error);
    let msg = t.eco.unwrap().message;
    assert!(
        msg.contains("cannot be reached") && msg.contains("robot `b`"),
        "{msg}"
    );
    assert!(
        killed_at.elapsed() < Duration::from_secs(20),
        "took {:?}",
        killed_at.elapsed()
    );

    // B comes back: the task it had acknowledged runs there, and A's calls work again.
    b.restart();
    let bc = b.god_client();
    let done = bc
        .wait_done(node, acked.guid, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(done.state, TaskState::Ok, "{done:?}");
    assert_eq!(
        run(&a, "vm1", "install", json!({"robot": "b", "node": "node1"}))
            .await
            .state,
        TaskState::Ok
    );

    // B frozen (SIGSTOP): A times out instead of hanging.
    let pid = b.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    let started = Instant::now();
    let t = run(&a, "vm1", "install", json!({"robot": "b", "node": "node1"})).await;
    std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap();
    assert_eq!(t.state, TaskState::Error);
    assert!(t.eco.unwrap().message.contains("robot `b`"));
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_cannot_act_on_services_it_holds_no_secret_for() {
    let tmp = tempfile::tempdir().unwrap();
    let url = repo(&tmp.path().join("acme/templates"));
    let key = tmp.path().join("jwt.key");
    std::fs::write(&key, "a shared secret for the test robot").unwrap();
    let b = RobotProcess::start(
        &tmp.path().join("b"),
        &[
            "--god",
            "-T",
            &url,
            "--jwt-key",
            key.to_str().unwrap(),
            "--admin-organization",
            "ops",
            "--user-organization",
            "devs",
        ],
    );
    // Someone else's service on B.
    b.god_client()
        .create_service(&ServiceCreate {
            template: "node".into(),
            name: "private".into(),
            data: json!({}),
            public: false,
        })
        .await
        .unwrap();
    let a = RobotProcess::start(
        &tmp.path().join("a"),
        &["--god", "-T", &url, "--robot", &format!("b={}", b.url)],
    );
    vm(&a, "vm1").await;
    let t = run(&a, "vm1", "get", json!({"robot": "b", "node": "private"})).await;
    assert_eq!(t.state, TaskState::Error);
    let msg = t.eco.unwrap().message;
    assert!(msg.contains("robot `b`"), "{msg}");
}
