//! Lua patterns in templates: the robot's `string.find`, `match`, `gmatch`
//! and `gsub` give what C Lua 5.4 gives (results and error messages, checked
//! against the C functions on generated cases), and a pattern that would
//! backtrack for minutes ends with its action's timeout.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mlua::{Lua, Value};
use proptest::prelude::*;
use serde_json::json;
use zrobot_core::{RobotConfig, TaskState};
use zrobot_lua::LuaConfig;

// ---------------------------------------------------------------------------
// The same calls on a state with C Lua's functions and one with ours.

/// Serializes every result (type and value) and the error, if any.
const SER: &str = r#"
local function ser(...)
  local t = {}
  for i = 1, select('#', ...) do
    local v = select(i, ...)
    t[i] = (math.type(v) or type(v)) .. ":" .. tostring(v)
  end
  return table.concat(t, "|")
end
return ser
"#;

struct Pair {
    c: Lua,
    rust: Lua,
}

impl Pair {
    fn new() -> Pair {
        let c = Lua::new();
        let rust = Lua::new();
        zrobot_lua::pattern::install(&rust).unwrap();
        for lua in [&c, &rust] {
            let ser: mlua::Function = lua.load(SER).eval().unwrap();
            lua.globals().set("ser", ser).unwrap();
        }
        Pair { c, rust }
    }

    /// Runs `code` (a chunk returning a string) with the globals set by
    /// `set` in both states, and returns both outcomes.
    fn both(&self, code: &str, set: impl Fn(&Lua) -> mlua::Result<()>) -> (String, String) {
        let run = |lua: &Lua| -> String {
            set(lua).unwrap();
            match lua.load(code).set_name("=case").eval::<mlua::LuaString>() {
                Ok(s) => String::from_utf8_lossy(&s.as_bytes()).into_owned(),
                Err(e) => format!("raised: {e}"),
            }
        };
        (run(&self.c), run(&self.rust))
    }

    fn same(
        &self,
        code: &str,
        set: impl Fn(&Lua) -> mlua::Result<()>,
    ) -> Result<(), TestCaseError> {
        let (c, rust) = self.both(code, set);
        prop_assert_eq!(&c, &rust, "code: {}", code);
        Ok(())
    }
}

/// Pieces patterns are made of: items, sets, classes, quantifiers, anchors,
/// captures, back-references, `%b`, `%f`, and pieces that make them malformed.
const PIECES: &[&str] = &[
    "a", "b", "a", "b", ".", "%a", "%d", "%s", "%w", "%p", "%A", "%S", "%x", "%%", "%.", "[ab]",
    "[^a]", "[a-c]", "[%d.]", "[]]", "[^]a]", "[a-]", "*", "+", "-", "?", "*", "+", "-", "?", "(",
    ")", "(", ")", "()", "%1", "%2", "%0", "%b()", "%b[]", "%b", "%f[%w]", "%f[^a]", "%fa", "^",
    "$", "%", "[", "[^", "]", "%z", "x", " ", "1", "\0", "%c", "%l", "%u", "%g", "[%s%p]",
    "[%a-z]", "[z-a]", "é", "%f[%z]", "%f[%s]",
];

/// Bytes subjects are made of.
const SUBJECT: &[u8] = b"aab()[]-%. 1x\0A\n\x0b\xc3\xa9Z";

/// Pieces of replacement strings.
const REPL: &[&str] = &["x", "%0", "%1", "%2", "%%", "%", "y", "%a", ""];

fn pattern() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(PIECES), 0..7).prop_map(|v| v.concat().into_bytes())
}

fn subject() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(SUBJECT), 0..12)
}

fn init() -> impl Strategy<Value = Option<i64>> {
    prop::option::of(-14i64..16)
}

