//! The sandbox and the `robot` API: what templates may and may not do, and
//! how runaway code is stopped without harming anything else.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use zrobot_core::{RobotConfig, TaskState};
use zrobot_lua::LuaConfig;

const BOX_LUA: &str = r#"
local util = require("util")
local b = {}

function b.probe(self)
  return {
    io = io == nil, execute = os.execute == nil, getenv = os.getenv == nil,
    dofile = dofile == nil, loadfile = loadfile == nil, dump = string.dump == nil,
    time = type(os.time()), clock = type(os.clock()), date = type(os.date("%Y")),
    util = util.double(21), shared = require("shared").name,
  }
end

function b.bytecode(self)
  return load("\27Lua", "x", "b")
end

function b.text_load(self)
  return load("return 1 + 1")()
end

function b.coroutine(self)
  return coroutine.create(function() end)
end

function b.escape(self)
  return require("..secret")
end

function b.missing(self)
  return require("nothing_here")
end

function b.loop(self)
  while true do end
end

function b.loop_in_pcall(self)
  while true do pcall(function() while true do end end) end
end

function b.bomb(self)
  local t = {}
  local i = 0
  while true do i = i + 1; t[i] = string.rep("x", 1000) .. i end
end

function b.bomb_in_pcall(self)
  local keep = {}
  while true do
    pcall(function() local t = {} for i = 1, 1e9 do t[i] = string.rep("y", 100) .. i end end)
  end
end

function b.ok(self) return "fine" end

function b.api(self, args)
  local r = robot.exec({"sh", "-c", "echo out; echo err >&2; exit 3"})
  local piped = robot.exec({"cat"}, {stdin = "fed"})
  -- Past a pipe's buffer both ways: stdin is fed while stdout is read.
  local big = robot.exec({"cat"}, {stdin = string.rep("z", 1000000)})
  -- A process that never reads its stdin still ends.
  local deaf = robot.exec({"true"}, {stdin = string.rep("z", 1000000)})
  local env = robot.exec({"sh", "-c", "echo $ZR_TEST"}, {env = {ZR_TEST = "yes"}})
  local t0 = robot.now()
  robot.sleep(0.05)
  local slept = robot.now() - t0
  local j = robot.json.decode(robot.json.encode({a = {1, 2}, b = "x"}))
  local y = robot.yaml.decode("a: 1\nb: [x, y]\n")
  self.log:debug("dbg"); self.log:info("inf"); self.log:warning("wrn"); self.log:error("err")
  print("printed", 42)
  return {
    status = r.status, stdout = r.stdout, stderr = r.stderr, piped = piped.stdout,
    big = #big.stdout, deaf = deaf.status,
    env = env.stdout, slept = slept >= 0.04, uuid = #robot.uuid(), json = j, yaml = y,
    yaml_text = robot.yaml.encode({k = "v"}), dir = robot.template_dir,
    name = self.name, guid = self.guid, uid = self.template_uid, version = self.version,
  }
end

function b.exec_timeout(self)
  return robot.exec({"sleep", "5"}, {timeout = 0.1})
end

function b.exec_missing(self)
  return robot.exec({"/nonexistent/program"})
end

function b.http(self, args)
  local r = robot.http.request({method = "POST", url = args.url, body = "ping", headers = {["x-a"] = "1"}, timeout = 5})
  return {status = r.status, body = r.body, ct = r.headers["content-type"]}
end

function b.http_down(self, args)
  return robot.http.request({url = args.url, timeout = 2})
end

function b.bad_return(self) return function() end end

return b
"#;

fn box_repo() -> Repo {
    let repo = Repo::new();
    repo.template("box", "version: 1.0.0\n", BOX_LUA);
    repo.file(
        "templates/box/lib/util.lua",
        "return { double = function(x) return x * 2 end }",
    );
    repo.file("shared.lua", "return { name = 'shared at the root' }");
    repo
}

fn small_budget() -> LuaConfig {
    LuaConfig {
        instruction_limit: 20_000_000,
        memory_limit: 16 * 1024 * 1024,
        ..Default::default()
    }
}

