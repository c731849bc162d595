//! Services asking services of other robots: real robot processes on
//! loopback, a chain across three of them, failures and recovery.

mod util;

use std::path::Path;
use std::sync::{Arc, Mutex};
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
function n.noop(self) end
function n.cross(self, args)
  -- Waits on a task of another robot's service, queued behind that
  -- service's running task.
  local other = robot.robots[args.robot].services:get({name = args.service})
  return other:schedule_action("noop", {}):wait(30)
end
function n.ask_local(self, args)
  local o = robot.services:find_or_create("node", args.other, {})
  return o:schedule_action("slow", {s = args.s}):wait(30)
end
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
  local task = node:schedule_action("slow", {s = args.s})
  -- Acknowledged by the other robot: the test may kill it now.
  self.state:set("remote", "slow", "ok")
  return task:wait(args.timeout)
end
function vm.get(self, args)
  local r = robot.robots[args.robot].services:get({name = args.node})
  return r.guid
end
function vm.register(self, args)
  local r = robot.robots:get(args.name, args.url)
  return r.name
end
function vm.alike(self, args)
  -- One handle type, local or remote: the same code drives both.
  local here = robot.services:find_or_create("node", args.node, {})
  local there = robot.robots[args.robot].services:find_or_create("node", args.node, {})
  local function use(svc)
    local t = svc:schedule_action("create_vm", {name = self.name})
    local r = t:wait(30)
    return {name = svc.name, uid = svc.template_uid, robot = svc.robot or "-",
            actions = svc:actions(), task = t:state(), result = t:result().by, waited = r.by,
            text = string.match(tostring(svc), "^service (%S+)"),
            failed = tostring(select(2, pcall(function() return svc:schedule_action("fail", {}):wait(30) end)))}
  end
  -- A local handle never yields: it works where Lua cannot yield.
  local list = {here, here, here}
  table.sort(list, function(x, y) return #x:actions() < #y:actions() end)
  return {here = use(here), there = use(there)}
end
function vm.wait_all(self, args)
  -- Tasks here and on robot b, waited on at once: results and errors by row.
  local here = robot.services:find_or_create("node", "local-node", {})
  local there = robot.robots[args.robot].services:find_or_create("node", "far-node", {})
  local tasks = {
    here:schedule_action("create_vm", {name = self.name}),
    there:schedule_action("create_vm", {name = self.name}),
    there:schedule_action("fail", {}),
    here:schedule_action("slow", {s = 10}),
    there:schedule_action("slow", {s = 0.2}),
  }
  local started = robot.now()
  local rows = robot.wait_all(tasks, args.timeout)
  local ok, err = pcall(robot.wait_all, {tasks[1], "nope"})
  return {rows = rows, took = robot.now() - started, bad = tostring(err)}
end
function vm.inspect(self, args)
  -- Log, tasks and data of a service here and of one on robot b, alike.
  local here = robot.services:find_or_create("node", "near", {})
  local there = robot.robots[args.robot].services:find_or_create("node", "far", {})
  local out = {}
  for _, svc in ipairs({here, there}) do
    svc:schedule_action("create_vm", {name = self.name}):wait(30)
    pcall(function() svc:schedule_action("fail", {}):wait(30) end)
    local ok, data = pcall(function() return svc:data() end)
    local tasks = svc:tasks(true)
    out[#out + 1] = {
      logs = svc:logs(),
      waiting = #svc:tasks(),
      tasks = tasks,
      data = ok and data or tostring(data),
    }
  end
  return out
end
function vm.pick(self, args)
  -- Finds one service of robot b by guid, and asks find_or_create for a
  -- name taken by another template.
  local services = robot.robots[args.robot].services
  local a = services:find_or_create("node", "pa", {})
  services:find_or_create("node", "pb", {})
  local by_guid = services:find({guid = a.guid})
  local ok, err = pcall(function() return services:find_or_create("vm", "pa", {}) end)
  return {count = #by_guid, name = by_guid[1].name, exists = services:exists({guid = robot.uuid()}),
          same = services:find_or_create("node", "pa", {}).guid == a.guid, wrong = tostring(err)}
end
function vm.drop(self, args)
  robot.robots[args.robot].services:get({name = args.node}):delete()
end
function vm.poke(self, args)
  -- Holds a handle while the test deletes the service behind it.
  local h = robot.robots[args.robot].services:get({name = args.node})
  self.state:set("poke", args.node, "ok")
  while not robot.services:exists({name = args.go}) do robot.sleep(0.02) end
  local ok, err = pcall(function() return h:state() end)
  return tostring(err)
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
    assert_eq!(
        r["actions"],
        json!([
            "ask_local",
            "create_vm",
            "cross",
            "fail",
            "noop",
            "relay",
            "slow"
        ])
    );
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
async fn local_and_remote_handles_answer_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let url = repo(&tmp.path().join("acme/templates"));
    let b = RobotProcess::start(&tmp.path().join("b"), &["--god", "-T", &url]);
    let a = RobotProcess::start(
        &tmp.path().join("a"),
        &["--god", "-T", &url, "--robot", &format!("b={}", b.url)],
    );
    vm(&a, "vm1").await;
    let t = run(&a, "vm1", "alike", json!({"robot": "b", "node": "n1"})).await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    let r = t.result_value().unwrap();
    let (mut here, mut there) = (r["here"].clone(), r["there"].clone());
    assert_eq!(here["robot"], json!("-"));
    assert_eq!(there["robot"], json!("b"));
    for (side, robot) in [(&mut here, ""), (&mut there, " on robot `b`")] {
        let failed = side["failed"].as_str().unwrap().to_owned();
        assert!(
            failed.contains(&format!("task `fail` of service `n1`{robot} failed: "))
                && failed.contains("node refuses"),
            "{failed}"
        );
        side["robot"] = json!(null);
        side["failed"] = json!(null);
    }
    assert_eq!(here, there);
    assert_eq!(here["result"], json!("n1"));
    assert_eq!(here["waited"], json!("n1"));
    assert_eq!(here["task"], json!("ok"));
    assert_eq!(here["text"], json!("n1"));
}

