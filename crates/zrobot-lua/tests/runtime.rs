//! Services, task lists, policies, producers and consumers, through the public
//! core API with real Lua templates.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use zrobot_core::robot::NewService;
use zrobot_core::service::LogLevel;
use zrobot_core::{CoreError, Priority, RobotConfig, ServiceFilter, TaskState};
use zrobot_lua::LuaConfig;

const NODE_YAML: &str = r#"
version: 1.2.0
data:
  type: object
  required: [hostname]
  properties:
    hostname: {type: string}
    port: {type: integer, default: 22}
    vms: {type: array, items: {type: string}, default: []}
actions:
  create_vm:
    args:
      type: object
      required: [name]
      properties: {name: {type: string}, memory: {type: integer, default: 1024}}
  flaky:
    retry: {tries: 3, delay: 0.01, backoff: 2}
  slow:
    timeout: 0.2
  monitor:
    recurring: 0.05
on_delete: [uninstall, forget]
"#;

const NODE_LUA: &str = r#"
local node = {}

function node.init(self)
  self.state:set("lifecycle", "init", "ok")
end

function node.validate(self)
  if self.data.hostname == "" then error("hostname must not be empty") end
end

function node.create_vm(self, args)
  table.insert(self.data.vms, args.name)
  return {ip = "10.0.0." .. #self.data.vms, memory = args.memory}
end

function node.echo(self, args) return args end

function node.fail(self)
  local x = nil
  error("boom on purpose")
end

function node.flaky(self)
  self.log:info("flaky run")
  error("still flaky")
end

function node.slow(self) robot.sleep(10) end

function node.monitor(self)
  robot.sleep(0.2)
  self.state:set("network", "up", "ok")
end

function node.set_port(self, args) self.data.port = args.port end

function node.break_data(self) self.data.port = "not a number" end

function node.uninstall(self)
  self.log:info("uninstall ran")
  robot.services:get({name = "recorder"}):schedule_action("note", {what = "uninstall " .. self.name})
end

function node.forget(self)
  robot.services:get({name = "recorder"}):schedule_action("note", {what = "forget " .. self.name})
end

function node.state_ops(self)
  self.state:set("a", "x", "ok")
  self.state:set("a", "y", "warning")
  local all = self.state:get("a")
  local one = self.state:get("a", "y")
  self.state:check("a", "x", "ok")
  local ok, err = pcall(function() self.state:check("a", "y", "ok") end)
  self.state:delete("a", "x")
  return {all = all, one = one, err = tostring(err), missing = self.state:get("nothing") == nil}
end

return node
"#;

const RECORDER_LUA: &str = r#"
local r = {}
function r.note(self, args)
  table.insert(self.data.notes, args.what)
end
function r.slow(self, args) robot.sleep(args.s or 0.2) return "slept" end
function r.noop(self) end
return r
"#;

const RECORDER_YAML: &str =
    "version: 1.0.0\ndata: {type: object, properties: {notes: {type: array, default: []}}}\n";

fn node_repo() -> Repo {
    let repo = Repo::new();
    repo.template("node", NODE_YAML, NODE_LUA);
    repo.template("recorder", RECORDER_YAML, RECORDER_LUA);
    repo
}

#[tokio::test]
async fn a_service_is_created_with_defaults_and_runs_init() {
    let robot = robot();
    let repo = node_repo();
    load(&robot, &repo);
    let svc = create(&robot, "node", "n1", json!({"hostname": "h1"})).await;
    assert_eq!(
        *svc.data(),
        json!({"hostname": "h1", "port": 22, "vms": []})
    );
    assert_eq!(svc.state()["lifecycle"]["init"].as_str(), "ok");
    assert_eq!(svc.template_uid(), "github.com/acme/templates/node/1.2.0");
    assert_eq!(
        uuid::Uuid::parse_str(&svc.guid.to_string())
            .unwrap()
            .get_version_num(),
        4
    );
    assert!(robot.service_by_name("n1").is_some());
}

#[tokio::test]
async fn invalid_data_names_the_field_and_creates_nothing() {
    let robot = robot();
    let repo = node_repo();
    load(&robot, &repo);
    let err = robot
        .create_service(NewService {
            template: "node".into(),
            name: "n1".into(),
            data: json!({"hostname": "h", "port": "22"}),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, CoreError::InvalidData { .. }), "{err:?}");
    assert!(err.to_string().contains("/port"), "{err}");
    let err = robot
        .create_service(NewService {
            template: "node".into(),
            name: "n1".into(),
            data: json!({}),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("hostname"), "{err}");
    assert_eq!(robot.service_count(), 0);
}

#[tokio::test]
async fn a_failing_validate_removes_the_service_and_says_why() {
    let robot = robot();
    let repo = node_repo();
    load(&robot, &repo);
    let err = robot
        .create_service(NewService {
            template: "node".into(),
            name: "n1".into(),
            data: json!({"hostname": ""}),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("validate") && msg.contains("hostname must not be empty"),
        "{msg}"
    );
    let line = NODE_LUA
        .lines()
        .position(|l| l.contains("hostname must not be empty"))
        .unwrap()
        + 1;
    assert!(msg.contains(&format!("node.lua:{line}")), "{msg}");
    assert_eq!(robot.service_count(), 0);
    // The name is free again.
    create(&robot, "node", "n1", json!({"hostname": "ok"})).await;
}

#[tokio::test]
async fn names_are_unique_and_checked() {
    let robot = robot();
    let repo = node_repo();
    load(&robot, &repo);
    create(&robot, "node", "n1", json!({"hostname": "h"})).await;
    let err = robot
        .create_service(NewService {
            template: "node".into(),
            name: "n1".into(),
            data: json!({"hostname": "h"}),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, CoreError::NameTaken(ref n) if n == "n1"),
        "{err}"
    );
    let err = robot
        .create_service(NewService {
            template: "node".into(),
            name: "bad name/".into(),
            data: json!({"hostname": "h"}),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, CoreError::InvalidName(_)));
    let err = robot
        .create_service(NewService {
            template: "nosuch".into(),
            name: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, CoreError::TemplateNotFound(_)));
}

#[tokio::test]
async fn services_are_found_by_every_filter_key() {
    let robot = robot();
    let repo = node_repo();
    load(&robot, &repo);
    let n1 = create(&robot, "node", "n1", json!({"hostname": "h"})).await;
    create(&robot, "node", "n2", json!({"hostname": "h"})).await;
    create(&robot, "recorder", "recorder", json!({})).await;
    let names = |f: ServiceFilter| {
        robot
            .find_services(&f)
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(ServiceFilter::default()), ["n1", "n2", "recorder"]);
    assert_eq!(names(ServiceFilter::by_name("n2")), ["n2"]);
    assert_eq!(
        names(ServiceFilter {
            guid: Some(n1.guid.to_string()),
            ..Default::default()
        }),
        ["n1"]
    );
    assert_eq!(
        names(ServiceFilter {
            template_uid: Some("github.com/acme/templates/node/1.2.0".into()),
            ..Default::default()
        }),
        ["n1", "n2"]
    );
    assert_eq!(
        names(ServiceFilter {
            template_uid: Some("recorder".into()),
            ..Default::default()
        }),
        ["recorder"]
    );
    assert_eq!(
        names(ServiceFilter {
            template_host: Some("github.com".into()),
            ..Default::default()
        })
        .len(),
        3
    );
    assert_eq!(
        names(ServiceFilter {
            template_account: Some("acme".into()),
            ..Default::default()
        })
        .len(),
        3
    );
    assert_eq!(
        names(ServiceFilter {
            template_repo: Some("templates".into()),
            ..Default::default()
        })
        .len(),
        3
    );
    assert_eq!(
        names(ServiceFilter {
            template_name: Some("node".into()),
            ..Default::default()
        }),
        ["n1", "n2"]
    );
    assert_eq!(
        names(ServiceFilter {
            template_version: Some("1.0.0".into()),
            ..Default::default()
        }),
        ["recorder"]
    );
    assert!(names(ServiceFilter {
        template_account: Some("other".into()),
        ..Default::default()
    })
    .is_empty());
    assert!(robot.lookup(&n1.guid.to_string()).is_some());
    assert!(robot.lookup("n2").is_some());
}

#[tokio::test]
async fn a_task_returns_its_result_and_saves_data() {
    let robot = robot();
    let repo = node_repo();
    load(&robot, &repo);
    let svc = create(&robot, "node", "n1", json!({"hostname": "h"})).await;
    let t = run(&robot, &svc, "create_vm", json!({"name": "vm1"})).await;
    assert_eq!(t.state, TaskState::Ok, "{t:?}");
    assert_eq!(t.result, Some(json!({"ip": "10.0.0.1", "memory": 1024})));
    assert_eq!(t.args, json!({"name": "vm1", "memory": 1024}));
    assert_eq!(t.attempt, 1);
    assert!(t.started.is_some() && t.duration.is_some() && t.created > 0.0);
    assert_eq!(svc.data()["vms"], json!(["vm1"]));
    let t = run(
        &robot,
        &svc,
        "echo",
        json!({"a": [1, 2, {"b": null}], "e": {}}),
    )
    .await;
    assert_eq!(t.result, Some(json!({"a": [1, 2, {"b": null}], "e": {}})));
}

#[tokio::test]
async fn a_lua_error_gives_an_eco_with_file_line_and_traceback() {
    let robot = robot();
    let repo = node_repo();
    load(&robot, &repo);
    let svc = create(&robot, "node", "n1", json!({"hostname": "h"})).await;
    let t = run(&robot, &svc, "fail", json!({})).await;
    assert_eq!(t.state, TaskState::Error);
    let eco = t.eco.unwrap();
    assert_eq!(eco.category, "lua.error");
    let line = NODE_LUA
        .lines()
        .position(|l| l.contains("boom on purpose"))
        .unwrap()
        + 1;
    assert_eq!(
        eco.message,
        format!("templates/node/node.lua:{line}: boom on purpose")
    );
    assert!(
        eco.trace.contains("stack traceback") && eco.trace.contains(&format!("node.lua:{line}")),
        "{}",
        eco.trace
    );
    assert_eq!(eco.count, 1);
    assert!(eco.time_first <= eco.time_last);
    let log = svc.log_lines();
    assert!(
        log.iter()
            .any(|l| l.level == LogLevel::Error && l.message.contains("boom on purpose")),
        "{log:?}"
    );
}

#[tokio::test]
async fn unknown_actions_and_bad_args_are_refused_when_scheduled() {
    let robot = robot();
    let repo = node_repo();
    load(&robot, &repo);
    let svc = create(&robot, "node", "n1", json!({"hostname": "h"})).await;
    for bad in ["nosuch", "_helper", "init", "validate"] {
        let err = robot.schedule(&svc, bad, json!({})).await.unwrap_err();
        assert!(
            matches!(err, CoreError::UnknownAction { .. }),
            "{bad}: {err:?}"
        );
        assert!(err.to_string().contains("create_vm"), "{err}");
    }
    let err = robot
        .schedule(&svc, "create_vm", json!({"memory": 1}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CoreError::InvalidArgs { .. }) && err.to_string().contains("name"),
        "{err}"
    );
    let err = robot
        .schedule(&svc, "create_vm", json!({"name": 5}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/name"), "{err}");
    assert!(robot.tasks(&svc, true).await.unwrap().is_empty());
}

#[tokio::test]
async fn tasks_run_one_at_a_time_system_first_then_fifo() {
    let robot = robot();
    let repo = node_repo();
    load(&robot, &repo);
    let rec = create(&robot, "recorder", "recorder", json!({})).await;
    // Occupy the service so the rest queue up behind.
    let blocker = robot
        .schedule(&rec, "slow", json!({"s": 0.3}))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || blocker.state()
            == TaskState::Running)
        .await
    );
    let mut tasks = Vec::new();
    for (i, p) in [
        Priority::Normal,
        Priority::Normal,
        Priority::System,
        Priority::Normal,
        Priority::System,
    ]
    .into_iter()
    .enumerate()
    {
        tasks.push(
            robot
                .schedule_with(&rec, "note", json!({"what": format!("{i}")}), p)
                .await
                .unwrap(),
        );
    }
    let listed = robot.tasks(&rec, false).await.unwrap();
    assert_eq!(listed.len(), 6);
    assert_eq!(listed[0].state, TaskState::Running);
    assert!(listed[1..].iter().all(|t| t.state == TaskState::New));
    for t in &tasks {
        tokio::time::timeout(Duration::from_secs(10), t.done())
            .await
            .unwrap();
    }
    assert_eq!(rec.data()["notes"], json!(["2", "4", "0", "1", "3"]));
    let all = robot.tasks(&rec, true).await.unwrap();
    assert_eq!(all.len(), 6);
    assert!(all.iter().all(|t| t.state == TaskState::Ok));
}

#[tokio::test]
async fn a_waiting_task_can_be_cancelled_but_not_a_running_one() {
    let robot = robot();
    let repo = node_repo();
    load(&robot, &repo);
    let rec = create(&robot, "recorder", "recorder", json!({})).await;
    let running = robot
        .schedule(&rec, "slow", json!({"s": 0.3}))
        .await
        .unwrap();
    let waiting = robot
        .schedule(&rec, "note", json!({"what": "x"}))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || running.state()
            == TaskState::Running)
        .await
    );
    robot.cancel_task(&rec, waiting.guid).await.unwrap();
    let r = waiting.record();
    assert_eq!(r.state, TaskState::Error);
    assert_eq!(r.eco.unwrap().category, "task.cancelled");
    let err = robot.cancel_task(&rec, running.guid).await.unwrap_err();
    assert!(
        matches!(err, CoreError::TaskNotCancellable { .. }),
        "{err:?}"
    );
    running.done().await;
    let err = robot.cancel_task(&rec, running.guid).await.unwrap_err();
    assert!(err.to_string().contains("ok"), "{err}");
    let err = robot
        .cancel_task(&rec, uuid::Uuid::new_v4())
        .await
        .unwrap_err();
    assert!(matches!(err, CoreError::TaskNotFound(_)));
    assert_eq!(rec.data()["notes"], json!([]));
}

#[tokio::test]
async fn a_timeout_stops_the_action_with_a_timeout_eco() {
    let robot = robot();
    let repo = node_repo();
    load(&robot, &repo);
    let svc = create(&robot, "node", "n1", json!({"hostname": "h"})).await;
    let t = run(&robot, &svc, "slow", json!({})).await;
    assert_eq!(t.state, TaskState::Error);
    let eco = t.eco.unwrap();
    assert_eq!(eco.category, "action.timeout");
    assert!(eco.message.contains("timeout of 0.2s"), "{}", eco.message);
    assert!(t.duration.unwrap() < 5.0);
    // The service goes on.
    assert_eq!(
        run(&robot, &svc, "echo", json!({})).await.state,
        TaskState::Ok
    );
}

#[tokio::test]
async fn retries_run_every_try_and_show_them() {
    let robot = robot();
    let repo = node_repo();
    load(&robot, &repo);
    let svc = create(&robot, "node", "n1", json!({"hostname": "h"})).await;
    let t = run(&robot, &svc, "flaky", json!({})).await;
    assert_eq!(t.state, TaskState::Error);
    assert_eq!(t.attempt, 3);
    let eco = t.eco.unwrap();
    assert_eq!(eco.count, 3);
    assert!(eco.message.contains("still flaky"));
    // Waits of 0.01 then 0.02 s between the runs.
    assert!(eco.time_last - eco.time_first >= 0.03 - 1e-3, "{eco:?}");
    let runs = svc
        .log_lines()
        .iter()
        .filter(|l| l.message == "flaky run")
        .count();
    assert_eq!(runs, 3);
}

#[tokio::test]
async fn data_that_breaks_the_schema_is_not_saved() {
    let robot = robot();
    let repo = node_repo();
    load(&robot, &repo);
    let svc = create(&robot, "node", "n1", json!({"hostname": "h"})).await;
    assert_eq!(
        run(&robot, &svc, "set_port", json!({"port": 2222}))
            .await
            .state,
        TaskState::Ok
    );
    let t = run(&robot, &svc, "break_data", json!({})).await;
    assert_eq!(t.state, TaskState::Error);
    let eco = t.eco.unwrap();
    assert_eq!(eco.category, "data.invalid");
    assert!(eco.message.contains("/port"), "{}", eco.message);
    assert_eq!(svc.data()["port"], json!(2222));
}

#[tokio::test]
async fn the_state_table_api() {
    let robot = robot();
    let repo = node_repo();
    load(&robot, &repo);
    let svc = create(&robot, "node", "n1", json!({"hostname": "h"})).await;
    let t = run(&robot, &svc, "state_ops", json!({})).await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    let r = t.result.unwrap();
    assert_eq!(r["all"], json!({"x": "ok", "y": "warning"}));
    assert_eq!(r["one"], json!({"y": "warning"}));
    assert!(
        r["err"]
            .as_str()
            .unwrap()
            .contains("state check failed: a/y is warning, expected ok"),
        "{r}"
    );
    assert_eq!(r["missing"], json!(true));
    assert_eq!(svc.state_get("a", None).len(), 1);
}

#[tokio::test]
async fn recurring_actions_never_queue_twice_and_stop_on_delete() {
    let robot = robot();
    let repo = node_repo();
    load(&robot, &repo);
    create(&robot, "recorder", "recorder", json!({})).await;
    let svc = create(&robot, "node", "n1", json!({"hostname": "h"})).await;
    // monitor recurs every 0.05 s but takes 0.2 s: it must never wait twice.
    let mut seen_running = false;
    let until = tokio::time::Instant::now() + Duration::from_millis(800);
    while tokio::time::Instant::now() < until {
        let waiting = svc
            .waiting_tasks()
            .iter()
            .filter(|t| t.action_name() == "monitor")
            .count();
        assert!(waiting <= 1, "monitor queued {waiting} times");
        seen_running |= svc
            .running_task()
            .is_some_and(|t| t.action_name() == "monitor");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen_running);
    assert!(
        eventually(Duration::from_secs(5), || !svc
            .state_get("network", None)
            .is_empty())
        .await
    );
    robot.delete_service(svc.guid).await.unwrap();
    let before = robot.service_count();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(svc.waiting_tasks().is_empty() && svc.running_task().is_none());
    assert_eq!(robot.service_count(), before);
}

#[tokio::test]
async fn delete_drops_waiting_tasks_and_runs_on_delete_in_order() {
    let robot = robot();
    let repo = node_repo();
    load(&robot, &repo);
    let rec = create(&robot, "recorder", "recorder", json!({})).await;
    let svc = create(&robot, "node", "n1", json!({"hostname": "h"})).await;
    let slow = robot.schedule(&svc, "slow", json!({})).await.unwrap();
    let queued = robot.schedule(&svc, "echo", json!({})).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || slow.state()
            == TaskState::Running)
        .await
    );
    robot.delete_service(svc.guid).await.unwrap();
    assert_eq!(queued.record().eco.unwrap().category, "service.deleted");
    assert!(slow.state().is_done());
    assert!(robot.service(svc.guid).is_none());
    assert!(robot.service_by_name("n1").is_none());
    assert!(
        eventually(Duration::from_secs(5), || rec.data()["notes"]
            .as_array()
            .unwrap()
            .len()
            == 2)
        .await
    );
    assert_eq!(rec.data()["notes"], json!(["uninstall n1", "forget n1"]));
    let err = robot.delete_service(svc.guid).await.unwrap_err();
    assert!(matches!(err, CoreError::ServiceNotFound(_)));
    let err = robot.schedule(&svc, "echo", json!({})).await.unwrap_err();
    assert!(matches!(err, CoreError::ServiceDeleting(_)));
}

