//! Isolation of actions that share a pooled Lua state, and the escapes from
//! budgets through finalizers and loading: each test performs the attack on
//! a real robot with real Lua states, and fails if the attack works.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use zrobot_core::{RobotConfig, TaskState};
use zrobot_lua::LuaConfig;

/// Runs `make()` on a runtime of its own, on a thread of its own, and gives
/// its output; panics if it has not ended within `limit`. A frozen robot
/// spins on the runtime's threads, so this is the only way for such a test
/// to fail rather than hang (the spinning thread is left behind).
fn within<F, Fut, T>(limit: Duration, make: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let out = rt.block_on(make());
        let _ = tx.send(out);
        rt.shutdown_background();
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the test thread ended without an answer"),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the robot froze: the test did not end within {limit:?}")
        }
    }
}

const SHARED_LUA: &str = r#"
local helper = require("helper")
local cache = {}
local m = {}

local function tries(f, ...)
  local ok, err = pcall(f, ...)
  return ok and "worked" or tostring(err)
end

local pwned = function() return "pwned" end

function m.pollute(self)
  secret = self.data.secret
  _G.secret2 = self.data.secret
  cache.secret = self.data.secret
  m.stash = self.data.secret
  helper.stash = self.data.secret
  load("loaded_secret = ...")(self.data.secret)
  string = { upper = pwned }
  local r = {
    upper = tries(function() getmetatable("").__index.upper = pwned end),
    meta_index = tries(function() getmetatable("").__index = { upper = pwned } end),
    meta_rawset = tries(rawset, getmetatable(""), "__index", { upper = pwned }),
    self_meta = tries(function() getmetatable(self).__index = pwned end),
    env_meta = tries(function() getmetatable(_G).__index = { print = pwned } end),
  }
  -- `string` is this action's own global now; the shared one is reached
  -- through the string metatable.
  local shared_string = getmetatable("").__index
  for _, lib in ipairs({"table", "math", "utf8", "os", "coroutine", "robot"}) do
    local t = _G[lib]
    r[lib .. "_set"] = tries(function() t.upper = pwned end)
    r[lib .. "_rawset"] = tries(rawset, t, "upper", pwned)
    r[lib .. "_setmetatable"] = tries(setmetatable, t, { __index = function() return pwned end })
    r[lib .. "_insert"] = tries(table.insert, t, pwned)
  end
  r.string_set = tries(function() shared_string.upper = pwned end)
  r.string_rawset = tries(rawset, shared_string, "upper", pwned)
  r.string_setmetatable = tries(setmetatable, shared_string, {})
  r.robot_json = tries(function() robot.json.encode = pwned end)
  r.robot_services = tries(rawset, robot.services, "get", pwned)
  r.os_time_nil = tries(function() os.time = nil end)
  r.own_upper = string.upper()
  r.own_secret = secret
  return r
end

function m.peek(self)
  return {
    secret = secret or "nil",
    secret2 = rawget(_G, "secret2") or "nil",
    cache = cache.secret or "nil",
    stash = m.stash or "nil",
    helper = helper.stash or "nil",
    required = require("helper").stash or "nil",
    loaded = loaded_secret or "nil",
    upper = ("abc"):upper(),
    string_upper = string.upper("abc"),
    table_upper = tostring(table.upper),
    robot_json = robot.json.encode({1}),
    os_time = type(os.time),
    print = print == pwned,
    self_data = self.data.secret or "nil",
    schedule = type(self.schedule_action),
    pairs_math = (function() local n = 0 for _ in pairs(math) do n = n + 1 end return n > 20 end)(),
  }
end

return m
"#;

fn shared_repo() -> Repo {
    let repo = Repo::new();
    repo.template("shared", "version: 1.0.0\n", SHARED_LUA);
    repo.file(
        "templates/shared/lib/helper.lua",
        "local M = {}\nreturn M\n",
    );
    repo
}