fn set_args<'a>(
    s: &'a [u8],
    p: &'a [u8],
    i: Option<i64>,
) -> impl Fn(&Lua) -> mlua::Result<()> + 'a {
    move |lua| {
        let g = lua.globals();
        g.set("S", lua.create_string(s)?)?;
        g.set("P", lua.create_string(p)?)?;
        g.set("I", i)?;
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn find_and_match_are_c_lua(s in subject(), p in pattern(), i in init(), plain in prop::option::of(any::<bool>())) {
        let pair = Pair::new();
        let set = set_args(&s, &p, i);
        let plain_arg = match plain { None => "", Some(true) => ", true", Some(false) => ", false" };
        pair.same(&format!("return ser(pcall(function() return string.find(S, P, I{plain_arg}) end))"), &set)?;
        pair.same("return ser(pcall(function() return S:match(P, I) end))", &set)?;
        pair.same("return ser(pcall(string.match, S, P, I))", &set)?;
        pair.same("return ser(pcall(string.find, S, P))", &set)?;
    }

    #[test]
    fn gmatch_is_c_lua(s in subject(), p in pattern(), i in init()) {
        let pair = Pair::new();
        let set = set_args(&s, &p, i);
        pair.same(r#"
            local out = {}
            local ok, err = pcall(function()
              local n = 0
              for a, b, c in string.gmatch(S, P, I) do
                n = n + 1
                out[#out + 1] = ser(a, b, c)
                if n > 40 then break end
              end
            end)
            return ser(ok, err) .. " " .. table.concat(out, ";")
        "#, &set)?;
    }

    #[test]
    fn gsub_is_c_lua(
        s in subject(),
        p in pattern(),
        repl in prop::collection::vec(prop::sample::select(REPL), 0..4),
        kind in 0..6u8,
        n in prop::option::of(-1i64..4),
    ) {
        let pair = Pair::new();
        let repl = repl.concat();
        let set = |lua: &Lua| -> mlua::Result<()> {
            set_args(&s, &p, n)(lua)?;
            lua.globals().set("R", lua.create_string(&repl)?)
        };
        let r = match kind {
            0 | 1 => "R",
            2 => "{a = 'T', b = false, ['('] = 7, [1] = 'one', x = {}}",
            3 => "function(...) return select('#', ...) .. table.concat({...}, ',') end",
            4 => "function(a, b) if a == 'a' then return false elseif b then return b else return nil end end",
            _ => "function(a) if a == 'b' then return {} end return 2.5 end",
        };
        pair.same(&format!("return ser(pcall(function() return string.gsub(S, P, {r}, I) end))"), set)?;
        pair.same(&format!("return ser(pcall(string.gsub, S, P, {r}))"), set)?;
    }
}

#[test]
fn argument_errors_and_odd_calls_are_c_lua() {
    let pair = Pair::new();
    let cases = [
        "return ser(pcall(function() return string.find() end))",
        "return ser(pcall(function() return ('x'):find({}) end))",
        "return ser(pcall(function() return ('x').find(nil, 'x') end))",
        "return ser(pcall(function() local f = string.match; return f(nil, 'x') end))",
        "return ser(pcall(string.gmatch))",
        "return ser(pcall(function() return string.gsub('x', 'x') end))",
        "return ser(pcall(function() return string.gsub('x', 'x', true) end))",
        "return ser(pcall(function() return string.gsub('x', 'x', 'y', 1.5) end))",
        "return ser(pcall(function() return string.gsub('x', 'x', 'y', 'z') end))",
        "return ser(pcall(function() return string.find('x', 'x', '1') end))",
        "return ser(pcall(function() return string.find('x', 'x', 2.0) end))",
        "return ser(pcall(function() return string.find(12345, 34) end))",
        "return ser(pcall(function() return string.gsub(12345, 3, 9.5) end))",
        "return ser(pcall(function() return string.gsub(12345, '9', 'y') end))",
        "return ser(pcall(function() return string.gsub('abc', '%w', '%1%1') end))",
        "return ser(pcall(function() return string.gsub('abc', '()b', '[%1]') end))",
        "return ser(pcall(function() return string.gsub('abc', '(b)', {b = 'B'}) end))",
        "return ser(pcall(function() return string.gsub('abc', '(b)', function() error('boom') end) end))",
        "return ser(pcall(function() return string.gsub('abc', '(b)', function() error('plain', 0) end) end))",
        "return ser(pcall(function() return string.gsub('abc', '(', 'x') end))",
        "return ser(pcall(function() return string.find('hello world', 'o w', 1, true) end))",
        "return ser(pcall(function() return string.find('a.b', '.', 1, true) end))",
        "return ser(pcall(function() return string.find('abc', 'c', -1) end))",
        "return ser(pcall(function() return string.find('abc', '', 10) end))",
        "return ser(pcall(function() return string.find('abc', '', 4) end))",
        "return ser(pcall(function() return string.match(('a'):rep(300), ('a?'):rep(300)) end))",
        "return ser(pcall(function() return string.match('x', ('('):rep(33)) end))",
        "return ser(pcall(function() return string.match('key = value', '(%w+)%s*=%s*(%w+)') end))",
        "return ser(pcall(function() return string.match('THE (quick) fox', '%f[%a]%a+', 5) end))",
        "return ser(pcall(function() local t = {} for k, v in string.gmatch('a=1, b=2', '(%w+)=(%w+)') do t[#t+1] = k .. v end return table.concat(t) end))",
        "return ser(pcall(function() local t = {} for w in string.gmatch('^a^a', '^a') do t[#t+1] = w end return #t end))",
        "return ser(pcall(function() local t = {} for w in ('abc'):gmatch('', 2) do t[#t+1] = w end return #t end))",
        "return ser(pcall(function() return ('hello'):gsub('', '-') end))",
        "return ser(pcall(function() return ('hello world'):gsub('o', {o = 0}, 1) end))",
        "return ser(pcall(function() return ('abc'):gsub('^a', 'A') end))",
        "return ser(pcall(function() return ('x'):gsub('x', '%') end))",
        "return ser(pcall(function() return ('x'):gsub('x', '%2') end))",
        "return ser(pcall(function() return ('x'):gsub('(x', '%1') end))",
    ];
    for code in cases {
        let (c, rust) = pair.both(code, |_| Ok(()));
        assert_eq!(c, rust, "code: {code}");
    }
}

#[test]
fn string_methods_use_the_bounded_functions() {
    // The string metatable's __index is the string table itself, so the
    // methods are the replaced functions.
    let lua = Lua::new();
    let c_find: mlua::Function = lua.load("return string.find").eval().unwrap();
    zrobot_lua::pattern::install(&lua).unwrap();
    let same: bool = lua.load("return ('x').find == string.find").eval().unwrap();
    assert!(same);
    let now: mlua::Function = lua.load("return string.find").eval().unwrap();
    assert_ne!(Value::Function(c_find), Value::Function(now));
}

// ---------------------------------------------------------------------------
// The attack, on a real robot.

const ATTACK_LUA: &str = r#"
local t = {}
local SUBJECT = ("a"):rep(26)
local PATTERN = ("a*"):rep(13) .. "b"

function t.find(self) return string.find(SUBJECT, PATTERN) end
function t.match(self) return SUBJECT:match(PATTERN) end
function t.gmatch(self)
  for m in SUBJECT:gmatch(PATTERN) do return m end
end
function t.gsub(self) return (string.gsub(SUBJECT, PATTERN, "x")) end
function t.gsub_fn(self)
  return (string.gsub(("a"):rep(200), "a", function(a) return SUBJECT:match(PATTERN) end))
end
function t.in_pcall(self)
  while true do pcall(string.find, SUBJECT, PATTERN) end
end
function t.gsub_bomb(self)
  -- 1 GB of result, built outside the Lua heap
  return #(("x"):rep(10000):gsub("", ("y"):rep(100000)))
end
function t.deep(self)
  local function f(c) return (c:gsub(".", f)) end
  return f("a")
end
function t.plain_loop(self)
  local long = ("a"):rep(8 * 1024 * 1024)
  while true do long:find("b", 1, true) end
end
function t.ok(self) return "fine" end
function t.normal(self)
  local k, v = ("name = robot"):match("^(%w+)%s*=%s*(%w+)$")
  local words = {}
  for w in ("the quick  brown fox"):gmatch("%a+") do words[#words + 1] = w end
  local s, n = ("hello world"):gsub("o", "0")
  local i, j = ("a.b.c"):find(".", 1, true)
  return { k = k, v = v, words = words, s = s, n = n, i = i, j = j }
end
return t
"#;

fn attack_repo() -> Repo {
    let repo = Repo::new();
    repo.template(
        "attack",
        "version: 1.0.0\nactions:\n  find: {timeout: 2}\n  match: {timeout: 2}\n  gmatch: {timeout: 2}\n  gsub: {timeout: 2}\n  gsub_fn: {timeout: 2}\n  in_pcall: {timeout: 2}\n  plain_loop: {timeout: 2}\n",
        ATTACK_LUA,
    );
    repo
}

/// Runs `test` on a runtime of its own, on a thread of its own, and fails
/// if it has not ended within `limit`: a runaway pattern must fail the test,
/// not hang it (a worker stuck in a C matcher cannot be stopped, and its
/// runtime cannot be dropped).
fn within<F>(limit: Duration, test: impl FnOnce() -> F + Send + 'static)
where
    F: std::future::Future<Output = ()>,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(test())));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("the test did not end within {limit:?}: a pattern ran away"),
    }
}