/// A service's log, tasks and (god only) data read through a handle, of
/// this robot and of another alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_read_logs_tasks_and_data_here_and_there() {
    let tmp = tempfile::tempdir().unwrap();
    let url = repo(&tmp.path().join("acme/templates"));
    // b is not in god mode: its data stay private to a's code; a is, so
    // its own services' data are readable there.
    let b = RobotProcess::start(&tmp.path().join("b"), &["-T", &url]);
    let a = RobotProcess::start(
        &tmp.path().join("a"),
        &["--god", "-T", &url, "--robot", &format!("b={}", b.url)],
    );
    vm(&a, "vm1").await;
    let t = run(&a, "vm1", "inspect", json!({"robot": "b"})).await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    let r = t.result_value().unwrap();
    for (side, name) in [(&r[0], "near"), (&r[1], "far")] {
        assert_eq!(side["waiting"], json!(0), "{side}");
        let tasks = side["tasks"].as_array().unwrap();
        let actions: Vec<&str> = tasks
            .iter()
            .map(|t| t["action"].as_str().unwrap())
            .collect();
        assert_eq!(actions, ["create_vm", "fail"], "{name}: {side}");
        assert_eq!(tasks[0]["state"], "ok");
        assert_eq!(tasks[0]["result"], json!({"ip": "10.0.0.1", "by": name}));
        assert_eq!(tasks[1]["state"], "error");
        assert!(
            tasks[1]["error"].as_str().unwrap().contains("node refuses"),
            "{side}"
        );
        let logs = side["logs"].as_str().unwrap();
        assert!(
            logs.contains("created from template") && logs.contains("`fail` failed (run 1 of 1)"),
            "{name}: {side}"
        );
    }
    assert_eq!(r[0]["data"], json!({"vms": ["vm1"]}));
    let refused = r[1]["data"].as_str().unwrap();
    assert!(
        refused.contains("robot `b` shows the data of service `far` only to its god token"),
        "{refused}"
    );
}

