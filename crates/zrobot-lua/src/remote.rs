//! `robot.robots`: services and tasks of other robots, reached over the REST
//! API for the handles of `handles.rs`. Calls that are safe to
//! repeat are retried a few times when the robot cannot be reached; a
//! schedule carries an idempotency key so that its retry never schedules
//! twice; waits are long polls, bounded.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlua::{Lua, LuaSerdeExt, Table, UserData, UserDataFields, UserDataMethods, Value as LuaValue};
use serde_json::Value;
use uuid::Uuid;
use zrobot_client::wire::{ServiceCreate, ServiceFilter as WireFilter, TaskState as WireState};
use zrobot_client::{Client, ClientError, Credentials, ScheduleOptions};
use zrobot_core::remote::LearnError;
use zrobot_core::{Robot, ServiceFilter};

use crate::api::{ctx, error_chain, json_arg, rt};
use crate::handles::{Ended, ServiceHandle, StateRows};

/// Tries of a call the robot cannot be reached for.
const TRIES: u32 = 3;
/// The longest single long poll.
const LONG_POLL: Duration = Duration::from_secs(30);

/// One HTTP client (connection pool) per remote URL, shared by every state.
#[derive(Default)]
pub(crate) struct Clients {
    by_url: Mutex<HashMap<String, Client>>,
    /// Robots whose old, unattributed secrets were matched to their services
    /// in this run (see [`attribute_old_secrets`]); held while matching, so
    /// that it happens once.
    attributed: tokio::sync::Mutex<HashSet<String>>,
    /// How long one request may take (long polls excepted).
    timeout: Duration,
    /// How long a wait goes on while the remote robot cannot be reached.
    unreachable: Duration,
}

impl Clients {
    pub fn new(timeout: Duration, unreachable: Duration) -> Clients {
        Clients {
            by_url: Mutex::default(),
            attributed: tokio::sync::Mutex::default(),
            timeout,
            unreachable,
        }
    }

    /// A client of robot `name` presenting its token and no service secret
    /// (see [`Remote`] for the calls that add one), and what is kept for it.
    fn for_robot(&self, robot: &Robot, name: &str) -> mlua::Result<Remote> {
        let Some(cfg) = robot.remote_robot(name) else {
            return Err(rt(format!(
                "no robot named `{name}`: start this robot with `--robot {name}=URL`, or call robot.robots:get(\"{name}\", URL)"
            )));
        };
        let base = {
            let mut by_url = self.by_url.lock().unwrap_or_else(|e| e.into_inner());
            match by_url.get(&cfg.url) {
                Some(c) => c.clone(),
                None => {
                    let c = Client::new(&cfg.url, Credentials::default())
                        .map_err(|e| rt(format!("robot `{name}`: {e}")))?
                        .with_timeout(self.timeout);
                    by_url.insert(cfg.url.clone(), c.clone());
                    c
                }
            }
        };
        let credentials = Credentials {
            admin_jwt: cfg.token.clone(),
            user_jwt: cfg.token.clone(),
            secrets: Vec::new(),
            god_token: None,
        };
        Ok(Remote {
            client: base.with_credentials(credentials),
            url: cfg.url.clone(),
            cfg,
        })
    }
}

/// A known robot, ready to be called.
struct Remote {
    /// Its token, no secret.
    client: Client,
    url: String,
    cfg: Arc<zrobot_core::remote::RemoteRobot>,
}

impl Remote {
    /// For a call about service `guid`: its secret only, if one is held.
    fn about(&self, guid: Uuid) -> Client {
        self.client.with_secrets(
            self.cfg
                .secret_of(guid)
                .map(str::to_owned)
                .into_iter()
                .collect(),
        )
    }

    /// For `GET /services`, the one call that needs several secrets: all of
    /// them (the client sends a long list in batches).
    fn listing(&self) -> Client {
        self.client.with_secrets(self.cfg.all_secrets())
    }
}

fn shared_clients(lua: &Lua) -> mlua::Result<std::sync::Arc<crate::api::Shared>> {
    lua.app_data_ref::<std::sync::Arc<crate::api::Shared>>()
        .map(|s| s.clone())
        .ok_or_else(|| rt("the robot API is not installed in this state"))
}

