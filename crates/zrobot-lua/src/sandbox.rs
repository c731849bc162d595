//! Making a sandboxed Lua state for one template: the allowed libraries, a
//! `require` confined to the template's repository, the budget hook that
//! stops runaway loops, memory bombs and overdue actions, and the isolation
//! of actions sharing a pooled state (a fresh global environment per action,
//! read-only shared tables, no finalizers).

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlua::thread::ThreadStatus;
use mlua::{
    Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value as LuaValue, VmState,
};
use zrobot_core::engine::{ActionError, TemplateSource};
use zrobot_core::TemplateError;

use crate::api;
use crate::engine::LuaConfig;

/// The hook runs every this many instructions.
const HOOK_EVERY: u32 = 10_000;

/// How long loading a template's code (its top level, and the modules it
/// requires) may run, besides the instruction budget.
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an action runs before its hook hands the thread back to the
/// executor (a yield: the action's future wakes itself and returns
/// `Pending`), so that actions spinning on every template thread still let
/// the others run.
const SLICE_NANOS: u64 = 2_000_000;

/// A Lua state with one template's code compiled in it.
pub(crate) struct Vm {
    pub lua: Lua,
    /// The template's code, compiled once: called with a fresh environment it
    /// runs the code's top level there and returns the code's module table.
    pub main: Function,
    /// `(main, name, self, arg)`: runs `main` in a fresh environment, then the
    /// function `name` of the module it returned (see [`ISOLATION`]).
    pub run_action: Function,
    /// `(main)`: runs `main` in a fresh environment and returns the module.
    run_load: Function,
    pub budget: Arc<Budget>,
    /// Memory in use right after the code was loaded.
    pub baseline_memory: usize,
}

/// Why the hook stopped an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kill {
    Instructions,
    Memory,
    Deadline,
}

impl Kill {
    pub fn error(self, config: &LuaConfig, action: &str) -> ActionError {
        match self {
            Kill::Instructions => ActionError::new(
                "action.runaway",
                format!(
                    "`{action}` was stopped after {} Lua instructions: a loop that never ends? Split the work, or wait with robot.sleep between steps",
                    config.instruction_limit
                ),
            ),
            Kill::Memory => ActionError::new(
                "action.memory",
                format!(
                    "`{action}` was stopped: it used more than the {} MiB an action may hold",
                    config.memory_limit / (1024 * 1024)
                ),
            ),
            Kill::Deadline => ActionError::new(
                zrobot_core::engine::category::TIMEOUT,
                format!("`{action}` ran past its timeout and was stopped"),
            ),
        }
    }
}

/// The budget of the action running on a state, read by its hook. Atomics,
/// not a lock: the hook runs every few thousand instructions.
pub(crate) struct Budget {
    used: AtomicU64,
    limit: AtomicU64,
    /// Deadline as nanoseconds after `epoch`; 0 for none.
    deadline: AtomicU64,
    epoch: Instant,
    memory_limit: usize,
    /// 0: running; else a `Kill` (1 + its index).
    killed: AtomicU8,
    /// Alternates how a stopped action is ended (see the hook).
    strikes: AtomicU64,
    /// When the engine last polled the action, as nanoseconds after `epoch`.
    polled: AtomicU64,
    /// How long the action runs before the hook hands the thread back.
    slice_nanos: u64,
}

impl Budget {
    fn new(memory_limit: usize) -> Budget {
        Budget {
            used: AtomicU64::new(0),
            limit: AtomicU64::new(u64::MAX),
            deadline: AtomicU64::new(0),
            epoch: Instant::now(),
            memory_limit,
            killed: AtomicU8::new(0),
            strikes: AtomicU64::new(0),
            polled: AtomicU64::new(0),
            slice_nanos: SLICE_NANOS,
        }
    }