/// On another robot as here: a `guid` filter finds that service only, and
/// `find_or_create` refuses a name taken by another template.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_filters_and_find_or_create_behave_as_local_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let url = repo(&tmp.path().join("acme/templates"));
    let b = RobotProcess::start(&tmp.path().join("b"), &["--god", "-T", &url]);
    let a = RobotProcess::start(
        &tmp.path().join("a"),
        &["--god", "-T", &url, "--robot", &format!("b={}", b.url)],
    );
    vm(&a, "vm1").await;
    let t = run(&a, "vm1", "pick", json!({"robot": "b"})).await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    let r = t.result_value().unwrap();
    assert_eq!(r["count"], 1, "{r}");
    assert_eq!(r["name"], "pa");
    assert_eq!(r["exists"], false);
    assert_eq!(r["same"], true);
    let wrong = r["wrong"].as_str().unwrap();
    assert!(
        wrong.contains("a service named `pa` exists, but from template")
            && wrong.contains("rather than vm"),
        "{wrong}"
    );
}

/// `robot.wait_all` waits on local and remote tasks at once, within one
/// timeout, and gives each its result or its error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_all_waits_on_local_and_remote_tasks_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let url = repo(&tmp.path().join("acme/templates"));
    let b = RobotProcess::start(&tmp.path().join("b"), &["--god", "-T", &url]);
    let a = RobotProcess::start(
        &tmp.path().join("a"),
        &["--god", "-T", &url, "--robot", &format!("b={}", b.url)],
    );
    vm(&a, "vm1").await;
    let t = run(&a, "vm1", "wait_all", json!({"robot": "b", "timeout": 1.5})).await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    let r = t.result_value().unwrap();
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "{r}");
    assert_eq!(
        rows[0],
        json!({"ok": true, "result": {"ip": "10.0.0.1", "by": "local-node"}})
    );
    assert_eq!(
        rows[1],
        json!({"ok": true, "result": {"ip": "10.0.0.1", "by": "far-node"}})
    );
    assert_eq!(rows[2]["ok"], json!(false));
    let failed = rows[2]["error"].as_str().unwrap();
    assert!(
        failed.contains("`fail` of service `far-node` on robot `b` failed")
            && failed.contains("node refuses"),
        "{failed}"
    );
    assert_eq!(rows[3]["ok"], json!(false));
    assert!(
        rows[3]["error"].as_str().unwrap().contains("timed out"),
        "{r}"
    );
    assert_eq!(rows[4], json!({"ok": true, "result": "slept"}));
    // One timeout for all: the 10 s task did not hold it past 1.5 s.
    let took = r["took"].as_f64().unwrap();
    assert!((1.4..5.0).contains(&took), "{took}");
    assert!(
        r["bad"]
            .as_str()
            .unwrap()
            .contains("item 2 of the list is not a task"),
        "{r}"
    );
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
    // Killed only once A holds B's answer: a kill before it would fail the
    // schedule, not the wait this test is about.
    assert!(
        eventually_async(Duration::from_secs(20), || async {
            ac.service(vm1)
                .await
                .is_ok_and(|s| s.state.iter().any(|st| st.category == "remote"))
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

/// Robot `b` under `root`, serving `url`, checking JWTs (HS256, a key written
/// beside it; admins are `ops`) and accepting the god token, plus `extra`.
fn jwt_robot(root: &Path, url: &str, extra: &[&str]) -> RobotProcess {
    let key = root.join("jwt.key");
    std::fs::write(&key, "a shared secret for the test robot").unwrap();
    let mut args = vec![
        "--god",
        "-T",
        url,
        "--jwt-key",
        key.to_str().unwrap(),
        "--admin-organization",
        "ops",
    ];
    args.extend_from_slice(extra);
    RobotProcess::start(&root.join("b"), &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_cannot_act_on_services_it_holds_no_secret_for() {
    let tmp = tempfile::tempdir().unwrap();
    let url = repo(&tmp.path().join("acme/templates"));
    let b = jwt_robot(tmp.path(), &url, &["--user-organization", "devs"]);
    // Someone else's service on B.
    new_service(&b.god_client(), "node", "private").await;
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

/// A TCP relay on loopback to another robot that records every byte its
/// clients send, so a test reads each request a robot sends to another.
struct Relay {
    url: String,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Relay {
    async fn to(target: &str) -> Relay {
        let target = target.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let sent = Arc::new(Mutex::new(Vec::new()));
        let record = sent.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                let record = record.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let (mut from_server, mut to_server) = server.into_split();
                    let (mut from_client, mut to_client) = client.split();
                    let upstream = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            match from_client.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                                    if to_server.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to_server.shutdown().await;
                    };
                    let downstream = async {
                        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                        let _ = to_client.shutdown().await;
                    };
                    tokio::join!(upstream, downstream);
                });
            }
        });
        Relay { url, sent }
    }

    /// The heads (request line and headers) of the requests sent so far.
    fn heads(&self) -> Vec<String> {
        request_heads(&String::from_utf8_lossy(&self.sent.lock().unwrap()))
    }

    fn clear(&self) {
        self.sent.lock().unwrap().clear();
    }
}

/// Splits what clients sent into request heads: each starts with a request
/// line ending in ` HTTP/1.1` and ends at its blank line.
fn request_heads(text: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(" HTTP/1.1\r\n") {
        let start = rest[..at].rfind('\n').map_or(0, |i| i + 1);
        let end = rest[at..].find("\r\n\r\n").map_or(rest.len(), |i| at + i);
        heads.push(rest[start..end].to_owned());
        rest = &rest[end..];
    }
    heads
}

/// The service secrets a request head presents.
fn secrets_in(head: &str) -> Vec<String> {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("zrobotsecret")
                .then(|| value.trim().trim_start_matches("Bearer").to_owned())
        })
        .map(|v| v.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn has_header(head: &str, name: &str) -> bool {
    head.lines().any(|l| {
        l.split_once(':')
            .is_some_and(|(n, _)| n.eq_ignore_ascii_case(name))
    })
}

/// An HTTP server on loopback that answers every request with `answer` (a
/// whole response, `{url}` replaced by its own address) and records the
/// request heads it gets.
async fn answering(answer: &str) -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answer = answer.replace("{url}", &url);
    let heads = Arc::new(Mutex::new(Vec::new()));
    let record = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            record
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&got).into_owned());
            let _ = s.write_all(answer.as_bytes()).await;
            let _ = s.shutdown().await;
        }
    });
    (url, heads)
}