async fn client(lua: &Lua, name: &str) -> mlua::Result<(Remote, Robot)> {
    let robot = ctx(lua, |c| c.robot.clone())?;
    let shared = shared_clients(lua)?;
    let remote = shared.clients.for_robot(&robot, name)?;
    if remote.cfg.secrets.is_empty() {
        return Ok((remote, robot));
    }
    attribute_old_secrets(&shared.clients, &robot, name, &remote).await;
    let remote = shared.clients.for_robot(&robot, name)?;
    Ok((remote, robot))
}

/// Older settings kept one list of secrets per robot and sent all of them
/// with every call. Each is matched, once per run, to the service it grants:
/// the services a bare secret shows, less those shown to anyone (public
/// services), leave the one it grants. A secret that cannot be matched (its
/// service is gone or public, or the robot is open) stays in the old list,
/// presented only when listing services; nothing is lost. If the robot cannot
/// be reached, matching is tried again on the next call.
async fn attribute_old_secrets(clients: &Clients, robot: &Robot, name: &str, remote: &Remote) {
    let mut done = clients.attributed.lock().await;
    if done.contains(name) {
        return;
    }
    let bare = remote.client.with_credentials(Credentials::default());
    let everyone = WireFilter::default();
    let public: HashSet<Uuid> = match bare.services(&everyone).await {
        Ok(found) => found.into_iter().map(|s| s.guid).collect(),
        Err(ClientError::Transport { .. }) => return,
        Err(_) => HashSet::new(),
    };
    let mut found = Vec::new();
    for secret in &remote.cfg.secrets {
        let shown = match bare
            .with_secrets(vec![secret.clone()])
            .services(&everyone)
            .await
        {
            Ok(shown) => shown,
            Err(ClientError::Transport { .. }) => return,
            Err(_) => continue,
        };
        // A secret that grants nothing shows the public services too, so
        // only a service shown beyond them is known to be the secret's.
        let granted: Vec<Uuid> = shown
            .iter()
            .map(|s| s.guid)
            .filter(|g| !public.contains(g))
            .collect();
        if let [guid] = granted.as_slice() {
            found.push((*guid, secret.clone()));
        }
    }
    match robot.attribute_remote_secrets(name, &found).await {
        Ok(()) => {
            done.insert(name.to_owned());
        }
        Err(e) => tracing::warn!("robot {name}: keeping the secrets found for its services: {e}"),
    }
}

/// Forgets the secret of a remote service found gone (404), or deleted.
async fn forget(robot: &Robot, robot_name: &str, guid: Uuid) {
    if let Err(e) = robot.forget_remote_secret(robot_name, guid).await {
        tracing::warn!("robot {robot_name}: forgetting the secret of service {guid}: {e}");
    }
}

fn unreachable_bound(lua: &Lua) -> mlua::Result<Duration> {
    Ok(shared_clients(lua)?.clients.unreachable)
}

/// Runs `call`, retrying when the robot cannot be reached (only calls that are
/// safe to repeat come here); errors name the robot and the call.
async fn retried<T, F, Fut>(robot: &str, url: &str, what: &str, call: F) -> mlua::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    retried_about(robot, url, what, None, call).await
}

/// [`retried`] for a call about one service: if the robot answers that the
/// service does not exist (404), its secret is forgotten.
async fn retried_about<T, F, Fut>(
    robot: &str,
    url: &str,
    what: &str,
    service: Option<(&Robot, Uuid)>,
    mut call: F,
) -> mlua::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut pause = Duration::from_millis(100);
    for attempt in 1..=TRIES {
        match call().await {
            Ok(v) => return Ok(v),
            Err(ClientError::Transport { source, .. }) => {
                if attempt == TRIES {
                    return Err(rt(format!(
                        "robot `{robot}` ({url}): {what}: cannot reach the robot after {TRIES} tries: {}",
                        error_chain(&source)
                    )));
                }
                tokio::time::sleep(pause).await;
                pause *= 4;
            }
            Err(e) => {
                if let (Some((here, guid)), Some(404)) = (service, e.status()) {
                    forget(here, robot, guid).await;
                }
                return Err(remote_error(robot, what, &e));
            }
        }
    }
    unreachable!("the loop returns on its last try")
}

