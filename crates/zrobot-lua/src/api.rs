//! The `robot` global and what actions get: `self`, its `state` and `log`,
//! and the service and task handles of `handles.rs`. Every call that waits is async:
//! it suspends only the calling action.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mlua::{
    Function, Lua, LuaSerdeExt, MultiValue, Table, UserData, UserDataMethods, Value as LuaValue,
};
use serde_json::Value;
use zrobot_core::engine::TemplateSource;
use zrobot_core::robot::NewService;
use zrobot_core::service::LogLevel;
use zrobot_core::{CoreError, Robot, Service, ServiceFilter, TagState, Task};

use crate::convert;
use crate::engine::LuaConfig;
use crate::handles::{ServiceHandle, TaskHandle};

/// `robot.templates`: `add_repo(url[, ref])` and `checkout_repo(url, ref)`,
/// as 0-robot's `self.api.templates` had them; each answers `{commit,
/// templates}` once the templates are loaded (services move afterwards).
/// Refused unless the robot's operator allowed it.
fn templates_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let call = |known: bool| {
        move |lua: Lua, (url, reference): (String, Option<String>)| async move {
            let (robot, sources) = ctx(&lua, |c| (c.robot.clone(), c.robot.template_sources()))?;
            let sources = sources.ok_or_else(|| {
                rt("this robot does not let template code add template repositories (they bring code into it): its operator starts it with --allow-template-repos-from-templates")
            })?;
            let fetched = sources
                .fetch(&robot, url, reference, known)
                .await
                .map_err(rt)?;
            let out = lua.create_table()?;
            out.set("commit", fetched.commit)?;
            out.set("templates", fetched.templates)?;
            Ok(out)
        }
    };
    t.set("add_repo", lua.create_async_function(call(false))?)?;
    t.set(
        "checkout_repo",
        lua.create_async_function(move |lua, (url, reference): (String, String)| {
            call(true)(lua, (url, Some(reference)))
        })?,
    )?;
    Ok(t)
}

/// What all states of the engine share: the HTTP client keeps its connections.
#[derive(Default)]
pub(crate) struct Shared {
    pub http: OnceLock<Result<reqwest::Client, String>>,
    /// Clients of remote robots.
    pub clients: crate::remote::Clients,
    /// [`crate::LuaConfig::god_data`].
    pub god_data: bool,
}

impl Shared {
    fn http(&self) -> Result<reqwest::Client, String> {
        self.http
            .get_or_init(|| {
                let _ = rustls::crypto::ring::default_provider().install_default();
                reqwest::Client::builder()
                    .pool_idle_timeout(Duration::from_secs(60))
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client: {e}"))
            })
            .clone()
    }
}

/// What the running action may reach, kept in the state's app data for the
/// length of one call.
pub(crate) struct CallContext {
    pub robot: Robot,
    pub service: Arc<Service>,
    pub task: Option<Arc<Task>>,
    /// The service data, until the action first reads `self.data`.
    pub data: Option<Arc<Value>>,
}

pub(crate) fn ctx<R>(lua: &Lua, f: impl FnOnce(&CallContext) -> R) -> mlua::Result<R> {
    match lua.app_data_ref::<CallContext>() {
        Some(c) => Ok(f(&c)),
        None => Err(mlua::Error::runtime(
            "this call works only while an action runs, not when the template's code is loaded",
        )),
    }
}

pub(crate) fn rt(msg: impl Into<String>) -> mlua::Error {
    mlua::Error::runtime(msg.into())
}

pub(crate) fn json_arg(lua: &Lua, v: LuaValue, what: &str) -> mlua::Result<Value> {
    convert::to_json(lua, v).map_err(|m| rt(format!("{what}: {m}")))
}

/// Builds `self` for one call and makes the call's context current.
pub(crate) fn make_self(lua: &Lua, context: CallContext) -> mlua::Result<Table> {
    // Every field is made on its first read (the `zrobot.self_meta` metatable
    // of `install`): most actions read one or two, and a no-op none.
    let t = lua.create_table_with_capacity(0, 8)?;
    let meta: Table = lua.named_registry_value("zrobot.self_meta")?;
    t.set_metatable(Some(meta))?;
    lua.set_app_data(context);
    Ok(t)
}