const NOT_FOUND: &str = "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 40\r\nconnection: close\r\n\r\n{\"code\":404,\"message\":\"nothing here!!\"}";

/// Attack: robot A is told `--robot hop=URL,TOKEN_FILE`; the robot at URL
/// answers 307 to another host, and A used to follow it with its
/// `ZrobotAdmin`/`ZrobotUser` token (reqwest strips only `Authorization`).
/// Now no redirect is followed: the other host gets nothing, and the action
/// fails naming the robot URL, the `Location` and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_never_carries_the_token_to_another_host() {
    let tmp = tempfile::tempdir().unwrap();
    let url = repo(&tmp.path().join("acme/templates"));
    let (elsewhere, stolen) = answering(NOT_FOUND).await;
    let redirect = format!(
        "HTTP/1.1 307 Temporary Redirect\r\nlocation: {}/services\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        elsewhere.replace("127.0.0.1", "localhost")
    );
    let (hop, asked) = answering(&redirect).await;
    let token = tmp.path().join("hop.token");
    std::fs::write(&token, "token-for-hop-only").unwrap();
    let a = RobotProcess::start(
        &tmp.path().join("a"),
        &[
            "--god",
            "-T",
            &url,
            "--robot",
            &format!("hop={hop},{}", token.display()),
        ],
    );
    vm(&a, "vm1").await;
    let t = run(&a, "vm1", "get", json!({"robot": "hop", "node": "node1"})).await;
    assert_eq!(t.state, TaskState::Error);
    let msg = t.eco.unwrap().message;
    assert!(
        msg.contains("307")
            && msg.contains(&hop)
            && msg.contains("/services")
            && msg.contains("configure the final URL"),
        "{msg}"
    );
    // The configured robot was asked, with its token; the other host never.
    let asked = asked.lock().unwrap().clone();
    assert!(!asked.is_empty());
    assert!(
        asked.iter().all(|h| h.contains("token-for-hop-only")),
        "{asked:?}"
    );
    let stolen = stolen.lock().unwrap().clone();
    assert!(
        stolen.is_empty(),
        "the token went to another host: {stolen:?}"
    );
}