fn remote_error(robot: &str, what: &str, e: &ClientError) -> mlua::Error {
    match e {
        ClientError::Api { code, message, .. } => {
            rt(format!("robot `{robot}`: {what}: {message} (HTTP {code})"))
        }
        other => rt(format!("robot `{robot}`: {what}: {other}")),
    }
}

/// A Lua service filter as the REST API takes it, and its `guid`, which the
/// API's listing has no parameter for: the caller keeps only that service.
fn wire_filter(lua: &Lua, v: LuaValue) -> mlua::Result<(WireFilter, Option<Uuid>)> {
    let f: ServiceFilter = if v.is_nil() {
        ServiceFilter::default()
    } else {
        lua.from_value(v).map_err(|e| {
            rt(format!(
                "bad service filter ({}); its keys are name, guid, template_uid, template_host, template_account, template_repo, template_name, template_version",
                crate::convert::message_of(&e)
            ))
        })?
    };
    let guid = match &f.guid {
        None => None,
        Some(g) => Some(
            Uuid::parse_str(g)
                .map_err(|_| rt(format!("bad service filter: guid `{g}` is not a guid")))?,
        ),
    };
    Ok((
        WireFilter {
            name: f.name,
            template_uid: f.template_uid,
            template_host: f.template_host,
            template_account: f.template_account,
            template_repo: f.template_repo,
            template_name: f.template_name,
            template_version: f.template_version,
        },
        guid,
    ))
}

/// The services of robot `name` that match the Lua filter `filter`.
async fn listed(
    lua: &Lua,
    name: &str,
    filter: LuaValue,
) -> mlua::Result<(WireFilter, Vec<zrobot_client::wire::Service>)> {
    let (filter, guid) = wire_filter(lua, filter)?;
    let (remote, _) = client(lua, name).await?;
    let c = remote.listing();
    let mut found = retried(name, &remote.url, "find services", || c.services(&filter)).await?;
    if let Some(g) = guid {
        found.retain(|s| s.guid == g);
    }
    Ok((filter, found))
}

/// Whether the template reference `reference` (any suffix of a UID, as
/// `find_or_create` takes it) names the template of the UID `uid`, whatever
/// the version.
fn same_template(reference: &str, uid: &str) -> bool {
    let mut wanted: Vec<&str> = reference.trim_matches('/').split('/').collect();
    if wanted.len() > 1
        && wanted
            .last()
            .is_some_and(|v| semver::Version::parse(v).is_ok())
    {
        wanted.pop();
    }
    let mut have: Vec<&str> = uid.split('/').collect();
    have.pop(); // its version
    wanted.len() <= have.len() && have.ends_with(&wanted)
}

/// Installs `robot.robots`.
pub(crate) fn robots_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "get",
        lua.create_async_function(|lua, (_this, name, url): (LuaValue, String, Option<String>)| async move {
            let robot = ctx(&lua, |c| c.robot.clone())?;
            if let Some(url) = url {
                Client::new(&url, Credentials::default()).map_err(|e| rt(format!("robot `{name}`: {e}")))?;
                // A new name carries no token; a known one keeps its URL.
                robot.learn_remote_robot(&name, &url).await.map_err(|e| match e {
                    LearnError::Moved { .. } => rt(e.to_string()),
                    other => rt(format!("robot `{name}`: {other}")),
                })?;
            } else if robot.remote_robot(&name).is_none() {
                return Err(rt(format!(
                    "no robot named `{name}`: give its URL, robot.robots:get(\"{name}\", URL), or start this robot with `--robot {name}=URL`"
                )));
            }
            Ok(RemoteRobot { name })
        })?,
    )?;
    let meta = lua.create_table()?;
    meta.set(
        "__index",
        lua.create_function(|lua, (_t, name): (LuaValue, String)| {
            let robot = ctx(lua, |c| c.robot.clone())?;
            if robot.remote_robot(&name).is_none() {
                return Err(rt(format!(
                    "no robot named `{name}`: start this robot with `--robot {name}=URL`, or call robot.robots:get(\"{name}\", URL)"
                )));
            }
            Ok(RemoteRobot { name })
        })?,
    )?;
    t.set_metatable(Some(meta))?;
    Ok(t)
}

/// `robot.robots[name]`.
struct RemoteRobot {
    name: String,
}