#[tokio::test]
async fn only_the_allowed_libraries_are_there() {
    let robot = robot();
    let repo = box_repo();
    load(&robot, &repo);
    let svc = create(&robot, "box", "b", json!({})).await;
    let t = run(&robot, &svc, "probe", json!({})).await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    assert_eq!(
        t.result.unwrap(),
        json!({"io": true, "execute": true, "getenv": true, "dofile": true, "loadfile": true, "dump": true,
               "time": "number", "clock": "number", "date": "string", "util": 42, "shared": "shared at the root"})
    );
    let t = run(&robot, &svc, "bytecode", json!({})).await;
    assert!(t.eco.unwrap().message.contains("only text chunks"));
    assert_eq!(
        run(&robot, &svc, "text_load", json!({})).await.result,
        Some(json!(2))
    );
    let t = run(&robot, &svc, "coroutine", json!({})).await;
    let m = t.eco.unwrap().message;
    assert!(m.contains("coroutine.create is not available"), "{m}");
}

#[tokio::test]
async fn require_stays_inside_the_repository() {
    let robot = robot();
    let repo = box_repo();
    load(&robot, &repo);
    std::fs::write(repo.root().parent().unwrap().join("secret.lua"), "return 1").ok();
    let svc = create(&robot, "box", "b", json!({})).await;
    let t = run(&robot, &svc, "escape", json!({})).await;
    assert!(t.eco.unwrap().message.contains("is not a module name"));
    let t = run(&robot, &svc, "missing", json!({})).await;
    let m = t.eco.unwrap().message;
    assert!(
        m.contains("`nothing_here` not found") && m.contains("templates/box/lib/nothing_here.lua"),
        "{m}"
    );
}

#[tokio::test]
async fn runaway_loops_are_stopped_and_the_robot_goes_on() {
    let robot = robot_with(RobotConfig::default(), small_budget());
    let repo = box_repo();
    load(&robot, &repo);
    let a = create(&robot, "box", "a", json!({})).await;
    let b = create(&robot, "box", "b", json!({})).await;
    for action in ["loop", "loop_in_pcall"] {
        let t = run(&robot, &a, action, json!({})).await;
        let eco = t.eco.unwrap();
        assert_eq!(eco.category, "action.runaway", "{action}: {eco:?}");
        assert!(
            eco.message.contains("20000000 Lua instructions"),
            "{}",
            eco.message
        );
    }
    assert_eq!(
        run(&robot, &a, "ok", json!({})).await.result,
        Some(json!("fine"))
    );
    assert_eq!(
        run(&robot, &b, "ok", json!({})).await.result,
        Some(json!("fine"))
    );
}

#[tokio::test]
async fn memory_bombs_fail_their_own_task_only() {
    let config = LuaConfig {
        instruction_limit: 2_000_000_000,
        memory_limit: 16 * 1024 * 1024,
        ..Default::default()
    };
    let robot = robot_with(RobotConfig::default(), config);
    let repo = box_repo();
    load(&robot, &repo);
    let a = create(&robot, "box", "a", json!({})).await;
    let b = create(&robot, "box", "b", json!({})).await;
    let other = robot.schedule(&b, "ok", json!({})).await.unwrap();
    for action in ["bomb", "bomb_in_pcall"] {
        let t = run(&robot, &a, action, json!({})).await;
        let eco = t.eco.unwrap();
        assert_eq!(eco.category, "action.memory", "{action}: {eco:?}");
        assert!(eco.message.contains("16 MiB"), "{}", eco.message);
    }
    assert_eq!(other.done().await.state, TaskState::Ok);
    assert_eq!(
        run(&robot, &a, "ok", json!({})).await.result,
        Some(json!("fine"))
    );
}

#[tokio::test]
async fn a_long_lua_loop_is_stopped_by_its_timeout() {
    let repo = Repo::new();
    repo.template(
        "spin",
        "version: 1.0.0\nactions: {spin: {timeout: 0.2}}\n",
        "return { spin = function(self) while true do end end }",
    );
    let robot = robot();
    load(&robot, &repo);
    let svc = create(&robot, "spin", "s", json!({})).await;
    let t = run(&robot, &svc, "spin", json!({})).await;
    assert_eq!(t.eco.unwrap().category, "action.timeout");
    assert!(t.duration.unwrap() < 5.0);
}