/// Attack: a template calls `robot.robots:get("edge", "http://elsewhere")`;
/// that used to re-point the known robot `edge` (configured by flag with a
/// token) at a URL of the template's choosing, with edge's token and secrets,
/// persistently. Now it is an error naming both URLs, edge stays where it is,
/// and a new name added by a template carries no credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_cannot_move_a_known_robot() {
    let tmp = tempfile::tempdir().unwrap();
    let url = repo(&tmp.path().join("acme/templates"));
    let b = RobotProcess::start(&tmp.path().join("b"), &["--god", "-T", &url]);
    let token = tmp.path().join("edge.token");
    std::fs::write(&token, b.god_token()).unwrap();
    let (elsewhere, stolen) = answering(NOT_FOUND).await;
    let mut a = RobotProcess::start(
        &tmp.path().join("a"),
        &[
            "--god",
            "-T",
            &url,
            "--robot",
            &format!("edge={},{}", b.url, token.display()),
        ],
    );
    vm(&a, "vm1").await;
    let t = run(
        &a,
        "vm1",
        "register",
        json!({"name": "edge", "url": elsewhere}),
    )
    .await;
    assert_eq!(t.state, TaskState::Error);
    let msg = t.eco.unwrap().message;
    assert!(
        msg.contains("robot `edge`") && msg.contains(&b.url) && msg.contains(&elsewhere),
        "{msg}"
    );
    // The same URL spelt another way is no move.
    let t = run(
        &a,
        "vm1",
        "register",
        json!({"name": "edge", "url": format!("{}/", b.url)}),
    )
    .await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    // Edge is still where it was, also after a restart of A.
    let t = run(
        &a,
        "vm1",
        "install",
        json!({"robot": "edge", "node": "node1"}),
    )
    .await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    a.restart();
    let t = run(
        &a,
        "vm1",
        "install",
        json!({"robot": "edge", "node": "node1"}),
    )
    .await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    assert!(stolen.lock().unwrap().is_empty());

    // A new name is fine, and carries no credentials.
    let t = run(
        &a,
        "vm1",
        "register",
        json!({"name": "other", "url": elsewhere}),
    )
    .await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    let t = run(&a, "vm1", "get", json!({"robot": "other", "node": "node1"})).await;
    assert_eq!(t.state, TaskState::Error);
    let heads = stolen.lock().unwrap().clone();
    assert!(!heads.is_empty());
    for h in &heads {
        assert!(
            !has_header(h, "zrobotadmin")
                && !has_header(h, "zrobotuser")
                && !has_header(h, "zrobotsecret"),
            "credentials went to a robot a template added: {h}"
        );
        assert!(!h.contains(&b.god_token()), "{h}");
    }
}

/// Writes settings as older versions kept them (one list of secrets per
/// robot) into the database of a robot that is not running.
async fn write_old_settings(data_dir: &std::path::Path, robots: serde_json::Value) {
    std::fs::create_dir_all(data_dir).unwrap();
    let store = zrobot_store::SqliteStore::open(
        &data_dir.join("zrobot.db"),
        zrobot_core::store::Retention {
            max_tasks: 1000,
            max_age_secs: 3600.0,
        },
    )
    .unwrap();
    let robot = zrobot_core::Robot::new(
        zrobot_core::RobotConfig::default(),
        std::sync::Arc::new(zrobot_lua::LuaEngine::default()),
        std::sync::Arc::new(store),
    );
    robot.put_setting("robots", robots).await.unwrap();
}

