//! The Lua [`Engine`]: compiles templates and runs their actions on pooled states.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use mlua::{LuaSerdeExt, Table, Value as LuaValue};
use zrobot_core::engine::{
    ActionCall, ActionError, ActionOutcome, BoxFuture, Callable, Engine, Hook, TemplateCode,
    TemplateSource,
};
use zrobot_core::TemplateError;

use crate::api::{self, CallContext};
use crate::convert;
use crate::sandbox::{self, Kill, Vm};

/// Limits and switches of the Lua runtime.
#[derive(Debug, Clone)]
pub struct LuaConfig {
    /// Lua instructions one action may execute (waits cost nothing).
    pub instruction_limit: u64,
    /// Bytes one action's Lua state may hold, code included.
    pub memory_limit: usize,
    /// Whether `robot.exec` may run processes (`--no-exec` turns it off).
    pub allow_exec: bool,
    /// States kept ready per template when idle.
    pub pool_size: usize,
    /// How long one request to a remote robot may take.
    pub remote_timeout: std::time::Duration,
    /// How long a wait on a remote task goes on while its robot cannot be reached.
    pub remote_unreachable: std::time::Duration,
    /// Bytes `robot.exec` keeps of a process's stdout, and as many of its
    /// stderr: past them the process is killed and the action fails (this
    /// memory is outside the Lua state's limit). `--exec-output-limit`.
    pub exec_output_limit: usize,
    /// Bytes of a response body `robot.http.request` reads; past them the
    /// request is dropped and the action fails. `--http-body-limit`.
    pub http_body_limit: usize,
    /// Whether template code may read the data of other services of this
    /// robot (`svc:data()`): a robot started with `--god`, for development.
    pub god_data: bool,
}

impl Default for LuaConfig {
    fn default() -> Self {
        LuaConfig {
            instruction_limit: 1_000_000_000,
            memory_limit: 64 * 1024 * 1024,
            allow_exec: true,
            pool_size: 32,
            remote_timeout: std::time::Duration::from_secs(10),
            remote_unreachable: std::time::Duration::from_secs(30),
            exec_output_limit: 16 * 1024 * 1024,
            http_body_limit: 16 * 1024 * 1024,
            god_data: false,
        }
    }
}

/// Runs templates written in Lua 5.4.
#[derive(Default)]
pub struct LuaEngine {
    config: Arc<LuaConfig>,
    shared: Arc<api::Shared>,
}

impl LuaEngine {
    pub fn new(config: LuaConfig) -> LuaEngine {
        let shared = api::Shared {
            clients: crate::remote::Clients::new(config.remote_timeout, config.remote_unreachable),
            god_data: config.god_data,
            ..Default::default()
        };
        LuaEngine {
            config: Arc::new(config),
            shared: Arc::new(shared),
        }
    }
}

impl Engine for LuaEngine {
    fn code_file(&self, template_name: &str) -> String {
        format!("{template_name}.lua")
    }

    fn compile(&self, source: &TemplateSource) -> Result<Arc<dyn TemplateCode>, TemplateError> {
        let code = std::fs::read_to_string(&source.code_path).map_err(|e| {
            TemplateError::new(
                &source.code_path,
                None,
                format!("cannot read the template's code: {e}"),
            )
        })?;
        let mut template = TemplateInner {
            source: source.clone(),
            code,
            config: self.config.clone(),
            shared: self.shared.clone(),
            actions: Vec::new(),
            hooks: Vec::new(),
            pool: Mutex::new(Vec::new()),
        };
        // The first state checks the code and tells what it defines, by
        // running its top level once (under a budget).
        let vm = template.new_vm()?;
        let module = sandbox::load_module(&vm, source, &self.config)?;
        let (actions, hooks) = list_functions(&module).map_err(|e| {
            TemplateError::new(
                &source.code_path,
                None,
                format!("cannot list the template's functions: {e}"),
            )
        })?;
        template.actions = actions;
        template.hooks = hooks;
        template
            .pool
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .push(vm);
        Ok(Arc::new(LuaTemplate(Arc::new(template))))
    }
}

fn list_functions(module: &Table) -> mlua::Result<(Vec<String>, Vec<Hook>)> {
    let mut actions = Vec::new();
    let mut hooks = Vec::new();
    for pair in module.pairs::<LuaValue, LuaValue>() {
        let (k, v) = pair?;
        let (LuaValue::String(k), LuaValue::Function(_)) = (k, v) else {
            continue;
        };
        let name = k.to_str()?.to_string();
        if let Some(h) = Hook::ALL.iter().find(|h| h.name() == name) {
            hooks.push(*h);
        } else if !name.starts_with('_') {
            actions.push(name);
        }
    }
    actions.sort();
    Ok((actions, hooks))
}

/// One compiled template.
struct LuaTemplate(Arc<TemplateInner>);

/// The code of one template and its pool of ready states.
struct TemplateInner {
    source: TemplateSource,
    code: String,
    config: Arc<LuaConfig>,
    shared: Arc<api::Shared>,
    actions: Vec<String>,
    hooks: Vec<Hook>,
    pool: Mutex<Vec<Vm>>,
}

impl TemplateInner {
    fn new_vm(&self) -> Result<Vm, TemplateError> {
        sandbox::new_vm(&self.source, &self.code, &self.config, &self.shared)
    }