impl UserData for RemoteRobot {
    fn add_fields<F: UserDataFields<Self>>(f: &mut F) {
        f.add_field_method_get("name", |_, this| Ok(this.name.clone()));
        f.add_field_method_get("services", |_, this| {
            Ok(RemoteServices {
                robot: this.name.clone(),
            })
        });
    }
}

/// `robot.robots[name].services`.
struct RemoteServices {
    robot: String,
}

impl UserData for RemoteServices {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_async_method("find", |lua, this, filter: LuaValue| async move {
            let (_, found) = listed(&lua, &this.robot, filter).await?;
            Ok(found
                .into_iter()
                .map(|s| RemoteService::handle(&this.robot, &s))
                .collect::<Vec<_>>())
        });
        m.add_async_method("exists", |lua, this, filter: LuaValue| async move {
            let (_, found) = listed(&lua, &this.robot, filter).await?;
            Ok(!found.is_empty())
        });
        m.add_async_method("get", |lua, this, filter: LuaValue| async move {
            let (filter, mut found) = listed(&lua, &this.robot, filter).await?;
            match found.len() {
                1 => Ok(RemoteService::handle(&this.robot, &found.remove(0))),
                0 => Err(rt(format!(
                    "robot `{}`: no service matches {} (or this robot holds no secret for it)",
                    this.robot,
                    serde_json::to_string(&filter).unwrap_or_default()
                ))),
                n => Err(rt(format!(
                    "robot `{}`: {n} services match {}; narrow the filter",
                    this.robot,
                    serde_json::to_string(&filter).unwrap_or_default()
                ))),
            }
        });
        m.add_async_method(
            "create",
            |lua, this, (template, name, data, opts): (String, String, LuaValue, Option<Table>)| async move {
                let public = match &opts {
                    Some(o) => o.get::<Option<bool>>("public")?.unwrap_or(false),
                    None => false,
                };
                let data = json_arg(&lua, data, "service data")?;
                create(&lua, &this.robot, template, name, data, public, false).await
            },
        );
        m.add_async_method(
            "find_or_create",
            |lua, this, (template, name, data): (String, String, LuaValue)| async move {
                let data = json_arg(&lua, data, "service data")?;
                let (remote, _) = client(&lua, &this.robot).await?;
                let c = remote.listing();
                let filter = WireFilter {
                    name: Some(name.clone()),
                    ..Default::default()
                };
                let found = retried(&this.robot, &remote.url, "find services", || {
                    c.services(&filter)
                })
                .await?;
                if let Some(s) = found.first() {
                    if !same_template(&template, &s.template) {
                        return Err(rt(format!(
                            "robot `{}`: a service named `{name}` exists, but from template {} rather than {template}",
                            this.robot, s.template
                        )));
                    }
                    return Ok(RemoteService::handle(&this.robot, s));
                }
                // Another caller may create it meanwhile: then it is found.
                create(&lua, &this.robot, template, name, data, false, true).await
            },
        );
    }
}

/// Creates a service on `robot_name` and keeps its secret, durably. With
/// `or_existing`, a name taken meanwhile gives that service.
async fn create(
    lua: &Lua,
    robot_name: &str,
    template: String,
    name: String,
    data: Value,
    public: bool,
    or_existing: bool,
) -> mlua::Result<ServiceHandle> {
    let (remote, robot) = client(lua, robot_name).await?;
    // Creating needs no service secret: the token, or an open robot.
    let c = remote.client.clone();
    let url = remote.url.clone();
    let req = ServiceCreate {
        template,
        name: name.clone(),
        data,
        public,
    };
    let what = format!("create service `{name}`");
    let mut pause = Duration::from_millis(100);
    for attempt in 1..=TRIES {
        match c.create_service(&req).await {
            Ok(created) => {
                robot
                    .add_remote_secret(robot_name, created.service.guid, &created.secret)
                    .await
                    .map_err(|e| {
                        rt(format!(
                            "robot `{robot_name}`: keeping the secret of `{name}`: {e}"
                        ))
                    })?;
                return Ok(RemoteService::handle(robot_name, &created.service));
            }
            // A retry after a lost answer (the first try made it), or a
            // creation by someone else in the meantime.
            Err(ClientError::Api { code: 409, .. }) if attempt > 1 || or_existing => {
                let filter = WireFilter {
                    name: Some(name.clone()),
                    ..Default::default()
                };
                let lister = remote.listing();
                let found = retried(robot_name, &url, &what, || lister.services(&filter)).await?;
                if let Some(s) = found.first() {
                    return Ok(RemoteService::handle(robot_name, s));
                }
                return Err(rt(format!(
                    "robot `{robot_name}`: {what}: the name is taken"
                )));
            }
            Err(ClientError::Transport { source, .. }) if attempt < TRIES => {
                tracing::debug!("robot {robot_name}: {what}: {source}; retrying");
                tokio::time::sleep(pause).await;
                pause *= 4;
            }
            Err(e) => return Err(remote_error(robot_name, &what, &e)),
        }
    }
    unreachable!("the loop returns on its last try")
}

