//! Making a sandboxed Lua state for one template: the allowed libraries, a
//! `require` confined to the template's repository, and the budget hook that
//! stops runaway loops, memory bombs and overdue actions.

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mlua::{HookTriggers, Lua, LuaOptions, StdLib, Table, Value as LuaValue, VmState};
use zrobot_core::engine::{ActionError, TemplateSource};
use zrobot_core::TemplateError;

use crate::api;
use crate::engine::LuaConfig;

/// The hook runs every this many instructions.
const HOOK_EVERY: u32 = 10_000;

/// How long an action runs before its hook hands the thread back to the
/// executor (a yield: the action's future wakes itself and returns
/// `Pending`), so that actions spinning on every template thread still let
/// the others run.
const SLICE_NANOS: u64 = 2_000_000;

/// A Lua state with one template's code loaded.
pub(crate) struct Vm {
    pub lua: Lua,
    /// The table the template's code returned.
    pub module: Table,
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
        now.saturating_sub(self.polled.load(Ordering::Relaxed)) > SLICE_NANOS
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
        if let Some(k) = self.killed() {
            return Some(k);
        }
        let used = self.used.fetch_add(HOOK_EVERY as u64, Ordering::Relaxed) + HOOK_EVERY as u64;
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

/// Bits of the standard library templates may use; `os` is cut down below.
fn allowed_libs() -> StdLib {
    StdLib::STRING | StdLib::TABLE | StdLib::MATH | StdLib::UTF8 | StdLib::OS
}

const PRELUDE: &str = r#"
local os_time, os_clock, os_date = os.time, os.clock, os.date
os = { time = os_time, clock = os_clock, date = os_date }
local raw_load = load
load = function(chunk, name, mode, env)
  if mode ~= nil and mode ~= "t" then
    error("load: only text chunks may be loaded in a template (mode \"t\")", 2)
  end
  if env == nil then return raw_load(chunk, name, "t") end
  return raw_load(chunk, name, "t", env)
end
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

/// Makes a state, loads the template's code in it, and arms its hook.
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
    install_require(&lua, source).map_err(|e| fail("cannot prepare require", e))?;
    api::install(&lua, source, config, shared)
        .map_err(|e| fail("cannot install the robot API", e))?;
    lua.load(NO_COROUTINES)
        .set_name("=prelude")
        .exec()
        .map_err(|e| fail("cannot prepare the sandbox", e))?;

    let chunk_name = format!("@{}", display_path(&source.repo_root, path));
    let module = lua
        .load(code)
        .set_name(chunk_name)
        .set_mode(mlua::chunk::ChunkMode::Text)
        .call::<LuaValue>(())
        .map_err(|e| match e {
            mlua::Error::SyntaxError { message, .. } => {
                TemplateError::new(path, None, format!("Lua syntax error: {message}"))
            }
            other => fail("the code failed while loading", other),
        })?;
    let LuaValue::Table(module) = module else {
        return Err(TemplateError::new(
            path,
            None,
            "the code must end with `return <table of functions>` (e.g. `local node = {} ... return node`)",
        ));
    };
    let budget = Arc::new(Budget::new(config.memory_limit));
    let hook_budget = budget.clone();
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(HOOK_EVERY),
        move |lua, _| {
            match hook_budget.check(lua) {
                // mlua's async call treats a yield from the hook as "wake me
                // and return Pending" (mlua 0.12 `AsyncThread::poll`), and the
                // next poll resumes the code where it was. Where Lua cannot
                // yield (inside a C call), the yield is skipped.
                None if hook_budget.slice_spent() => Ok(VmState::Yield),
                None => Ok(VmState::Continue),
                // Yielding hands control back to the engine, which then drops the
                // action; `pcall` cannot catch a yield. Where Lua cannot yield
                // (inside a C call), an error unwinds to a point where it can.
                Some(_) => {
                    if hook_budget
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
        },
    )
    .map_err(|e| fail("cannot install the budget hook", e))?;
    let baseline_memory = lua.used_memory();
    lua.set_memory_limit(baseline_memory + config.memory_limit)
        .map_err(|e| fail("cannot set the memory limit", e))?;
    Ok(Vm {
        lua,
        module,
        budget,
        baseline_memory,
    })
}

/// A path shown in messages: relative to the repository root when inside it.
pub(crate) fn display_path(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// `require(name)` looks in the template's folder, its `lib/`, then the
/// repository root and its `lib/`, and never outside the repository.
fn install_require(lua: &Lua, source: &TemplateSource) -> mlua::Result<()> {
    let root = source
        .repo_root
        .canonicalize()
        .unwrap_or_else(|_| source.repo_root.clone());
    let dir = source
        .dir
        .canonicalize()
        .unwrap_or_else(|_| source.dir.clone());
    let loaded: Table = lua.create_table()?;
    let loading = Arc::new(Mutex::new(Vec::<String>::new()));
    let require = lua.create_function(move |lua, name: String| {
        if let Some(v) = loaded.raw_get::<Option<LuaValue>>(name.as_str())? {
            return Ok(v);
        }
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
        {
            let mut l = loading.lock().unwrap_or_else(|e| e.into_inner());
            if l.contains(&name) {
                return Err(mlua::Error::runtime(format!("require: `{name}` requires itself (a cycle)")));
            }
            l.push(name.clone());
        }
        let result = (|| {
            let code = std::fs::read_to_string(&file)
                .map_err(|e| mlua::Error::runtime(format!("require: cannot read {}: {e}", file.display())))?;
            lua.load(code)
                .set_name(format!("@{}", display_path(&root, &file)))
                .set_mode(mlua::chunk::ChunkMode::Text)
                .call::<LuaValue>(name.as_str())
        })();
        loading.lock().unwrap_or_else(|e| e.into_inner()).retain(|n| n != &name);
        let value = match result? {
            LuaValue::Nil => LuaValue::Boolean(true),
            v => v,
        };
        loaded.raw_set(name.as_str(), value.clone())?;
        Ok(value)
    })?;
    lua.globals().set("require", require)
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