    fn checkout(&self) -> Result<Vm, TemplateError> {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match pooled {
            Some(vm) => Ok(vm),
            None => self.new_vm(),
        }
    }

    fn give_back(&self, vm: Vm) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < self.config.pool_size {
            pool.push(vm);
        }
    }
}

impl TemplateCode for LuaTemplate {
    fn actions(&self) -> &[String] {
        &self.0.actions
    }

    fn has_hook(&self, hook: Hook) -> bool {
        self.0.hooks.contains(&hook)
    }

    fn run(&self, call: ActionCall) -> BoxFuture<'static, ActionOutcome> {
        let vm = match self.0.checkout() {
            Ok(vm) => vm,
            Err(e) => {
                return Box::pin(std::future::ready(ActionOutcome {
                    result: Err(ActionError::new("lua.load", e.to_string())),
                    data: None,
                }))
            }
        };
        let this = self.0.clone();
        Box::pin(async move { this.run_on(vm, call).await })
    }
}

impl TemplateInner {
    /// Runs one action on a borrowed state: the call's context in, the
    /// action under its budgets, data, result and eco out, and whether the
    /// state may be reused. Kept whole (about 105 lines): every way a run
    /// can end (ok, error, budget, memory, timeout, interruption) is decided
    /// here, next to what each does to the state.
    async fn run_on(&self, vm: Vm, call: ActionCall) -> ActionOutcome {
        let ActionCall {
            robot,
            service,
            task,
            callable,
            args,
            data,
            deadline,
        } = call;
        let name = callable.name().to_owned();
        vm.budget.arm(self.config.instruction_limit, deadline);
        let context = CallContext {
            robot,
            service,
            task,
            data: Some(data),
        };
        let prepared = (|| -> mlua::Result<(Table, LuaValue)> {
            let this = api::make_self(&vm.lua, context)?;
            let arg = match &callable {
                Callable::Hook(Hook::Init | Hook::Validate) => LuaValue::Nil,
                _ => vm.lua.to_value(&args)?,
            };
            Ok((this, arg))
        })();
        let (this, arg) = match prepared {
            Ok(p) => p,
            Err(e) => {
                vm.budget.disarm();
                let _ = vm.lua.remove_app_data::<CallContext>();
                return ActionOutcome {
                    result: Err(convert::action_error(&e, None)),
                    data: None,
                };
            }
        };
        // The code's top level runs again, in a fresh environment, inside the
        // call: nothing an earlier action wrote (globals, the module's
        // tables, its top-level locals) is visible to this one.
        let fut = vm.run_action.call_async::<LuaValue>((
            vm.main.clone(),
            name.as_str(),
            this.clone(),
            arg,
        ));
        let result = KillSwitch { vm: &vm, fut }.await;
        let kill = vm.budget.disarm();
        let _ = vm.lua.remove_app_data::<CallContext>();
        if let Some(kill) = kill {
            // A stopped state may hold anything half-done: never reuse it.
            return ActionOutcome {
                result: Err(kill.error(&self.config, &name)),
                data: None,
            };
        }
        let outcome = match result {
            Err(e) => {
                let memory = matches!(convert::root_cause(&e), mlua::Error::MemoryError(_));
                let err = convert::action_error(&e, Some(&name));
                if memory {
                    return ActionOutcome {
                        result: Err(Kill::Memory.error(&self.config, &name)),
                        data: None,
                    };
                }
                ActionOutcome {
                    result: Err(err),
                    data: None,
                }
            }
            Ok(ret) => {
                let result = convert::to_json(&vm.lua, ret).map_err(|m| {
                    ActionError::new(
                        "lua.result",
                        format!("`{name}` returned a value that cannot be stored: {m}"),
                    )
                });
                let data = match this.raw_get::<LuaValue>("data") {
                    Ok(LuaValue::Nil) | Err(_) => Ok(None),
                    Ok(d) => convert::to_json(&vm.lua, d).map(Some).map_err(|m| {
                        ActionError::new(
                            "data.invalid",
                            format!("`{name}` left data that cannot be stored: {m}"),
                        )
                    }),
                };
                match (result, data) {
                    (Ok(v), Ok(d)) => ActionOutcome {
                        result: Ok(v),
                        data: d,
                    },
                    (Err(e), _) | (_, Err(e)) => ActionOutcome {
                        result: Err(e),
                        data: None,
                    },
                }
            }
        };
        // Keep pooled states small: a state that grew is collected before reuse.
        if vm.lua.used_memory() > vm.baseline_memory * 4 + 256 * 1024 {
            let _ = vm.lua.gc_collect();
        }
        self.give_back(vm);
        outcome
    }
}

/// Polls the action, but ends it as soon as the budget hook has stopped it
/// (the hook yields the coroutine so that this check gets its turn). Each
/// poll starts a time slice the hook measures (see `sandbox`).
struct KillSwitch<'a, F> {
    vm: &'a Vm,
    fut: F,
}

impl<F: Future<Output = mlua::Result<LuaValue>> + Unpin> Future for KillSwitch<'_, F> {
    type Output = mlua::Result<LuaValue>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.vm.budget.killed().is_some() {
            return Poll::Ready(Ok(LuaValue::Nil));
        }
        self.vm.budget.polled();
        let r = Pin::new(&mut self.fut).poll(cx);
        if self.vm.budget.killed().is_some() {
            return Poll::Ready(Ok(LuaValue::Nil));
        }
        r
    }
}