const PRODUCER_LUA: &str = r#"
local p = {}
function p.add(self, args) return {sum = args.a + args.b, by = self.name} end
function p.fail(self) error("producer says no") end
function p.slow(self) robot.sleep(0.3) return "late" end
function p.noop(self) end
function p.ask_back(self, args)
  local c = robot.services:get({name = args.consumer})
  return c:schedule_action("noop", {}):wait(5)
end
return p
"#;

const CONSUMER_LUA: &str = r#"
local c = {}
function c.use(self, args)
  local p = robot.services:get({name = args.producer})
  local t = p:schedule_action("add", {a = 2, b = 3})
  local r = t:wait(10)
  self.data.got = r.sum
  return {sum = r.sum, by = r.by, state = t:state(), result = t:result().sum}
end
function c.use_fail(self, args)
  local p = robot.services:get({name = args.producer})
  local r = p:schedule_action("fail", {}):wait(10)
  return r
end
function c.wait_short(self, args)
  local p = robot.services:get({name = args.producer})
  return p:schedule_action("slow", {}):wait(0.05)
end
function c.wait_self(self)
  return self:schedule_action("noop", {}):wait(5)
end
function c.cycle(self, args)
  local p = robot.services:get({name = args.producer})
  return p:schedule_action("ask_back", {consumer = self.name}):wait(5)