#[test]
fn runaway_patterns_end_with_their_timeout_and_the_robot_goes_on() {
    within(
        Duration::from_secs(60),
        runaway_patterns_end_with_their_timeout,
    );
}

async fn runaway_patterns_end_with_their_timeout() {
    let robot = robot();
    let repo = attack_repo();
    load(&robot, &repo);
    let a = create(&robot, "attack", "a", json!({})).await;
    let b = create(&robot, "attack", "b", json!({})).await;
    for action in [
        "find",
        "match",
        "gmatch",
        "gsub",
        "gsub_fn",
        "in_pcall",
        "plain_loop",
    ] {
        let started = Instant::now();
        let attack = robot.schedule(&a, action, json!({})).await.unwrap();
        // Another service is served while the pattern runs.
        let other = run(&robot, &b, "ok", json!({})).await;
        assert_eq!(other.state, TaskState::Ok, "{action}: {:?}", other.eco);
        let other_done = started.elapsed();
        let t = tokio::time::timeout(Duration::from_secs(10), attack.done())
            .await
            .unwrap_or_else(|_| panic!("{action}: the runaway pattern was not stopped"));
        let took = started.elapsed();
        let eco = t
            .eco
            .unwrap_or_else(|| panic!("{action} ended without an eco"));
        // A plain search is linear, so a loop of them may spend its
        // instruction budget (one per 16 bytes searched) before its time.
        let stopped = if action == "plain_loop" {
            ["action.timeout", "action.runaway"].contains(&eco.category.as_str())
        } else {
            eco.category == "action.timeout"
        };
        assert!(stopped, "{action}: {eco:?}");
        assert!(took < Duration::from_secs(3), "{action} took {took:?}");
        assert!(
            other_done < took,
            "{action}: the other service waited for the attack"
        );
    }
    assert_eq!(
        run(&robot, &a, "ok", json!({})).await.result,
        Some(json!("fine"))
    );
}