/// A service of another robot: what [`ServiceHandle::Remote`] holds.
pub(crate) struct RemoteService {
    pub robot: String,
    pub guid: Uuid,
    pub name: String,
    pub template_uid: String,
}

impl RemoteService {
    fn from_wire(robot: &str, s: &zrobot_client::wire::Service) -> RemoteService {
        RemoteService {
            robot: robot.to_owned(),
            guid: s.guid,
            name: s.name.clone(),
            template_uid: s.template.clone(),
        }
    }

    fn handle(robot: &str, s: &zrobot_client::wire::Service) -> ServiceHandle {
        ServiceHandle::Remote(RemoteService::from_wire(robot, s))
    }

    pub(crate) async fn state(&self, lua: &Lua) -> mlua::Result<StateRows> {
        let (remote, robot) = client(lua, &self.robot).await?;
        let c = remote.about(self.guid);
        let what = format!("state of service `{}`", self.name);
        let gone = Some((&robot, self.guid));
        let s = retried_about(&self.robot, &remote.url, &what, gone, || {
            c.service(self.guid)
        })
        .await?;
        Ok(s.state
            .into_iter()
            .map(|row| {
                let state = serde_json::to_value(row.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                (row.category, row.tag, state)
            })
            .collect())
    }

    pub(crate) async fn logs(&self, lua: &Lua) -> mlua::Result<String> {
        let (remote, robot) = client(lua, &self.robot).await?;
        let c = remote.about(self.guid);
        let what = format!("log of service `{}`", self.name);
        let gone = Some((&robot, self.guid));
        let logs =
            retried_about(&self.robot, &remote.url, &what, gone, || c.logs(self.guid)).await?;
        Ok(logs.logs)
    }

    pub(crate) async fn tasks(
        &self,
        lua: &Lua,
        all: bool,
    ) -> mlua::Result<Vec<crate::handles::TaskRow>> {
        let (remote, robot) = client(lua, &self.robot).await?;
        let c = remote.about(self.guid);
        let what = format!("tasks of service `{}`", self.name);
        let gone = Some((&robot, self.guid));
        let tasks = retried_about(&self.robot, &remote.url, &what, gone, || {
            c.tasks(self.guid, all)
        })
        .await?;
        Ok(tasks
            .into_iter()
            .map(|t| crate::handles::TaskRow {
                guid: t.guid.to_string(),
                result: t.result_value(),
                action: t.action_name,
                state: state_name(t.state),
                created: t.created as f64,
                duration: t.duration,
                error: t.eco.map(|e| e.message),
            })
            .collect())
    }

    pub(crate) async fn data(&self, lua: &Lua) -> mlua::Result<Value> {
        let (remote, robot) = client(lua, &self.robot).await?;
        let c = remote.about(self.guid);
        let what = format!("data of service `{}`", self.name);
        let gone = Some((&robot, self.guid));
        let s = retried_about(&self.robot, &remote.url, &what, gone, || {
            c.service(self.guid)
        })
        .await?;
        s.data.ok_or_else(|| {
            rt(format!(
                "robot `{}` shows the data of service `{}` only to its god token: give this robot that token for it (`--robot {}=URL,TOKEN_FILE`), or ask one of its actions",
                self.robot, self.name, self.robot
            ))
        })
    }

    pub(crate) async fn actions(&self, lua: &Lua) -> mlua::Result<Vec<String>> {
        let (remote, robot) = client(lua, &self.robot).await?;
        let c = remote.about(self.guid);
        let what = format!("actions of service `{}`", self.name);
        let gone = Some((&robot, self.guid));
        let actions = retried_about(&self.robot, &remote.url, &what, gone, || {
            c.actions(self.guid)
        })
        .await?;
        Ok(actions.into_iter().map(|a| a.name).collect())
    }

    pub(crate) async fn schedule(
        &self,
        lua: &Lua,
        action: String,
        args: Value,
    ) -> mlua::Result<RemoteTask> {
        let (remote, robot) = client(lua, &self.robot).await?;
        let c = remote.about(self.guid);
        let (caller_task, traceparent) = traceparent(lua)?;
        let options = ScheduleOptions {
            // The same key on every try: the robot schedules once.
            idempotency_key: Some(Uuid::new_v4().to_string()),
            caller_task,
            traceparent: Some(traceparent),
        };
        let what = format!("schedule `{action}` on service `{}`", self.name);
        let gone = Some((&robot, self.guid));
        let task = retried_about(&self.robot, &remote.url, &what, gone, || {
            c.schedule_with(self.guid, &action, args.clone(), &options)
        })
        .await?;
        Ok(RemoteTask {
            robot: self.robot.clone(),
            service: self.guid,
            service_name: self.name.clone(),
            action,
            guid: task.guid,
        })
    }

    pub(crate) async fn delete(&self, lua: &Lua) -> mlua::Result<()> {
        let (remote, robot) = client(lua, &self.robot).await?;
        let c = remote.about(self.guid);
        let what = format!("delete service `{}`", self.name);
        let gone = Some((&robot, self.guid));
        retried_about(&self.robot, &remote.url, &what, gone, || {
            c.delete_service(self.guid)
        })
        .await?;
        // Deleted: its secret grants nothing any more.
        forget(&robot, &self.robot, self.guid).await;
        Ok(())
    }
}

/// A `traceparent` continuing the calling task's chain, or starting one.
fn traceparent(lua: &Lua) -> mlua::Result<(Option<String>, String)> {
    let task = ctx(lua, |c| c.task.clone())?;
    let caller = task.as_ref().map(|t| t.guid.to_string());
    let inherited = task
        .as_ref()
        .and_then(|t| t.record().trace)
        .and_then(|t| t.traceparent)
        .and_then(|tp| tp.split('-').nth(1).map(str::to_owned))
        .filter(|id| id.len() == 32);
    let trace_id = inherited.unwrap_or_else(|| Uuid::new_v4().simple().to_string());
    let span = &Uuid::new_v4().simple().to_string()[..16];
    Ok((caller, format!("00-{trace_id}-{span}-01")))
}

/// A task of another robot: what [`TaskHandle::Remote`] holds.
pub(crate) struct RemoteTask {
    pub robot: String,
    service: Uuid,
    service_name: String,
    action: String,
    pub guid: Uuid,
}

fn state_name(s: WireState) -> &'static str {
    match s {
        WireState::New => "new",
        WireState::Running => "running",
        WireState::Ok => "ok",
        WireState::Error => "error",
    }
}