/// The attack: service p1 (say, of user A) writes globals, the template's
/// module table, a top-level local, a required module's table and the
/// standard tables (directly, through the string metatable, with `rawset`
/// and `setmetatable`); service p2 of the same template (user B) then runs on
/// the same pooled state and looks for p1's data and polluted functions.
#[tokio::test]
async fn a_service_cannot_see_or_pollute_what_another_service_runs_with() {
    let robot = robot();
    load(&robot, &shared_repo());
    let p1 = create(&robot, "shared", "p1", json!({"secret": "p1-secret"})).await;
    let p2 = create(&robot, "shared", "p2", json!({})).await;
    let t = run(&robot, &p1, "pollute", json!({})).await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    let r = t.result.unwrap();
    let Value::Object(tries) = &r else {
        panic!("{r}")
    };
    for (what, outcome) in tries {
        if what.starts_with("own_") {
            continue;
        }
        let outcome = outcome.as_str().unwrap();
        assert_ne!(outcome, "worked", "{what} worked: {r}");
    }
    assert!(
        r["string_set"]
            .as_str()
            .unwrap()
            .contains("string is read-only in templates (setting `upper`)"),
        "{r}"
    );
    assert!(
        r["table_rawset"].as_str().unwrap().contains("read-only"),
        "{r}"
    );
    // Within its own action, p1's globals are its own to change.
    assert_eq!(r["own_upper"], json!("pwned"));
    assert_eq!(r["own_secret"], json!("p1-secret"));

    let t = run(&robot, &p2, "peek", json!({})).await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    assert_eq!(
        t.result.unwrap(),
        json!({
            "secret": "nil", "secret2": "nil", "cache": "nil", "stash": "nil",
            "helper": "nil", "required": "nil", "loaded": "nil",
            "upper": "ABC", "string_upper": "ABC", "table_upper": "nil",
            "robot_json": "[1]", "os_time": "function", "print": false,
            "self_data": "nil", "schedule": "function", "pairs_math": true,
        })
    );
    // p1's own next action starts afresh too.
    let t = run(&robot, &p1, "peek", json!({})).await;
    assert_eq!(t.result.unwrap()["self_data"], json!("p1-secret"));
}

const FINALIZER_LUA: &str = r#"
local f = {}

function f.set_gc(self)
  local ok, err = pcall(setmetatable, {}, { __gc = function() while true do end end })
  local ok2, err2 = pcall(setmetatable, {}, { __gc = false })
  return { ok = ok, err = tostring(err), ok_false = ok2 }
end

function f.plant(self)
  -- The attack as written: garbage whose finalizer never returns.
  setmetatable({}, { __gc = function() while true do end end })
end

function f.gc_later(self)
  local mt = {}
  local t = setmetatable({}, mt)
  mt.__gc = function() while true do end end
  t = nil
  -- Churn memory so that collections run during the action, and the state
  -- grows enough for the engine to collect it after the action.
  local junk = {}
  for i = 1, 40000 do junk[i] = { i, tostring(i) } end
  junk = nil
  for i = 1, 40000 do local x = { i } end
  return "done"
end

function f.weak(self)
  local cache = setmetatable({}, { __mode = "k" })
  local key = {}
  cache[key] = "v"
  local eph = setmetatable({}, { __mode = "kv" })
  eph[1] = {}
  for i = 1, 40000 do local x = { i } end
  return cache[key]
end

function f.close_forever(self)
  local x <close> = setmetatable({}, { __close = function() while true do end end })
  return "returned"
end

function f.close_pcall_forever(self)
  local x <close> = setmetatable({}, { __close = function()
    while true do pcall(function() while true do end end) end
  end })
  return "returned"
end

function f.killed_with_close_pending(self)
  -- Stopped by the timeout in the loop below; the thread is then reset
  -- outside any coroutine, where the hook cannot yield, and runs this.
  local x <close> = setmetatable({}, { __close = function()
    while true do pcall(function() while true do end end) end
  end })
  while true do end
end

function f.sort_pcall_forever(self)
  -- The comparator runs inside a C function, where the hook cannot yield.
  table.sort({3, 2, 1}, function(a, b)
    while true do pcall(function() while true do end end) end
  end)
end

function f.loop(self) while true do end end

function f.ok(self) return "fine" end

return f
"#;

fn finalizer_repo() -> Repo {
    let repo = Repo::new();
    let actions = "version: 1.0.0\nactions:\n  close_forever: {timeout: 0.3}\n  close_pcall_forever: {timeout: 0.3}\n  killed_with_close_pending: {timeout: 0.3}\n  sort_pcall_forever: {timeout: 0.3}\n";
    repo.template("fin", actions, FINALIZER_LUA);
    repo
}