/// Installs the `robot` global and what `self` needs.
pub(crate) fn install(
    lua: &Lua,
    source: &TemplateSource,
    config: &LuaConfig,
    shared: &Arc<crate::api::Shared>,
) -> mlua::Result<()> {
    let g = lua.globals();
    install_self_meta(lua)?;

    let robot = lua.create_table()?;
    robot.set("template_dir", source.dir.display().to_string())?;
    robot.set("services", services_table(lua)?)?;
    robot.set("robots", crate::remote::robots_table(lua)?)?;
    lua.set_app_data(shared.clone());
    robot.set(
        "sleep",
        lua.create_async_function(|_, s: f64| async move {
            if !(s.is_finite() && s >= 0.0) {
                return Err(rt("robot.sleep: give a number of seconds, zero or more"));
            }
            tokio::time::sleep(Duration::from_secs_f64(s.min(1e9))).await;
            Ok(())
        })?,
    )?;
    robot.set(
        "now",
        lua.create_function(|_, ()| Ok(zrobot_core::time::now()))?,
    )?;
    robot.set(
        "uuid",
        lua.create_function(|_, ()| Ok(uuid::Uuid::new_v4().to_string()))?,
    )?;
    robot.set(
        "exec",
        exec_function(lua, config.allow_exec, config.exec_output_limit)?,
    )?;
    let http = lua.create_table()?;
    http.set(
        "request",
        http_function(lua, shared.clone(), config.http_body_limit)?,
    )?;
    robot.set("http", http)?;

    robot.set("json", json_table(lua)?)?;
    robot.set("yaml", yaml_table(lua)?)?;
    robot.set("wait_all", crate::handles::wait_all_function(lua)?)?;
    robot.set("templates", templates_table(lua)?)?;
    g.set("robot", robot)?;

    g.set(
        "print",
        lua.create_function(|lua, args: MultiValue| {
            let line = args
                .iter()
                .map(|v| v.to_string().unwrap_or_else(|_| "?".into()))
                .collect::<Vec<_>>()
                .join("\t");
            let service = ctx(lua, |c| c.service.clone())?;
            write_log(lua, &service, LogLevel::Info, line);
            Ok(())
        })?,
    )?;
    Ok(())
}

/// `self`'s metatable: `self.data` and the other fields are made on first
/// read; `self:schedule_action`.
fn install_self_meta(lua: &Lua) -> mlua::Result<()> {
    let load_data = lua.create_function(|lua, ()| {
        let data = lua
            .app_data_mut::<CallContext>()
            .and_then(|mut c| c.data.take())
            .unwrap_or_default();
        lua.to_value(&*data)
    })?;
    let field = lua.create_function(|lua, key: mlua::LuaString| {
        let svc = ctx(lua, |c| c.service.clone())?;
        let value = match &*key.to_str()? {
            "name" => LuaValue::String(lua.create_string(&svc.name)?),
            "guid" => {
                let mut guid = uuid::Uuid::encode_buffer();
                let text = svc.guid.hyphenated().encode_lower(&mut guid);
                LuaValue::String(lua.create_string(&*text)?)
            }
            "template_uid" => LuaValue::String(lua.create_string(&svc.template().uid_text)?),
            "version" => {
                LuaValue::String(lua.create_string(svc.template().uid.version.to_string())?)
            }
            "state" => LuaValue::UserData(lua.create_userdata(StateHandle(svc))?),
            "log" => LuaValue::UserData(lua.create_userdata(LogHandle(svc))?),
            _ => LuaValue::Nil,
        };
        Ok(value)
    })?;
    let self_methods = lua.create_table()?;
    self_methods.set(
        "schedule_action",
        lua.create_async_function(
            |lua, (_this, action, args): (LuaValue, String, LuaValue)| async move {
                let (robot, svc) = ctx(&lua, |c| (c.robot.clone(), c.service.clone()))?;
                let args = json_arg(&lua, args, "schedule_action arguments")?;
                let task = robot
                    .schedule(&svc, &action, args)
                    .await
                    .map_err(|e| rt(e.to_string()))?;
                Ok(TaskHandle::Local(task))
            },
        )?,
    )?;
    let meta: Table = lua
        .load(
            r#"
local load_data, field, methods = ...
local lazy = { name = true, guid = true, template_uid = true, version = true, state = true, log = true }
return { __index = function(t, k)
  if k == "data" then local d = load_data(); rawset(t, "data", d); return d end
  if lazy[k] then local v = field(k); rawset(t, k, v); return v end
  return methods[k]
end }"#,
        )
        .set_name("=self")
        .call((load_data, field, self_methods))?;
    lua.set_named_registry_value("zrobot.self_meta", meta)?;
    Ok(())
}