impl RemoteTask {
    /// The task as the core keeps it while an action waits on it.
    pub(crate) fn target(&self) -> zrobot_core::RemoteTaskRef {
        zrobot_core::RemoteTaskRef {
            robot: self.robot.clone(),
            guid: self.guid,
            service_guid: self.service,
            service_name: self.service_name.clone(),
            action_name: self.action.clone(),
        }
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "`{}` of service `{}` on robot `{}`",
            self.action, self.service_name, self.robot
        )
    }

    async fn get(&self, lua: &Lua, what: &str) -> mlua::Result<zrobot_client::wire::Task> {
        let (remote, _) = client(lua, &self.robot).await?;
        let (c, url) = (remote.about(self.service), remote.url);
        let what = format!("{what} of task {}", self.describe());
        retried(&self.robot, &url, &what, || c.task(self.service, self.guid)).await
    }

    pub(crate) async fn state(&self, lua: &Lua) -> mlua::Result<&'static str> {
        Ok(state_name(self.get(lua, "state").await?.state))
    }

    pub(crate) async fn result(&self, lua: &Lua) -> mlua::Result<Option<Value>> {
        let t = self.get(lua, "result").await?;
        Ok(match t.state {
            WireState::Ok => t.result_value(),
            _ => None,
        })
    }

    pub(crate) async fn cancel(&self, lua: &Lua) -> mlua::Result<()> {
        let (remote, _) = client(lua, &self.robot).await?;
        let (c, url) = (remote.about(self.service), remote.url);
        let what = format!("cancel task {}", self.describe());
        retried(&self.robot, &url, &what, || {
            c.cancel_task(self.service, self.guid)
        })
        .await
    }

    /// Resolves only if the chain of waits from this task comes back to
    /// `waiter` (through this robot and others), with the cycle described.
    /// Asks the robot holding the task a second after the wait began, then
    /// every two: each wait is recorded before its first question, so of
    /// two waits closing a cycle at once, the later question sees both.
    pub(crate) async fn find_cycle(&self, lua: &Lua, waiter: &Arc<zrobot_core::Task>) -> String {
        let mut pause = Duration::from_secs(1);
        loop {
            tokio::time::sleep(pause).await;
            pause = Duration::from_secs(2);
            let Ok((remote, _)) = client(lua, &self.robot).await else {
                continue;
            };
            let c = remote.about(self.service);
            let Ok(chain) = c.wait_chain(self.service, self.guid, &[waiter.guid]).await else {
                continue;
            };
            if !chain.cycle {
                continue;
            }
            let me = waiter.record();
            let mut steps = vec![format!(
                "`{}` of service `{}`",
                me.action_name, me.service_name
            )];
            for l in &chain.links {
                steps.push(if l.guid == waiter.guid {
                    l.describe.clone()
                } else {
                    let via = match &l.robot {
                        Some(further) => format!("{}/{further}", self.robot),
                        None => self.robot.clone(),
                    };
                    format!("{} on robot `{via}`", l.describe)
                });
            }
            return steps.join(" -> ");
        }
    }

    /// Long polls until the task ends or `limit` passes; rides out the robot
    /// being unreachable for the engine's bound.
    pub(crate) async fn wait(&self, lua: &Lua, limit: Option<Duration>) -> mlua::Result<Ended> {
        let (remote, _) = client(lua, &self.robot).await?;
        let (c, url) = (remote.about(self.service), remote.url);
        let bound = unreachable_bound(lua)?;
        let started = Instant::now();
        let mut unreachable_since: Option<Instant> = None;
        loop {
            let left = limit.map(|l| l.saturating_sub(started.elapsed()));
            if left.is_some_and(|l| l.is_zero()) {
                return Err(rt(format!(
                    "waiting on {}: timed out after {:?}",
                    self.describe(),
                    limit.unwrap_or_default()
                )));
            }
            let poll = left.map(|l| l.min(LONG_POLL)).unwrap_or(LONG_POLL);
            match c.wait_task(self.service, self.guid, poll).await {
                Ok(t) if t.state.is_done() => {
                    if t.state == WireState::Ok {
                        return Ok(Ok(t.result_value().unwrap_or(Value::Null)));
                    }
                    return Ok(Err(t
                        .eco
                        .map(|e| e.message)
                        .unwrap_or_else(|| "failed".into())));
                }
                Ok(_) => unreachable_since = None,
                Err(ClientError::Transport { source, .. }) => {
                    let since = *unreachable_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= bound {
                        return Err(rt(format!(
                            "waiting on {}: robot `{}` ({url}) cannot be reached for {}s: {}",
                            self.describe(),
                            self.robot,
                            bound.as_secs_f64(),
                            error_chain(&source)
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(200).min(bound)).await;
                }
                Err(e) => {
                    return Err(remote_error(
                        &self.robot,
                        &format!("waiting on {}", self.describe()),
                        &e,
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::same_template;

    #[test]
    fn a_template_reference_names_its_template_whatever_the_version() {
        let uid = "github.com/acme/templates/node/1.2.0";
        for r in [
            "node",
            "templates/node",
            "github.com/acme/templates/node",
            "node/1.0.0",
            "github.com/acme/templates/node/2.0.0",
        ] {
            assert!(same_template(r, uid), "{r}");
        }
        for r in [
            "vm",
            "other/node",
            "ode",
            "x/github.com/acme/templates/node",
        ] {
            assert!(!same_template(r, uid), "{r}");
        }
    }
}