/// The attack: a `__gc` finalizer that never returns, left as garbage, would
/// run when the collector decides — during another service's action, after
/// the budget is disarmed (the engine's collection after an action), or in
/// `lua_close` of a dropped state — and spin a worker forever. Templates
/// cannot set one; the robot stays responsive.
#[test]
fn finalizers_cannot_be_set_so_they_cannot_escape_budgets() {
    within(Duration::from_secs(60), || async {
        let robot = robot_with(
            RobotConfig::default(),
            LuaConfig {
                instruction_limit: 20_000_000,
                ..Default::default()
            },
        );
        load(&robot, &finalizer_repo());
        let a = create(&robot, "fin", "a", json!({})).await;
        let b = create(&robot, "fin", "b", json!({})).await;

        let r = run(&robot, &a, "set_gc", json!({})).await.result.unwrap();
        assert_eq!(r["ok"], json!(false));
        assert_eq!(r["ok_false"], json!(false));
        assert!(
            r["err"]
                .as_str()
                .unwrap()
                .contains("finalizers (`__gc`) are not available in templates"),
            "{r}"
        );
        let t = run(&robot, &a, "plant", json!({})).await;
        assert_eq!(t.state, TaskState::Error);
        assert!(
            t.eco.unwrap().message.contains("finalizers (`__gc`)"),
            "the finalizer was accepted"
        );
        // The other service, and the same one, go on.
        assert_eq!(
            run(&robot, &b, "ok", json!({})).await.result,
            Some(json!("fine"))
        );
        assert_eq!(
            run(&robot, &a, "ok", json!({})).await.result,
            Some(json!("fine"))
        );
    });
}

/// The attack: set the metatable first, add a never-ending `__gc` to it
/// afterwards, drop the object and churn memory so that collections run
/// during the action, by the engine after it, and when the state is closed.
/// Lua marks an object for finalization only if `__gc` is there when the
/// metatable is set, so nothing runs: every later task completes.
#[test]
fn a_gc_added_after_setmetatable_never_runs() {
    within(Duration::from_secs(60), || async {
        let robot = robot_with(
            RobotConfig::default(),
            LuaConfig {
                instruction_limit: 20_000_000,
                ..Default::default()
            },
        );
        load(&robot, &finalizer_repo());
        let a = create(&robot, "fin", "a", json!({})).await;
        let b = create(&robot, "fin", "b", json!({})).await;
        for _ in 0..3 {
            let t = run(&robot, &a, "gc_later", json!({})).await;
            assert_eq!(t.result, Some(json!("done")), "{:?}", t.eco);
        }
        assert_eq!(
            run(&robot, &b, "ok", json!({})).await.result,
            Some(json!("fine"))
        );
        // A stopped action drops its state: `lua_close` collects everything.
        let t = run(&robot, &a, "loop", json!({})).await;
        assert_eq!(t.eco.unwrap().category, "action.runaway");
        assert_eq!(
            run(&robot, &b, "ok", json!({})).await.result,
            Some(json!("fine"))
        );
        drop(robot);
    });
}

/// Weak tables are allowed; the collector clearing them runs no template code.
#[test]
fn weak_tables_work_and_run_nothing() {
    within(Duration::from_secs(60), || async {
        let robot = robot();
        load(&robot, &finalizer_repo());
        let a = create(&robot, "fin", "a", json!({})).await;
        let t = run(&robot, &a, "weak", json!({})).await;
        assert_eq!(t.result, Some(json!("v")), "{:?}", t.eco);
        assert_eq!(
            run(&robot, &a, "ok", json!({})).await.result,
            Some(json!("fine"))
        );
    });
}

/// The attack: a `__close` metamethod that never ends — plainly, in a loop
/// of `pcall`s, pending when the action is stopped (the thread is then reset
/// where the hook cannot yield), or a comparator looping inside `table.sort`.
/// Each is stopped by the action's timeout, and the robot goes on.
#[test]
fn a_close_that_never_ends_is_stopped_by_the_timeout() {
    within(Duration::from_secs(60), || async {
        let robot = robot();
        load(&robot, &finalizer_repo());
        let a = create(&robot, "fin", "a", json!({})).await;
        let b = create(&robot, "fin", "b", json!({})).await;
        for action in [
            "close_forever",
            "close_pcall_forever",
            "killed_with_close_pending",
            "sort_pcall_forever",
        ] {
            let started = Instant::now();
            let t = run(&robot, &a, action, json!({})).await;
            let eco = t.eco.unwrap_or_else(|| panic!("{action} ended ok"));
            assert_eq!(eco.category, "action.timeout", "{action}: {eco:?}");
            assert!(started.elapsed() < Duration::from_secs(10), "{action}");
            assert_eq!(
                run(&robot, &b, "ok", json!({})).await.result,
                Some(json!("fine")),
                "after {action}"
            );
        }
    });
}