#[tokio::test]
async fn the_robot_api_works_from_actions() {
    let robot = robot();
    let repo = box_repo();
    load(&robot, &repo);
    let svc = create(&robot, "box", "b", json!({})).await;
    let t = run(&robot, &svc, "api", json!({})).await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    let r = t.result.unwrap();
    assert_eq!(r["status"], json!(3));
    assert_eq!(r["stdout"], json!("out\n"));
    assert_eq!(r["stderr"], json!("err\n"));
    assert_eq!(r["piped"], json!("fed"));
    assert_eq!(r["big"], json!(1_000_000));
    assert_eq!(r["deaf"], json!(0));
    assert_eq!(r["env"], json!("yes\n"));
    assert_eq!(r["slept"], json!(true));
    assert_eq!(r["uuid"], json!(36));
    assert_eq!(r["json"], json!({"a": [1, 2], "b": "x"}));
    assert_eq!(r["yaml"], json!({"a": 1, "b": ["x", "y"]}));
    assert!(r["yaml_text"].as_str().unwrap().contains("k: v"));
    assert_eq!(
        r["dir"],
        json!(path_str(&repo.root().join("templates").join("box")))
    );
    assert_eq!(r["name"], json!("b"));
    assert_eq!(r["guid"], json!(svc.guid.to_string()));
    assert_eq!(r["uid"], json!("github.com/acme/templates/box/1.0.0"));
    assert_eq!(r["version"], json!("1.0.0"));
    let log: Vec<(String, String)> = svc
        .log_lines()
        .into_iter()
        .map(|l| (l.level.as_str().to_owned(), l.message))
        .filter(|(_, m)| m != "created from template github.com/acme/templates/box/1.0.0")
        .collect();
    let want: Vec<(String, String)> = [
        ("DEBUG", "dbg"),
        ("INFO", "inf"),
        ("WARNING", "wrn"),
        ("ERROR", "err"),
        ("INFO", "printed\t42"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(log, want);
    let t = run(&robot, &svc, "exec_timeout", json!({})).await;
    assert!(t
        .eco
        .unwrap()
        .message
        .contains("ran past its timeout of 0.1s and was killed"));
    let t = run(&robot, &svc, "exec_missing", json!({})).await;
    assert!(t
        .eco
        .unwrap()
        .message
        .contains("cannot run `/nonexistent/program`"));
    let t = run(&robot, &svc, "bad_return", json!({})).await;
    assert_eq!(t.eco.unwrap().category, "lua.result");
}

#[tokio::test]
async fn exec_can_be_turned_off() {
    let robot = robot_with(
        RobotConfig::default(),
        LuaConfig {
            allow_exec: false,
            ..Default::default()
        },
    );
    let repo = box_repo();
    load(&robot, &repo);
    let svc = create(&robot, "box", "b", json!({})).await;
    let t = run(&robot, &svc, "api", json!({})).await;
    assert!(t.eco.unwrap().message.contains("--no-exec"));
}

/// A one-shot HTTP server on loopback that answers with `body`.
async fn http_once(body: &'static str) -> (String, tokio::task::JoinHandle<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/x", listener.local_addr().unwrap());
    let h = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains("ping") {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let resp = format!(
            "HTTP/1.1 201 Created\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(resp.as_bytes()).await.unwrap();
        String::from_utf8_lossy(&got).into_owned()
    });
    (url, h)
}

#[tokio::test]
async fn http_requests_go_out_and_failures_are_clear() {
    let robot = robot();
    let repo = box_repo();
    load(&robot, &repo);
    let svc = create(&robot, "box", "b", json!({})).await;
    let (url, server) = http_once("pong").await;
    let t = run(&robot, &svc, "http", json!({"url": url})).await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    assert_eq!(
        t.result.unwrap(),
        json!({"status": 201, "body": "pong", "ct": "text/plain"})
    );
    let request = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
    assert!(
        request.starts_with("POST /x") && request.contains("x-a: 1"),
        "{request}"
    );
    // Nothing listens there any more.
    let t = run(&robot, &svc, "http_down", json!({"url": url})).await;
    let m = t.eco.unwrap().message;
    assert!(m.contains("robot.http.request") && m.contains(&url), "{m}");
}