/// Attack: a robot presented every secret it held for another robot with
/// every call, so a call about one service told the other robot (and anyone
/// on the way) the secrets of all the others. Now a call about a service
/// carries its secret only; listing carries the list. Settings of older
/// versions (one list) are matched to their services and keep working; a
/// secret that matches nothing is kept; secrets of deleted services (by the
/// proxy's delete, or found gone) are dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_call_presents_only_the_secret_of_its_service() {
    let tmp = tempfile::tempdir().unwrap();
    let url = repo(&tmp.path().join("acme/templates"));
    let b = jwt_robot(tmp.path(), &url, &[]);
    let bc = b.god_client();
    let mut secrets = std::collections::BTreeMap::new();
    let mut guids = std::collections::BTreeMap::new();
    for (name, public) in [("n1", false), ("n2", false), ("shown", true)] {
        let created = bc
            .create_service(&ServiceCreate {
                template: "node".into(),
                name: name.into(),
                data: json!({}),
                public,
            })
            .await
            .unwrap();
        secrets.insert(name, created.secret);
        guids.insert(name, created.service.guid);
    }
    let relay = Relay::to(&b.url).await;
    let stale = "a-secret-of-a-service-long-gone";
    write_old_settings(
        &tmp.path().join("a"),
        json!({"b": {
            "url": relay.url,
            // A token too, so that B tells a deleted service (404) from a
            // refused secret (403).
            "token": b.god_token(),
            "secrets": [secrets["n1"], secrets["n2"], secrets["shown"], stale],
        }}),
    )
    .await;
    let mut a = RobotProcess::start(&tmp.path().join("a"), &["--god", "-T", &url]);
    vm(&a, "vm1").await;

    let scheduled_on = |relay: &Relay, guid: uuid::Uuid| -> Vec<Vec<String>> {
        relay
            .heads()
            .iter()
            .filter(|h| h.starts_with(&format!("POST /services/{guid}/task_list")))
            .map(|h| secrets_in(h))
            .collect()
    };
    for node in ["n1", "n2"] {
        relay.clear();
        let t = run(&a, "vm1", "install", json!({"robot": "b", "node": node})).await;
        assert_eq!(t.state, TaskState::Ok, "{node}: {:?}", t.eco);
        assert_eq!(
            scheduled_on(&relay, guids[node]),
            vec![vec![secrets[node].clone()]]
        );
        // Every call about that service carries its secret and no other.
        for h in relay.heads() {
            if h.contains(&format!("/services/{}", guids[node])) {
                assert_eq!(secrets_in(&h), vec![secrets[node].clone()], "{h}");
            }
        }
    }
    // The matching is kept across a restart, and a listing still carries
    // every secret, those that matched nothing (a public service's, a
    // stale one) included.
    a.restart();
    relay.clear();
    let t = run(&a, "vm1", "install", json!({"robot": "b", "node": "n1"})).await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    assert_eq!(
        scheduled_on(&relay, guids["n1"]),
        vec![vec![secrets["n1"].clone()]]
    );
    let heads = relay.heads();
    // Matching the old list asks with one secret at a time, no token.
    for probe in heads.iter().filter(|h| h.starts_with("GET /services ")) {
        assert!(secrets_in(probe).len() <= 1, "{probe}");
        assert!(!has_header(probe, "zrobotadmin"), "{probe}");
    }
    let listings: Vec<Vec<String>> = heads
        .iter()
        .filter(|h| h.starts_with("GET /services?name="))
        .map(|h| secrets_in(h))
        .collect();
    assert!(!listings.is_empty());
    for l in &listings {
        for s in [
            &secrets["n1"],
            &secrets["n2"],
            &secrets["shown"],
            &stale.to_owned(),
        ] {
            assert!(l.contains(s), "a listing lost a secret: {l:?}");
        }
    }

    // Deleted through the proxy: its secret is no longer presented.
    let t = run(&a, "vm1", "drop", json!({"robot": "b", "node": "n1"})).await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    // Deleted behind A's back: found gone (404), its secret is dropped too.
    let ac = a.god_client();
    let vm1 = ac.service_by_name("vm1").await.guid;
    let poke = ac
        .schedule(vm1, "poke", json!({"robot": "b", "node": "n2", "go": "go"}))
        .await
        .unwrap();
    assert!(
        eventually_async(Duration::from_secs(30), || async {
            ac.service(vm1)
                .await
                .is_ok_and(|s| s.state.iter().any(|r| r.category == "poke"))
        })
        .await
    );
    bc.delete_service(guids["n2"]).await.unwrap();
    vm(&a, "go").await;
    let poked = ac
        .wait_done(vm1, poke.guid, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(poked.state, TaskState::Ok, "{:?}", poked.eco);
    assert!(
        poked
            .result_value()
            .unwrap()
            .as_str()
            .unwrap()
            .contains("404"),
        "{poked:?}"
    );
    relay.clear();
    let t = run(&a, "vm1", "get", json!({"robot": "b", "node": "shown"})).await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    let heads = relay.heads();
    let listing = heads
        .iter()
        .find(|h| h.starts_with("GET /services?name="))
        .unwrap();
    let presented = secrets_in(listing);
    assert!(!presented.contains(&secrets["n1"]), "{presented:?}");
    assert!(!presented.contains(&secrets["n2"]), "{presented:?}");
    assert!(presented.contains(&secrets["shown"]) && presented.contains(&stale.to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graph_of_pending_work_shows_waits_across_robots() {
    let tmp = tempfile::tempdir().unwrap();
    let url = repo(&tmp.path().join("acme/templates"));
    let b = RobotProcess::start(&tmp.path().join("b"), &["--god", "-T", &url]);
    let a = RobotProcess::start(
        &tmp.path().join("a"),
        &["--god", "-T", &url, "--robot", &format!("b={}", b.url)],
    );
    let (ac, bc) = (a.god_client(), b.god_client());
    vm(&a, "vm1").await;
    let node = new_service(&bc, "node", "node1").await;
    // A's vm1 waits on node1's `slow` on B; behind it on B, another `slow`.
    let vm1 = ac.service_by_name("vm1").await.guid;
    let waiting = ac
        .schedule(
            vm1,
            "wait_slow",
            json!({"robot": "b", "node": "node1", "s": 3, "timeout": 30}),
        )
        .await
        .unwrap();
    let marked = eventually_async(Duration::from_secs(20), || async {
        let s = ac.service(vm1).await.unwrap();
        s.state.iter().any(|r| r.category == "remote")
    })
    .await;
    assert!(marked, "vm1 asked node1");
    let queued = bc.schedule(node, "slow", json!({"s": 0})).await.unwrap();
    // A's local wait on its own service, to see a local edge too.
    let helper = new_service(&ac, "node", "helper").await;
    let asker = new_service(&ac, "node", "asker").await;
    let local = ac
        .schedule(asker, "ask_local", json!({"other": "helper", "s": 3}))
        .await
        .unwrap();

    let ga = eventually_graph(&ac, |g| g.edges.len() >= 2).await;
    let edge = |from: uuid::Uuid| ga.edges.iter().find(|e| e.from == from).cloned();
    let remote_edge = edge(waiting.guid).expect("vm1's task waits on something");
    assert_eq!(remote_edge.kind, "waits_on");
    let remote = ga.tasks.iter().find(|t| t.guid == remote_edge.to).unwrap();
    assert_eq!(remote.robot.as_deref(), Some("b"));
    assert_eq!(
        (remote.service_name.as_str(), remote.action_name.as_str()),
        ("node1", "slow")
    );
    let local_edge = edge(local.guid).expect("asker's task waits on helper's");
    let target = ga.tasks.iter().find(|t| t.guid == local_edge.to).unwrap();
    assert_eq!(
        (target.service_guid, target.robot.as_deref()),
        (helper, None)
    );

    // B shows who asked, and the task queued behind.
    let gb = eventually_graph(&bc, |g| g.tasks.len() >= 2).await;
    let running = gb.tasks.iter().find(|t| t.guid == remote.guid).unwrap();
    assert_eq!(
        running.caller_task.as_deref(),
        Some(waiting.guid.to_string().as_str())
    );
    assert_eq!(running.state, Some(TaskState::Running));
    assert!(gb
        .edges
        .iter()
        .any(|e| e.from == queued.guid && e.to == remote.guid && e.kind == "queued_behind"));

    // The CLI draws it.
    let home = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(zrobot_bin())
            .args(args)
            .env("XDG_CONFIG_HOME", home.path())
            .env("ZROBOT_URL", &a.url)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let token = std::fs::read_to_string(a.data_dir.join("god.token")).unwrap();
    cli(&["robot", "connect", "a", &a.url, "--god-token", token.trim()]);
    let text = cli(&["graph"]);
    assert!(
        text.contains("waits on `slow` of `node1` on robot b"),
        "{text}"
    );
    assert!(text.contains("waits on `slow` of `helper`"), "{text}");
    let dot = cli(&["graph", "--dot"]);
    assert!(dot.starts_with("digraph pending {"), "{dot}");
    assert!(
        dot.contains("cluster_robot_b")
            && dot.contains(&format!("\"{}\" -> \"{}\"", waiting.guid, remote.guid)),
        "{dot}"
    );
}

async fn eventually_graph(
    c: &zrobot_client::Client,
    ready: impl Fn(&zrobot_client::wire::Graph) -> bool,
) -> zrobot_client::wire::Graph {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let g = c.graph().await.unwrap();
        if ready(&g) || Instant::now() > deadline {
            return g;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_waits_closing_a_cycle_through_two_robots_at_once_do_not_hang() {
    let tmp = tempfile::tempdir().unwrap();
    let url = repo(&tmp.path().join("acme/templates"));
    let a = RobotProcess::start(&tmp.path().join("a"), &["--god", "-T", &url]);
    let b = RobotProcess::start(
        &tmp.path().join("b"),
        &["--god", "-T", &url, "--robot", &format!("a={}", a.url)],
    );
    vm(&a, "vm1").await;
    let t = run(&a, "vm1", "register", json!({"name": "b", "url": b.url})).await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    let (ac, bc) = (a.god_client(), b.god_client());
    let on_a = new_service(&ac, "node", "left").await;
    let on_b = new_service(&bc, "node", "right").await;
    // At the same moment: left (on A) waits on a task queued behind right
    // (on B), and right waits on a task queued behind left.
    let started = Instant::now();
    let (l, r) = tokio::join!(
        ac.schedule(on_a, "cross", json!({"robot": "b", "service": "right"})),
        bc.schedule(on_b, "cross", json!({"robot": "a", "service": "left"})),
    );
    let (l, r) = (l.unwrap(), r.unwrap());
    let (l, r) = tokio::join!(
        ac.wait_done(on_a, l.guid, Duration::from_secs(40)),
        bc.wait_done(on_b, r.guid, Duration::from_secs(40)),
    );
    let (l, r) = (l.unwrap(), r.unwrap());
    let failed: Vec<_> = [&l, &r]
        .into_iter()
        .filter(|t| t.state == TaskState::Error)
        .collect();
    assert!(!failed.is_empty(), "neither wait failed: {l:?} {r:?}");
    let first_done = [&l, &r]
        .iter()
        .filter_map(|t| t.duration)
        .fold(f64::MAX, f64::min);
    assert!(
        first_done < 5.0,
        "the cycle took {first_done}s to be found ({:?} in all)",
        started.elapsed()
    );
    let msg = &failed[0].eco.as_ref().unwrap().message;
    assert!(msg.contains("deadlock across robots"), "{msg}");
    assert!(
        msg.contains("`cross` of service `left`") && msg.contains("`cross` of service `right`"),
        "the message names the cycle: {msg}"
    );
}