/// Loads `repo` and gives the template errors, bounded by `limit`.
fn load_errors(repo: Repo, config: LuaConfig, limit: Duration) -> (Vec<String>, Duration) {
    within(limit, move || async move {
        let robot = robot_with(RobotConfig::default(), config);
        let started = Instant::now();
        let load = robot.load_repository(&repo.root(), &repo.id("acme", "templates"));
        let errors = load.errors.iter().map(|e| e.to_string()).collect();
        (errors, started.elapsed())
    })
}

/// The attack: a template's top level (or a module it requires) that never
/// ends, plainly or in a loop of `pcall`s, froze the loader: the code ran
/// with no budget. Loading now fails the template with an error naming the
/// file, within the instruction budget or a few seconds.
#[test]
fn a_top_level_that_never_ends_fails_the_template() {
    let cases = [
        ("spin", "while true do end\nreturn {}"),
        (
            "spinp",
            "while true do pcall(function() while true do end end) end\nreturn {}",
        ),
        ("spinr", "local l = require('loops')\nreturn {}"),
        ("waits", "robot.sleep(1000)\nreturn {}"),
    ];
    for (name, code) in cases {
        let repo = Repo::new();
        repo.template(name, "version: 1.0.0\n", code);
        if name == "spinr" {
            repo.file(
                "templates/spinr/lib/loops.lua",
                "while true do pcall(function() while true do end end) end",
            );
        }
        let small = LuaConfig {
            instruction_limit: 20_000_000,
            ..Default::default()
        };
        let (errors, took) = load_errors(repo, small, Duration::from_secs(60));
        assert_eq!(errors.len(), 1, "{name}: {errors:?}");
        let e = &errors[0];
        assert!(e.contains(&format!("{name}.lua")), "{name}: {e}");
        if name == "waits" {
            assert!(e.contains("work only in actions"), "{name}: {e}");
        } else {
            assert!(e.contains("20000000 Lua instructions"), "{name}: {e}");
            assert!(e.contains("loop forever"), "{name}: {e}");
        }
        assert!(took < Duration::from_secs(20), "{name}: {took:?}");
    }
    // With the default budget of a billion instructions, the time bound ends it.
    let repo = Repo::new();
    repo.template("slow", "version: 1.0.0\n", "while true do end\nreturn {}");
    let (errors, took) = load_errors(repo, LuaConfig::default(), Duration::from_secs(60));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("slow.lua"), "{}", errors[0]);
    assert!(
        errors[0].contains("loading the code was stopped"),
        "{}",
        errors[0]
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
}

/// The same attack on a top level that loops only when it runs for an
/// action (the robot API answers only there): the action's timeout stops it.
#[tokio::test]
async fn a_top_level_that_loops_in_an_action_is_stopped_by_its_timeout() {
    let repo = Repo::new();
    repo.template(
        "later",
        "version: 1.0.0\nactions: {go: {timeout: 0.3}}\n",
        "local m = {}\nfunction m.go(self) return 1 end\nif pcall(robot.services.find, robot.services) then\n  while true do pcall(function() while true do end end) end\nend\nreturn m",
    );
    let robot = robot();
    load(&robot, &repo);
    let svc = create(&robot, "later", "l", json!({})).await;
    let t = run(&robot, &svc, "go", json!({})).await;
    assert_eq!(t.eco.unwrap().category, "action.timeout");
}

/// Another service's data are its own: a handle reads them only on a
/// robot in god mode (`LuaConfig::god_data`, set by `--god`).
#[tokio::test]
async fn another_services_data_need_god_mode() {
    let lua = r#"
local t = {}
function t.peek(self, args)
  return robot.services:get({name = args.name}):data()
end
return t
"#;
    let data = serde_json::json!({"secret": "s3"});
    for (god, want) in [(false, None), (true, Some(data.clone()))] {
        let robot = robot_with(
            zrobot_core::RobotConfig::default(),
            zrobot_lua::LuaConfig {
                god_data: god,
                ..Default::default()
            },
        );
        let repo = Repo::new();
        repo.template("peeker", "version: 1.0.0\n", lua);
        load(&robot, &repo);
        create(&robot, "peeker", "other", data.clone()).await;
        let me = create(&robot, "peeker", "me", serde_json::json!({})).await;
        let r = run(&robot, &me, "peek", serde_json::json!({"name": "other"})).await;
        match want {
            Some(d) => assert_eq!(r.result, Some(d), "{r:?}"),
            None => {
                let eco = r.eco.expect("refused");
                assert!(
                    eco.message
                        .contains("the data of service `other` are its own"),
                    "{}",
                    eco.message
                );
            }
        }
    }
}