/// `robot.json`: `encode` and `decode`.
fn json_table(lua: &Lua) -> mlua::Result<Table> {
    let json = lua.create_table()?;
    json.set(
        "encode",
        lua.create_function(|lua, v: LuaValue| {
            let v = json_arg(lua, v, "robot.json.encode")?;
            serde_json::to_string(&v).map_err(|e| rt(format!("robot.json.encode: {e}")))
        })?,
    )?;
    json.set(
        "decode",
        lua.create_function(|lua, s: mlua::LuaString| {
            let v: Value = serde_json::from_slice(&s.as_bytes())
                .map_err(|e| rt(format!("robot.json.decode: not valid JSON: {e}")))?;
            lua.to_value(&v)
        })?,
    )?;
    Ok(json)
}

/// `robot.yaml`: `encode` and `decode`, YAML 1.2 style.
fn yaml_table(lua: &Lua) -> mlua::Result<Table> {
    let yaml = lua.create_table()?;
    yaml.set(
        "encode",
        lua.create_function(|lua, v: LuaValue| {
            let v = json_arg(lua, v, "robot.yaml.encode")?;
            serde_saphyr::to_string(&v).map_err(|e| rt(format!("robot.yaml.encode: {e}")))
        })?,
    )?;
    yaml.set(
        "decode",
        lua.create_function(|lua, s: String| {
            let v: Value = zrobot_core::yaml::from_str(&s)
                .map_err(|e| rt(format!("robot.yaml.decode: not valid YAML: {e}")))?;
            lua.to_value(&v)
        })?,
    )?;
    Ok(yaml)
}

fn filter_from(lua: &Lua, v: LuaValue) -> mlua::Result<ServiceFilter> {
    if v.is_nil() {
        return Ok(ServiceFilter::default());
    }
    lua.from_value::<ServiceFilter>(v).map_err(|e| {
        rt(format!(
            "bad service filter ({}); its keys are name, guid, template_uid, template_host, template_account, template_repo, template_name, template_version",
            convert::message_of(&e)
        ))
    })
}

fn describe(filter: &ServiceFilter) -> String {
    serde_json::to_string(filter)
        .unwrap_or_default()
        .replace(",\"", ", \"")
}