end
function c.make(self, args)
  local s = robot.services:find_or_create("producer", args.name, {})
  local again = robot.services:find_or_create("producer", args.name, {})
  return {same = s.guid == again.guid, exists = robot.services:exists({name = args.name}),
          n = #robot.services:find({template_name = "producer"}), actions = s:actions(),
          uid = s.template_uid}
end
function c.noop(self) end
function c.get_missing(self) return robot.services:get({name = "nobody"}) end
function c.bad_filter(self) return robot.services:find({nam = "x"}) end
function c.delete_other(self, args) robot.services:get({name = args.name}):delete() end
function c.fan_in(self, args)
  local p = robot.services:get({name = args.producer})
  return p:schedule_action("slow", {}):wait(30)
end
return c
"#;

fn pc_repo() -> Repo {
    let repo = Repo::new();
    repo.template("producer", "version: 1.0.0\n", PRODUCER_LUA);
    repo.template(
        "consumer",
        "version: 1.0.0\ndata: {type: object, properties: {got: {type: integer}}}\n",
        CONSUMER_LUA,
    );
    repo
}

#[tokio::test]
async fn a_consumer_waits_on_a_producer_and_gets_its_result() {
    let robot = robot();
    let repo = pc_repo();
    load(&robot, &repo);
    create(&robot, "producer", "p", json!({})).await;
    let c = create(&robot, "consumer", "c", json!({})).await;
    let t = run(&robot, &c, "use", json!({"producer": "p"})).await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    assert_eq!(
        t.result.unwrap(),
        json!({"sum": 5, "by": "p", "state": "ok", "result": 5})
    );
    assert_eq!(c.data()["got"], json!(5));
}