    /// Called by the engine each time it polls the action: starts a slice.
    pub fn polled(&self) {
        self.polled
            .store(self.epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// Whether the action has run a whole slice since it was last polled.
    fn slice_spent(&self) -> bool {
        let now = self.epoch.elapsed().as_nanos() as u64;
        now.saturating_sub(self.polled.load(Ordering::Relaxed)) > self.slice_nanos
    }

    pub fn arm(&self, instructions: u64, deadline: Option<Instant>) {
        self.used.store(0, Ordering::Relaxed);
        self.limit.store(instructions, Ordering::Relaxed);
        let d = deadline
            .map(|d| d.saturating_duration_since(self.epoch).as_nanos().max(1) as u64)
            .unwrap_or(0);
        self.deadline.store(d, Ordering::Relaxed);
        self.killed.store(0, Ordering::Relaxed);
        self.strikes.store(0, Ordering::Relaxed);
    }

    /// Ends the budget; tells whether the action was stopped.
    pub fn disarm(&self) -> Option<Kill> {
        let k = self.killed();
        self.limit.store(u64::MAX, Ordering::Relaxed);
        self.deadline.store(0, Ordering::Relaxed);
        k
    }

    pub fn killed(&self) -> Option<Kill> {
        match self.killed.load(Ordering::Relaxed) {
            1 => Some(Kill::Instructions),
            2 => Some(Kill::Memory),
            3 => Some(Kill::Deadline),
            _ => None,
        }
    }

    fn kill(&self, k: Kill) {
        let code = match k {
            Kill::Instructions => 1,
            Kill::Memory => 2,
            Kill::Deadline => 3,
        };
        let _ = self
            .killed
            .compare_exchange(0, code, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn check(&self, lua: &Lua) -> Option<Kill> {
        self.charge(lua, HOOK_EVERY as u64)
    }

    /// Whether the state may hold `bytes` more outside the Lua heap (a gsub
    /// result being built), against the memory budget the hook checks.
    pub(crate) fn hold(&self, lua: &Lua, bytes: usize) -> Option<Kill> {
        if lua.used_memory().saturating_add(bytes) > self.memory_limit / 16 * 15 {
            self.kill(Kill::Memory);
        }
        self.killed()
    }

    /// Counts `work` instructions' worth of work done outside the Lua VM (the
    /// pattern matcher), then checks the budget as the hook does.
    pub(crate) fn charge(&self, lua: &Lua, work: u64) -> Option<Kill> {
        if let Some(k) = self.killed() {
            return Some(k);
        }
        let used = self.used.fetch_add(work, Ordering::Relaxed) + work;
        if used > self.limit.load(Ordering::Relaxed) {
            self.kill(Kill::Instructions);
        } else if lua.used_memory() > self.memory_limit / 16 * 15 {
            self.kill(Kill::Memory);
        } else {
            let d = self.deadline.load(Ordering::Relaxed);
            if d != 0 && self.epoch.elapsed().as_nanos() as u64 > d {
                self.kill(Kill::Deadline);
            }
        }
        self.killed()
    }
}

/// The name mlua gives the Lua loop that drives an async function (it polls
/// the Rust future, and yields with a "pending" marker while it waits).
const ASYNC_POLL_LOOP: &str = "=__mlua_async_poll";

/// What the budget hook does every [`HOOK_EVERY`] instructions: stops an
/// action that is over its budget, and hands the thread back once a slice is
/// spent.
///
/// Never a slice yield inside mlua's async loop: between the poll of a Rust
/// future that said "pending" and the loop's own yield, a hook yield makes
/// the engine poll again at once (it wakes itself), and that poll goes on to
/// the loop's yield without polling the future; a wake-up the future sent in
/// between was spent on that poll, so the action would wait forever.
fn budget_hook(budget: &Budget, lua: &Lua, debug: &mlua::debug::Debug) -> mlua::Result<VmState> {
    match budget.check(lua) {
        // mlua's async call treats a yield from the hook as "wake me and
        // return Pending" (mlua 0.12 `AsyncThread::poll`), and the next poll
        // resumes the code where it was. Where Lua cannot yield (inside a C
        // call), the yield is skipped.
        None if budget.slice_spent() => {
            if debug.source().source.as_deref() == Some(ASYNC_POLL_LOOP) {
                Ok(VmState::Continue)
            } else {
                Ok(VmState::Yield)
            }
        }
        None => Ok(VmState::Continue),
        // Yielding hands control back to the engine, which then drops the
        // action; `pcall` cannot catch a yield. Where Lua cannot yield
        // (inside a C call), an error unwinds to a point where it can.
        Some(_) => {
            if budget
                .strikes
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(2)
            {
                Ok(VmState::Yield)
            } else {
                Err(mlua::Error::runtime("the action was stopped by the robot"))
            }
        }
    }
}

/// Bits of the standard library templates may use; `os` is cut down below.
fn allowed_libs() -> StdLib {
    StdLib::STRING | StdLib::TABLE | StdLib::MATH | StdLib::UTF8 | StdLib::OS
}

const PRELUDE: &str = r#"
local os_time, os_clock, os_date = os.time, os.clock, os.date
os = { time = os_time, clock = os_clock, date = os_date }
dofile, loadfile, collectgarbage = nil, nil, nil
string.dump = nil
"#;

/// Run after the robot API is installed: the async machinery loads the
/// coroutine library for itself and keeps reading `coroutine.yield` when it
/// builds async methods, so only `yield` (harmless: the action resumes at
/// once) stays.
const NO_COROUTINES: &str = r#"
coroutine = setmetatable({ yield = coroutine.yield }, { __index = function(_, k)
  error("coroutine." .. tostring(k) .. " is not available in templates: actions already run asynchronously; use robot.sleep or task:wait to wait", 2)
end })
"#;

/// Run last, once everything templates may reach is installed: it makes a
/// pooled state safe to share between services one action at a time.
///
/// - The real global table is never a template's environment. Each run of the
///   code gets a fresh one (`_G` is it) whose reads fall through to the real
///   globals; so a global written by one action is gone for the next.
/// - The code's main chunk is compiled once per state and re-run per action
///   in that fresh environment, so its module table and top-level locals are
///   fresh too. `require` caches compiled modules per state, their values per
///   action; `load` defaults to the action's environment.
/// - Every table reachable from the globals (`string`, `table`, `math`,
///   `utf8`, `os`, `coroutine`, `robot` and their subtables), the string
///   metatable and the environment's metatable are read-only: proxies whose
///   writes fail and whose metatable is protected; `rawset` refuses them.
/// - `setmetatable` refuses a metatable with `__gc`: a finalizer runs whenever
///   the collector decides (in another service's action, after the budget is
///   disarmed, in `lua_close`), so it could escape every budget. Lua marks an
///   object for finalization only if `__gc` is there when the metatable is
///   set, so a `__gc` added later is inert.
/// - Once the budget has stopped the action, `pcall`/`xpcall` re-raise what
///   they caught: where the hook cannot yield (inside a C call such as
///   `table.sort`, a `__close` run while the thread is reset, a `require`), its
///   error would otherwise be caught forever by a loop of `pcall`s.
const ISOLATION: &str = r#"
local find_module, stopped = ...
local G = _G
local type, error, next, tostring = type, error, next, tostring
local raw_setmetatable, raw_getmetatable = setmetatable, getmetatable
local raw_rawset, raw_rawget = rawset, rawget
local raw_pcall, raw_xpcall, raw_load = pcall, xpcall, load

local STOPPED = "the action was stopped by the robot"
local function after(ok, ...)
  if not ok and stopped() then error(STOPPED, 0) end
  return ok, ...
end
pcall = function(...) return after(raw_pcall(...)) end
xpcall = function(...) return after(raw_xpcall(...)) end

local frozen = {}
local function freeze(name, real)
  for k, v in next, real do
    if type(v) == "table" and not frozen[v] then
      raw_rawset(real, k, freeze(name .. "." .. tostring(k), v))
    end
  end
  local proxy = {}
  raw_setmetatable(proxy, {
    __index = real,
    __newindex = function(_, k)
      error(name .. " is read-only in templates (setting `" .. tostring(k) ..
        "`): keep your values in locals, in tables of your own, or in self.data", 2)
    end,
    __pairs = function(p) return function(_, k) return next(real, k) end, p, nil end,
    __len = function() return #real end,
    __metatable = name .. " is read-only in templates",
  })
  frozen[proxy] = true
  return proxy
end

rawset = function(t, k, v)
  if frozen[t] then
    error("rawset: this table is shared by every service and read-only in templates", 2)
  end
  return raw_rawset(t, k, v)
end

setmetatable = function(t, mt)
  if frozen[t] then
    error("setmetatable: this table is shared by every service and read-only in templates", 2)
  end
  if type(mt) == "table" and raw_rawget(mt, "__gc") ~= nil then
    error("setmetatable: finalizers (`__gc`) are not available in templates: release what you hold " ..
      "explicitly, or with a to-be-closed variable (`local x <close> = ...`)", 2)
  end
  return raw_setmetatable(t, mt)
end

local current_env, loaded, loading
local env_meta = {
  __index = G,
  __metatable = "the global environment's metatable is not available in templates",
}
local function fresh_env()
  local env = raw_setmetatable({}, env_meta)
  env._G = env
  current_env, loaded, loading = env, nil, nil
  return env
end

load = function(chunk, name, mode, env)
  if mode ~= nil and mode ~= "t" then
    error("load: only text chunks may be loaded in a template (mode \"t\")", 2)
  end
  if env == nil then env = current_env end
  return raw_load(chunk, name, "t", env)
end

local compiled = {}
require = function(name)
  local done = loaded
  if done == nil then done = {}; loaded = done end
  local v = done[name]
  if v ~= nil then return v end
  local maker = compiled[name]
  if maker == nil then maker = find_module(name); compiled[name] = maker end
  local busy = loading
  if busy == nil then busy = {}; loading = busy end
  if busy[name] then error("require: `" .. tostring(name) .. "` requires itself (a cycle)", 2) end
  busy[name] = true
  local ok, r = raw_pcall(maker, current_env, name)
  busy[name] = nil
  if not ok then error(r, 0) end
  if r == nil then r = true end
  done[name] = r
  return r
end

for k, v in next, G do
  if type(v) == "table" and k ~= "_G" then raw_rawset(G, k, freeze(k, v)) end
end
local string_meta = raw_getmetatable("")
string_meta.__index = G.string
string_meta.__metatable = freeze("the string metatable", { __index = G.string })

local function run_action(main, name, self, arg)
  local module = main(fresh_env())
  local f = type(module) == "table" and module[name] or nil
  if type(f) ~= "function" then
    error("the template's code did not define `" .. name .. "` when it ran for this action: " ..
      "define its functions whatever the state of things", 0)
  end
  return f(self, arg)
end
local function run_load(main)
  return main(fresh_env())
end
return run_action, run_load
"#;

/// The text a template's file is compiled from: its code as the body of a
/// function taking the environment, so that each run has its own `_ENV`.
/// Nothing is added before the first line, so line numbers stay true.
fn wrapped(code: &str) -> String {
    format!("return function(_ENV, ...) {code}\nend")
}

/// Compiles a file of template code into its maker, `function(env, ...)`.
/// A syntax error is reported from the file as written, not as wrapped.
fn compile_code(lua: &Lua, code: &str, chunk_name: &str) -> mlua::Result<Function> {
    let outer = lua
        .load(wrapped(code))
        .set_name(chunk_name)
        .set_mode(mlua::chunk::ChunkMode::Text)
        .into_function();
    match outer {
        Ok(f) => f.call::<Function>(()),
        Err(wrapped_err) => match lua
            .load(code)
            .set_name(chunk_name)
            .set_mode(mlua::chunk::ChunkMode::Text)
            .into_function()
        {
            Err(e) => Err(e),
            Ok(_) => Err(wrapped_err),
        },
    }
}

/// Makes a state, compiles the template's code in it, and arms its hook. The
/// code is not run here: see [`load_module`] and `run_action`.
pub(crate) fn new_vm(
    source: &TemplateSource,
    code: &str,
    config: &LuaConfig,
    shared: &Arc<api::Shared>,
) -> Result<Vm, TemplateError> {
    let path = &source.code_path;
    let fail = |what: &str, e: mlua::Error| {
        TemplateError::new(
            path,
            None,
            format!("{what}: {}", crate::convert::message_of(&e)),
        )
    };
    let lua = Lua::new_with(allowed_libs(), LuaOptions::new().thread_pool_size(4))
        .map_err(|e| fail("cannot create a Lua state", e))?;
    lua.load(PRELUDE)
        .set_name("=prelude")
        .exec()
        .map_err(|e| fail("cannot prepare the sandbox", e))?;
    let budget = Arc::new(Budget::new(config.memory_limit));
    // Before the standard tables are made read-only (`isolate`, below).
    crate::pattern::install_metered(&lua, budget.clone())
        .map_err(|e| fail("cannot install the pattern functions", e))?;
    let find_module = module_finder(&lua, source).map_err(|e| fail("cannot prepare require", e))?;
    api::install(&lua, source, config, shared)
        .map_err(|e| fail("cannot install the robot API", e))?;
    lua.load(NO_COROUTINES)
        .set_name("=prelude")
        .exec()
        .map_err(|e| fail("cannot prepare the sandbox", e))?;

    let chunk_name = format!("@{}", display_path(&source.repo_root, path));
    let main = compile_code(&lua, code, &chunk_name).map_err(|e| match e {
        mlua::Error::SyntaxError { message, .. } => {
            TemplateError::new(path, None, format!("Lua syntax error: {message}"))
        }
        other => fail("cannot compile the code", other),
    })?;
    let hook_budget = budget.clone();
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(HOOK_EVERY),
        move |lua, debug| budget_hook(&hook_budget, lua, debug),
    )
    .map_err(|e| fail("cannot install the budget hook", e))?;
    let (run_action, run_load) =
        isolate(&lua, find_module, &budget).map_err(|e| fail("cannot isolate actions", e))?;
    let baseline_memory = lua.used_memory();
    lua.set_memory_limit(baseline_memory + config.memory_limit)
        .map_err(|e| fail("cannot set the memory limit", e))?;
    Ok(Vm {
        lua,
        main,
        run_action,
        run_load,
        budget,
        baseline_memory,
    })
}

/// Runs [`ISOLATION`]; gives its `run_action` and `run_load`.
fn isolate(
    lua: &Lua,
    find_module: Function,
    budget: &Arc<Budget>,
) -> mlua::Result<(Function, Function)> {
    // `self`'s metatable is shared by every action of the state.
    let self_meta: Table = lua.named_registry_value("zrobot.self_meta")?;
    self_meta.raw_set(
        "__metatable",
        "the metatable of `self` is not available in templates",
    )?;
    let budget = budget.clone();
    let stopped = lua.create_function(move |_, ()| Ok(budget.killed().is_some()))?;
    lua.load(ISOLATION)
        .set_name("=isolation")
        .call((find_module, stopped))
}

/// Runs the template's top level once, as the template is compiled, to get
/// the table of functions it defines. It runs on a coroutine of its own under
/// the instruction budget and [`LOAD_TIMEOUT`], so that a top level that never
/// ends (or a module it requires) fails the template instead of freezing the
/// loader: the hook yields back here once the budget is spent.
pub(crate) fn load_module(
    vm: &Vm,
    source: &TemplateSource,
    config: &LuaConfig,
) -> Result<Table, TemplateError> {
    let path = &source.code_path;
    vm.budget.arm(
        config.instruction_limit,
        Some(Instant::now() + LOAD_TIMEOUT),
    );
    let result = run_to_end(vm);
    let kill = vm.budget.disarm();
    if let Some(kill) = kill {
        let why = match kill {
            Kill::Instructions => format!(
                "loading the code was stopped after {} Lua instructions",
                config.instruction_limit
            ),
            Kill::Memory => format!(
                "loading the code was stopped: it used more than the {} MiB a state may hold",
                config.memory_limit / (1024 * 1024)
            ),
            Kill::Deadline => format!(
                "loading the code was stopped after {} s",
                LOAD_TIMEOUT.as_secs()
            ),
        };
        return Err(TemplateError::new(
            path,
            None,
            format!("{why}: does its top level (or a module it requires) loop forever? The top level should only define the template's functions"),
        ));
    }
    let module = result.map_err(|e| {
        TemplateError::new(
            path,
            None,
            format!(
                "the code failed while loading: {}",
                crate::convert::message_of(&e)
            ),
        )
    })?;
    match module {
        LuaValue::Table(t) => Ok(t),
        _ => Err(TemplateError::new(
            path,
            None,
            "the code must end with `return <table of functions>` (e.g. `local node = {} ... return node`)",
        )),
    }
}

/// Resumes `run_load(main)` until it returns, fails, or the budget stops it.
fn run_to_end(vm: &Vm) -> mlua::Result<LuaValue> {
    let thread = vm.lua.create_thread(vm.run_load.clone())?;
    let mut out = thread.resume::<MultiValue>(vm.main.clone());
    loop {
        let values = out?;
        if vm.budget.killed().is_some() {
            return Ok(LuaValue::Nil);
        }
        if thread.status() != ThreadStatus::Resumable {
            return Ok(values.into_iter().next().unwrap_or(LuaValue::Nil));
        }
        // A bare yield (the hook's, or `coroutine.yield()`) just goes on; a
        // yield with values is an asynchronous call, which needs an action.
        if !values.is_empty() {
            return Err(mlua::Error::runtime(
                "robot calls that wait (robot.sleep, exec, http, task:wait...) work only in actions, not in the code's top level",
            ));
        }
        out = thread.resume::<MultiValue>(());
    }
}

/// A path shown in messages: relative to the repository root when inside it.
pub(crate) fn display_path(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The finder behind `require(name)`: it looks in the template's folder, its
/// `lib/`, then the repository root and its `lib/`, never outside the
/// repository, and gives the module compiled (a maker like the template's
/// main). `require` itself, in [`ISOLATION`], caches what this gives per state
/// and the module's value per action.
fn module_finder(lua: &Lua, source: &TemplateSource) -> mlua::Result<Function> {
    let root = source
        .repo_root
        .canonicalize()
        .unwrap_or_else(|_| source.repo_root.clone());
    let dir = source
        .dir
        .canonicalize()
        .unwrap_or_else(|_| source.dir.clone());
    lua.create_function(move |lua, name: String| {
        let rel = module_path(&name).ok_or_else(|| {
            mlua::Error::runtime(format!(
                "require: `{name}` is not a module name (letters, digits, `_`, `-`, dotted like `lib.util`)"
            ))
        })?;
        let candidates = [
            dir.join(&rel).with_extension("lua"),
            dir.join("lib").join(&rel).with_extension("lua"),
            dir.join(&rel).join("init.lua"),
            root.join(&rel).with_extension("lua"),
            root.join("lib").join(&rel).with_extension("lua"),
            root.join(&rel).join("init.lua"),
        ];
        let found = candidates.iter().find_map(|c| {
            let real = c.canonicalize().ok()?;
            (real.starts_with(&root) && real.is_file()).then_some(real)
        });
        let Some(file) = found else {
            return Err(mlua::Error::runtime(format!(
                "require: module `{name}` not found in the template's folder, its lib/, or the repository root; searched: {}",
                candidates.iter().map(|c| display_path(&root, c)).collect::<Vec<_>>().join(", ")
            )));
        };
        let code = std::fs::read_to_string(&file).map_err(|e| {
            mlua::Error::runtime(format!("require: cannot read {}: {e}", file.display()))
        })?;
        compile_code(lua, &code, &format!("@{}", display_path(&root, &file)))
    })
}

fn module_path(name: &str) -> Option<PathBuf> {
    if name.is_empty()
        || name.len() > 200
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        || name.starts_with('.')
        || name.ends_with('.')
        || name.contains("..")
    {
        return None;
    }
    let p: PathBuf = name.split('.').collect();
    p.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A future that is pending once, having already asked to be polled
    /// again (as `tokio::task::yield_now` does).
    async fn woken_then_pending() {
        let mut first = true;
        std::future::poll_fn(|cx| {
            if std::mem::take(&mut first) {
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await
    }

    /// With a hook that would yield at every instruction, an action calling
    /// an async function many times still ends: the hook never yields inside
    /// mlua's poll loop, where a yield loses the future's wake-up.
    #[tokio::test]
    async fn slice_yields_never_lose_a_wake_up() {
        let lua = Lua::new();
        let mut budget = Budget::new(64 * 1024 * 1024);
        budget.slice_nanos = 0;
        let budget = Arc::new(budget);
        budget.arm(u64::MAX / 2, None);
        let hook = budget.clone();
        lua.set_global_hook(
            HookTriggers::new().every_nth_instruction(1),
            move |lua, d| budget_hook(&hook, lua, d),
        )
        .expect("hook");
        let wait = lua
            .create_async_function(|_, ()| async {
                woken_then_pending().await;
                Ok(())
            })
            .expect("async function");
        lua.globals().set("wait", wait).expect("global");
        let action: Function = lua
            .load(
                "return function() local n = 0 for i = 1, 200 do wait() n = n + 1 end return n end",
            )
            .eval()
            .expect("action");
        let run = action.call_async::<i64>(());
        let n = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("the action stalled: a wake-up was lost")
            .expect("the action ran");
        assert_eq!(n, 200);
    }
}