/// `robot.services`: find, exists, get, create, find_or_create; a list of
/// registrations (about 85 lines).
fn services_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "find",
        lua.create_function(|lua, (_this, filter): (LuaValue, LuaValue)| {
            let filter = filter_from(lua, filter)?;
            let robot = ctx(lua, |c| c.robot.clone())?;
            let found: Vec<ServiceHandle> = robot
                .find_services(&filter)
                .into_iter()
                .map(ServiceHandle::Local)
                .collect();
            Ok(found)
        })?,
    )?;
    t.set(
        "exists",
        lua.create_function(|lua, (_this, filter): (LuaValue, LuaValue)| {
            let filter = filter_from(lua, filter)?;
            let robot = ctx(lua, |c| c.robot.clone())?;
            Ok(!robot.find_services(&filter).is_empty())
        })?,
    )?;
    t.set(
        "get",
        lua.create_function(|lua, (_this, filter): (LuaValue, LuaValue)| {
            let filter = filter_from(lua, filter)?;
            let robot = ctx(lua, |c| c.robot.clone())?;
            let mut found = robot.find_services(&filter);
            match found.len() {
                1 => Ok(ServiceHandle::Local(found.remove(0))),
                0 => Err(rt(format!("no service matches {}", describe(&filter)))),
                n => Err(rt(format!(
                    "{n} services match {}: {}; narrow the filter",
                    describe(&filter),
                    found
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            }
        })?,
    )?;
    t.set(
        "create",
        lua.create_async_function(
            |lua,
             (_this, template, name, data, opts): (
                LuaValue,
                String,
                String,
                LuaValue,
                Option<Table>,
            )| async move {
                let robot = ctx(&lua, |c| c.robot.clone())?;
                let data = json_arg(&lua, data, "service data")?;
                let public = match &opts {
                    Some(o) => o.get::<Option<bool>>("public")?.unwrap_or(false),
                    None => false,
                };
                let svc = robot
                    .create_service(NewService {
                        template,
                        name,
                        data,
                        public,
                        secrets: Vec::new(),
                    })
                    .await
                    .map_err(|e| rt(e.to_string()))?;
                Ok(ServiceHandle::Local(svc))
            },
        )?,
    )?;
    t.set(
        "find_or_create",
        lua.create_async_function(
            |lua, (_this, template, name, data): (LuaValue, String, String, LuaValue)| async move {
                find_or_create(&lua, template, name, data).await
            },
        )?,
    )?;
    Ok(t)
}

/// `robot.services:find_or_create`: the service named `name` if it exists
/// (from the same template, any version), else a new one; a creation by
/// another action at the same moment gives that one.
async fn find_or_create(
    lua: &Lua,
    template: String,
    name: String,
    data: LuaValue,
) -> mlua::Result<ServiceHandle> {
    let robot = ctx(lua, |c| c.robot.clone())?;
    if let Some(svc) = robot.service_by_name(&name) {
        let wanted = robot
            .templates()
            .resolve(&template)
            .map_err(|e| rt(e.to_string()))?;
        let have = svc.template();
        if have.uid.repo != wanted.uid.repo || have.uid.name != wanted.uid.name {
            return Err(rt(format!(
                "a service named `{name}` exists, but from template {} rather than {}",
                have.uid, wanted.uid
            )));
        }
        return Ok(ServiceHandle::Local(svc));
    }
    let data = json_arg(lua, data, "service data")?;
    let created = robot
        .create_service(NewService {
            template,
            name: name.clone(),
            data,
            public: false,
            secrets: Vec::new(),
        })
        .await;
    match created {
        Ok(svc) => Ok(ServiceHandle::Local(svc)),
        // Another action is creating it right now: wait for that
        // creation (bounded by how long its hooks may run).
        Err(CoreError::NameTaken(_)) => {
            let deadline = tokio::time::Instant::now() + robot.config().hook_timeout * 2;
            loop {
                if let Some(svc) = robot.service_by_name(&name) {
                    return Ok(ServiceHandle::Local(svc));
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(rt(format!(
                        "service `{name}` is being created elsewhere and did not appear in time"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Err(e) => Err(rt(e.to_string())),
    }
}

/// A byte count for messages: `16 MiB`, `512 KiB`, `100 bytes`.
fn bytes(n: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

/// Why reading a process's output stopped.
enum ReadFail {
    /// More than the limit arrived on this stream.
    TooMuch(&'static str),
    Io(std::io::Error),
}

/// Writes `input` to a process's stdin, then closes it. A process that
/// exits or closes its stdin without reading it all is not an error.
async fn feed_stdin(
    pipe: Option<tokio::process::ChildStdin>,
    input: Option<Vec<u8>>,
) -> Result<(), ReadFail> {
    use tokio::io::AsyncWriteExt;
    if let (Some(mut pipe), Some(input)) = (pipe, input) {
        let _ = pipe.write_all(&input).await;
    }
    Ok(())
}

/// Reads one pipe to its end, keeping at most `limit` bytes: the output of a
/// process is read as it comes, never all at once past the bound.
async fn read_capped(
    pipe: Option<impl tokio::io::AsyncRead + Unpin>,
    limit: usize,
    stream: &'static str,
) -> Result<Vec<u8>, ReadFail> {
    use tokio::io::AsyncReadExt;
    let Some(mut pipe) = pipe else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = pipe.read(&mut chunk).await.map_err(ReadFail::Io)?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > limit {
            return Err(ReadFail::TooMuch(stream));
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// `robot.exec(argv[, opts])`. Kept whole (about 100 lines): the options,
/// the process and each way it can end, in one closure.
fn exec_function(lua: &Lua, allowed: bool, output_limit: usize) -> mlua::Result<Function> {
    lua.create_async_function(
        move |lua, (argv, opts): (Vec<String>, Option<Table>)| async move {
            if !allowed {
                return Err(rt(
                    "robot.exec is turned off on this robot (it was started with --no-exec)",
                ));
            }
            let Some((program, args)) = argv.split_first() else {
                return Err(rt(
                    "robot.exec: give the command as a list, e.g. {\"ls\", \"-l\"}",
                ));
            };
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(args)
                .kill_on_drop(true)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut timeout = Duration::from_secs(3600);
            let mut stdin = None;
            if let Some(o) = &opts {
                if let Some(t) = o.get::<Option<f64>>("timeout")? {
                    if !(t.is_finite() && t > 0.0) {
                        return Err(rt(
                            "robot.exec: timeout must be a positive number of seconds",
                        ));
                    }
                    timeout = Duration::from_secs_f64(t.min(1e9));
                }
                if let Some(cwd) = o.get::<Option<String>>("cwd")? {
                    cmd.current_dir(cwd);
                }
                if let Some(env) = o.get::<Option<Table>>("env")? {
                    for pair in env.pairs::<String, String>() {
                        let (k, v) = pair?;
                        cmd.env(k, v);
                    }
                }
                stdin = o
                    .get::<Option<mlua::LuaString>>("stdin")?
                    .map(|s| s.as_bytes().to_vec());
            }
            cmd.stdin(if stdin.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            });
            let mut child = cmd
                .spawn()
                .map_err(|e| rt(format!("robot.exec: cannot run `{program}`: {e}")))?;
            let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
            // Fed alongside the reads, within the action's own future: a
            // process that never reads its input holds nothing past it.
            let feed = feed_stdin(child.stdin.take(), stdin);
            let run = async {
                let ((), out, err) = tokio::try_join!(
                    feed,
                    read_capped(stdout, output_limit, "stdout"),
                    read_capped(stderr, output_limit, "stderr")
                )?;
                let status = child.wait().await.map_err(ReadFail::Io)?;
                Ok::<_, ReadFail>((status, out, err))
            };
            let ended = tokio::time::timeout(timeout, run).await;
            let out = match ended {
                Ok(Ok(out)) => out,
                Ok(Err(ReadFail::Io(e))) => {
                    let _ = child.start_kill();
                    return Err(rt(format!("robot.exec: `{program}` failed: {e}")));
                }
                Ok(Err(ReadFail::TooMuch(stream))) => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    return Err(rt(format!(
                        "robot.exec: `{program}` wrote more than {} to {stream} and was killed; \
                         the robot keeps at most that much of each stream (its --exec-output-limit): \
                         write large output to a file instead",
                        bytes(output_limit)
                    )));
                }
                Err(_) => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    return Err(rt(format!(
                        "robot.exec: `{program}` ran past its timeout of {}s and was killed",
                        timeout.as_secs_f64()
                    )));
                }
            };
            let r = lua.create_table()?;
            let (status, stdout, stderr) = out;
            r.set("status", status.code().unwrap_or(-1))?;
            r.set("stdout", lua.create_string(&stdout)?)?;
            r.set("stderr", lua.create_string(&stderr)?)?;
            Ok(r)
        },
    )
}

fn http_function(lua: &Lua, shared: Arc<Shared>, body_limit: usize) -> mlua::Result<Function> {
    lua.create_async_function(move |lua, req: Table| {
        let shared = shared.clone();
        async move {
            let client = shared.http().map_err(rt)?;
            let url: String = req
                .get::<Option<String>>("url")?
                .ok_or_else(|| rt("robot.http.request: `url` is required"))?;
            let method: String = req
                .get::<Option<String>>("method")?
                .unwrap_or_else(|| "GET".into());
            let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .map_err(|_| {
                    rt(format!(
                        "robot.http.request: `{method}` is not an HTTP method"
                    ))
                })?;
            let timeout = req.get::<Option<f64>>("timeout")?.unwrap_or(30.0);
            if !(timeout.is_finite() && timeout > 0.0) {
                return Err(rt(
                    "robot.http.request: timeout must be a positive number of seconds",
                ));
            }
            let mut rb = client
                .request(method, &url)
                .timeout(Duration::from_secs_f64(timeout.min(1e6)));
            if let Some(h) = req.get::<Option<Table>>("headers")? {
                for pair in h.pairs::<String, String>() {
                    let (k, v) = pair?;
                    rb = rb.header(k, v);
                }
            }
            if let Some(body) = req.get::<Option<mlua::LuaString>>("body")? {
                rb = rb.body(body.as_bytes().to_vec());
            }
            let resp = rb
                .send()
                .await
                .map_err(|e| rt(format!("robot.http.request: {url}: {}", error_chain(&e))))?;
            let status = resp.status().as_u16();
            let headers = lua.create_table()?;
            for (k, v) in resp.headers() {
                headers.set(k.as_str(), lua.create_string(v.as_bytes())?)?;
            }
            let too_big = || {
                rt(format!(
                    "robot.http.request: {url}: the response body is larger than {}, the most the \
                     robot reads (its --http-body-limit); the request was dropped",
                    bytes(body_limit)
                ))
            };
            // A body announced too large is refused before any of it is read.
            if resp.content_length().is_some_and(|n| n > body_limit as u64) {
                return Err(too_big());
            }
            let mut resp = resp;
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| {
                rt(format!(
                    "robot.http.request: {url}: reading the body: {}",
                    error_chain(&e)
                ))
            })? {
                if body.len() + chunk.len() > body_limit {
                    return Err(too_big());
                }
                body.extend_from_slice(&chunk);
            }
            let r = lua.create_table()?;
            r.set("status", status)?;
            r.set("headers", headers)?;
            r.set("body", lua.create_string(&body)?)?;
            Ok(r)
        }
    })
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// `self.state`.
struct StateHandle(Arc<Service>);

fn parse_state(s: &str) -> mlua::Result<TagState> {
    TagState::parse(s).ok_or_else(|| {
        rt(format!(
            "`{s}` is not a state: use ok, error, warning or skipped"
        ))
    })
}

impl UserData for StateHandle {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method(
            "set",
            |_, this, (cat, tag, st): (String, String, String)| {
                let st = parse_state(&st)?;
                this.0.state_set(&cat, &tag, st);
                Ok(())
            },
        );
        m.add_method("get", |lua, this, (cat, tag): (String, Option<String>)| {
            let found = this.0.state_get(&cat, tag.as_deref());
            if found.is_empty() {
                return Ok(LuaValue::Nil);
            }
            let t = lua.create_table()?;
            for (k, v) in found {
                t.set(k, v.as_str())?;
            }
            Ok(LuaValue::Table(t))
        });
        m.add_method(
            "check",
            |_, this, (cat, tag, st): (String, String, String)| {
                let want = parse_state(&st)?;
                let have = this.0.state_get(&cat, Some(&tag)).remove(&tag);
                if have != Some(want) {
                    return Err(rt(format!(
                        "state check failed: {cat}/{tag} is {}, expected {}",
                        have.map(|h| h.as_str()).unwrap_or("not set"),
                        want.as_str()
                    )));
                }
                Ok(())
            },
        );
        m.add_method("delete", |_, this, (cat, tag): (String, Option<String>)| {
            this.0.state_delete(&cat, tag.as_deref());
            Ok(())
        });
    }
}

/// Writes a line to the service's log, naming the task whose action wrote
/// it when one runs.
fn write_log(lua: &Lua, service: &Arc<Service>, level: LogLevel, text: String) {
    let task = ctx(lua, |c| c.task.clone()).ok().flatten();
    match task {
        Some(t) => service.log_from(&t, level, text),
        None => service.log(level, text),
    }
}

/// `self.log`.
struct LogHandle(Arc<Service>);

impl UserData for LogHandle {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        for (name, level) in [
            ("debug", LogLevel::Debug),
            ("info", LogLevel::Info),
            ("warning", LogLevel::Warning),
            ("error", LogLevel::Error),
        ] {
            m.add_method(name, move |lua, this, msg: LuaValue| {
                let text = msg.to_string().unwrap_or_else(|_| "?".into());
                write_log(lua, &this.0, level, text);
                Ok(())
            });
        }
    }
}