#[tokio::test]
async fn a_failed_producer_raises_its_eco_message_in_the_consumer() {
    let robot = robot();
    let repo = pc_repo();
    load(&robot, &repo);
    create(&robot, "producer", "p", json!({})).await;
    let c = create(&robot, "consumer", "c", json!({})).await;
    let t = run(&robot, &c, "use_fail", json!({"producer": "p"})).await;
    let eco = t.eco.unwrap();
    assert!(
        eco.message.contains("producer says no") && eco.message.contains("`fail` of service `p`"),
        "{}",
        eco.message
    );
    assert!(
        eco.message.starts_with("templates/consumer/consumer.lua:"),
        "{}",
        eco.message
    );
    let t = run(&robot, &c, "wait_short", json!({"producer": "p"})).await;
    assert!(t.eco.unwrap().message.contains("timed out"));
}

#[tokio::test]
async fn waiting_on_a_task_queued_behind_oneself_fails_at_once() {
    let robot = robot();
    let repo = pc_repo();
    load(&robot, &repo);
    let c = create(&robot, "consumer", "c", json!({})).await;
    let t = run(&robot, &c, "wait_self", json!({})).await;
    let eco = t.eco.unwrap();
    assert!(eco.message.contains("deadlock"), "{}", eco.message);
    assert!(
        t.duration.unwrap() < 4.0,
        "it waited instead of failing at once"
    );
}