#[test]
fn runaway_patterns_count_against_the_instruction_budget() {
    within(Duration::from_secs(30), instruction_budget);
}

async fn instruction_budget() {
    let config = LuaConfig {
        instruction_limit: 20_000_000,
        ..Default::default()
    };
    let robot = robot_with(RobotConfig::default(), config);
    let repo = attack_repo();
    load(&robot, &repo);
    let a = create(&robot, "attack", "a", json!({})).await;
    // Without a timeout of its own (the robot's default is an hour), only
    // the instruction budget can stop it.
    let started = Instant::now();
    let t = run(&robot, &a, "ok", json!({})).await;
    assert_eq!(t.state, TaskState::Ok);
    let repo2 = Repo::new();
    repo2.template(
        "attack2",
        "version: 1.0.0\n",
        r#"return { find = function(self) return string.find(("a"):rep(26), ("a*"):rep(13) .. "b") end }"#,
    );
    let load2 = robot.load_repository(&repo2.root(), &repo2.id("acme", "more"));
    assert!(load2.errors.is_empty(), "{:?}", load2.errors);
    let s = create(&robot, "attack2", "s", json!({})).await;
    let t = run(&robot, &s, "find", json!({})).await;
    let eco = t.eco.unwrap();
    assert_eq!(eco.category, "action.runaway", "{eco:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// The most memory this process has held (`VmHWM`), in KiB.
fn peak_memory_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_gsub_result_counts_against_the_memory_budget() {
    let config = LuaConfig {
        memory_limit: 16 * 1024 * 1024,
        ..Default::default()
    };
    let robot = robot_with(RobotConfig::default(), config);
    let repo = attack_repo();
    load(&robot, &repo);
    let a = create(&robot, "attack", "a", json!({})).await;
    let before = peak_memory_kib();
    let t = run(&robot, &a, "gsub_bomb", json!({})).await;
    let eco = t.eco.unwrap();
    assert_eq!(eco.category, "action.memory", "{eco:?}");
    // Stopped near its 16 MiB, not after building the whole gigabyte.
    let grew = peak_memory_kib() - before;
    assert!(grew < 256 * 1024, "the process grew by {grew} KiB");
    assert_eq!(
        run(&robot, &a, "ok", json!({})).await.result,
        Some(json!("fine"))
    );
}

#[test]
fn replacements_nested_without_end_fail_their_action_only() {
    within(Duration::from_secs(30), || async {
        let robot = robot();
        let repo = attack_repo();
        load(&robot, &repo);
        let a = create(&robot, "attack", "a", json!({})).await;
        let t = run(&robot, &a, "deep", json!({})).await;
        assert_eq!(t.state, TaskState::Error);
        let eco = t.eco.unwrap();
        assert!(eco.message.contains("stack overflow"), "{eco:?}");
        assert_eq!(
            run(&robot, &a, "ok", json!({})).await.result,
            Some(json!("fine"))
        );
    });
}

#[tokio::test]
async fn templates_use_patterns_as_before() {
    let robot = robot();
    let repo = attack_repo();
    load(&robot, &repo);
    let a = create(&robot, "attack", "a", json!({})).await;
    let t = run(&robot, &a, "normal", json!({})).await;
    assert_eq!(t.state, TaskState::Ok, "{:?}", t.eco);
    assert_eq!(
        t.result,
        Some(json!({
            "k": "name", "v": "robot",
            "words": ["the", "quick", "brown", "fox"],
            "s": "hell0 w0rld", "n": 2, "i": 2, "j": 2,
        }))
    );
}

/// Not a check: the speed of typical calls next to C Lua's, printed with
/// `cargo test --release -p zrobot-lua --test patterns speed -- --nocapture`.
#[test]
fn speed_next_to_c_lua() {
    let code = r#"
        local line = "2026-12-02 03:04:05 INFO service=node-1 state=ok took=12ms"
        local calls = {
          find = function() return line:find("(%w+)=(%w+)") end,
          gsub = function() return line:gsub("%s+", " ") end,
          match = function() return line:match("^(%d+)%-(%d+)") end,
          gmatch = function() local n = 0 for w in line:gmatch("%a+") do n = n + 1 end return n end,
          plain = function() return line:find("took", 1, true) end,
        }
        local times = {}
        for _, name in ipairs({"find", "gsub", "match", "gmatch", "plain"}) do
          local f = calls[name]
          local t0 = os.clock()
          for i = 1, 20000 do f() end
          times[#times + 1] = name .. "=" .. (os.clock() - t0)
        end
        return table.concat(times, " ")
    "#;
    let c = Lua::new();
    let rust = Lua::new();
    zrobot_lua::pattern::install(&rust).unwrap();
    let tc: String = c.load(code).eval().unwrap();
    let tr: String = rust.load(code).eval().unwrap();
    println!("20000 calls each (seconds):\n  C    {tc}\n  Rust {tr}");
}