#[tokio::test]
async fn a_cycle_of_services_waiting_on_each_other_is_named() {
    let robot = robot();
    let repo = pc_repo();
    load(&robot, &repo);
    create(&robot, "producer", "p", json!({})).await;
    let c = create(&robot, "consumer", "c", json!({})).await;
    let t = run(&robot, &c, "cycle", json!({"producer": "p"})).await;
    let eco = t.eco.unwrap();
    // p's `ask_back` waits on c's queued `noop`, queued behind c's `cycle`, which waits on `ask_back`.
    assert!(eco.message.contains("deadlock"), "{}", eco.message);
    assert!(
        eco.message.contains("`ask_back` of service `p`"),
        "{}",
        eco.message
    );
    assert!(t.duration.unwrap() < 4.0);
}

#[tokio::test]
async fn services_are_created_and_found_from_actions() {
    let robot = robot();
    let repo = pc_repo();
    load(&robot, &repo);
    let c = create(&robot, "consumer", "c", json!({})).await;
    let t = run(&robot, &c, "make", json!({"name": "made"})).await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    let r = t.result.unwrap();
    assert_eq!(r["same"], json!(true));
    assert_eq!(r["exists"], json!(true));
    assert_eq!(r["n"], json!(1));
    assert_eq!(
        r["actions"],
        json!(["add", "ask_back", "fail", "noop", "slow"])
    );
    assert_eq!(r["uid"], json!("github.com/acme/templates/producer/1.0.0"));
    let t = run(&robot, &c, "get_missing", json!({})).await;
    let m = t.eco.unwrap().message;
    assert!(m.contains(r#"no service matches {"name":"nobody"}"#), "{m}");
    let t = run(&robot, &c, "bad_filter", json!({})).await;
    let m = t.eco.unwrap().message;
    assert!(m.contains("nam") && m.contains("template_name"), "{m}");
    let t = run(&robot, &c, "delete_other", json!({"name": "made"})).await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    assert!(robot.service_by_name("made").is_none());
}

#[tokio::test]
async fn thousands_of_consumers_wait_at_once() {
    let robot = robot();
    let repo = pc_repo();
    load(&robot, &repo);
    let mut producers = Vec::new();
    for i in 0..200 {
        producers.push(create(&robot, "producer", &format!("p{i}"), json!({})).await);
    }
    let mut tasks = Vec::new();
    for i in 0..2000 {
        let c = create(&robot, "consumer", &format!("c{i}"), json!({})).await;
        tasks.push(
            robot
                .schedule(&c, "fan_in", json!({"producer": format!("p{}", i % 200)}))
                .await
                .unwrap(),
        );
    }
    // Every consumer is suspended in its wait at the same time.
    assert!(
        eventually(Duration::from_secs(20), || tasks
            .iter()
            .filter(|t| t.state() == TaskState::Running)
            .count()
            >= 1900)
        .await
    );
    for t in &tasks {
        let r = tokio::time::timeout(Duration::from_secs(60), t.done())
            .await
            .unwrap();
        assert_eq!(r.state, TaskState::Ok, "{:?}", r.eco);
        assert_eq!(r.result, Some(json!("late")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_services_and_a_hundred_thousand_tasks() {
    let robot = robot();
    let repo = node_repo();
    load(&robot, &repo);
    let mut services = Vec::new();
    for i in 0..10_000 {
        services.push(create(&robot, "recorder", &format!("r{i}"), json!({})).await);
    }
    assert_eq!(robot.service_count(), 10_000);
    let mut handles = Vec::new();
    for chunk in services.chunks(1000) {
        let robot = robot.clone();
        let chunk = chunk.to_vec();
        handles.push(tokio::spawn(async move {
            let mut last = Vec::new();
            for round in 0..10 {
                for s in &chunk {
                    let t = robot.schedule(s, "noop", json!({})).await.unwrap();
                    if round == 9 {
                        last.push(t);
                    }
                }
            }
            last
        }));
    }
    let mut last = Vec::new();
    for h in handles {
        last.extend(h.await.unwrap());
    }
    for t in last {
        let r = tokio::time::timeout(Duration::from_secs(120), t.done())
            .await
            .unwrap();
        assert_eq!(r.state, TaskState::Ok);
    }
    let mut done = 0;
    for s in &services {
        let tasks = robot.tasks(s, true).await.unwrap();
        assert!(tasks.iter().all(|t| t.state == TaskState::Ok));
        done += tasks.len();
    }
    assert_eq!(done, 100_000);
}

#[tokio::test]
async fn deleting_a_service_bounds_its_running_task() {
    let config = RobotConfig {
        delete_running_bound: Duration::from_millis(100),
        ..Default::default()
    };
    let robot = robot_with(config, LuaConfig::default());
    let repo = node_repo();
    load(&robot, &repo);
    let rec = create(&robot, "recorder", "rec", json!({})).await;
    let t = robot
        .schedule(&rec, "slow", json!({"s": 30}))
        .await
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || t.state() == TaskState::Running).await);
    let started = std::time::Instant::now();
    robot.delete_service(rec.guid).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let r = t.record();
    assert_eq!(r.state, TaskState::Error);
    assert_eq!(r.eco.unwrap().category, "action.stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_find_or_create_makes_one_service() {
    let robot = robot();
    let repo = pc_repo();
    load(&robot, &repo);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let c = create(&robot, "consumer", &format!("c{i}"), json!({})).await;
        tasks.push(
            robot
                .schedule(&c, "make", json!({"name": "shared"}))
                .await
                .unwrap(),
        );
    }
    for t in tasks {
        let r = tokio::time::timeout(Duration::from_secs(30), t.done())
            .await
            .unwrap();
        assert_eq!(r.state, TaskState::Ok, "{:?}", r.eco);
        assert_eq!(r.result.unwrap()["n"], json!(1));
    }
}

/// A recurring action that fails shows in the state table
/// (`recurring/<action>=error`) and goes back to `ok` once it works again; a
/// healthy one adds nothing.
#[tokio::test]
async fn a_failing_recurring_action_shows_in_the_state_table() {
    let robot = robot();
    let repo = Repo::new();
    repo.template(
        "ticker",
        "version: 1.0.0\nactions:\n  tick:\n    recurring: 0.05\n",
        r#"
local t = {}
function t.tick(self)
  if self.state:get("mode", "broken") then error("tick cannot reach its host") end
end
return t
"#,
    );
    load(&robot, &repo);
    let svc = create(&robot, "ticker", "t1", json!({})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        svc.state_get("recurring", None).is_empty(),
        "healthy: nothing"
    );
    svc.state_set("mode", "broken", zrobot_core::TagState::Error);
    assert!(
        eventually(Duration::from_secs(5), || svc
            .state_get("recurring", Some("tick"))
            .get("tick")
            == Some(&zrobot_core::TagState::Error))
        .await,
        "{:?}",
        svc.state_get("recurring", None)
    );
    svc.state_delete("mode", None);
    assert!(
        eventually(Duration::from_secs(5), || svc
            .state_get("recurring", Some("tick"))
            .get("tick")
            == Some(&zrobot_core::TagState::Ok))
        .await
    );
    robot.delete_service(svc.guid).await.unwrap();
}
