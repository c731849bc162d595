//! Service and task handles: one Lua type each, whatever robot holds the
//! service. An action sees the same fields and methods on a service of this
//! robot and on one of another robot (DESIGN: "local or remote alike"); each
//! method is written once here, and only how it reaches the service differs:
//! the core for a local one, the REST API for a remote one (`remote.rs`).
//!
//! Calls on a local service never wait, so the async methods return at once
//! for it: they never yield, even where Lua cannot (a `table.sort`
//! comparator, a metamethod). The remote arms are boxed: their futures
//! (retries, HTTP) are kilobytes, and every call of a method allocates its
//! future, so a local call must not pay for the remote one's size.

use std::sync::Arc;
use std::time::Duration;

use mlua::{Lua, LuaSerdeExt, Table, UserData, UserDataFields, UserDataMethods, Value as LuaValue};
use serde_json::Value;
use zrobot_core::{Service, Task, TaskState};

use crate::api::{ctx, json_arg, rt};
use crate::remote::{RemoteService, RemoteTask};

/// A service, here or on another robot.
pub(crate) enum ServiceHandle {
    Local(Arc<Service>),
    Remote(RemoteService),
}

/// A task, here or on another robot.
pub(crate) enum TaskHandle {
    Local(Arc<Task>),
    Remote(RemoteTask),
}

/// A service's state table as rows: category, tag, state.
pub(crate) type StateRows = Vec<(String, String, String)>;

/// A task as `svc:tasks()` lists it.
pub(crate) struct TaskRow {
    pub guid: String,
    pub action: String,
    pub state: &'static str,
    pub created: f64,
    pub duration: Option<f64>,
    pub result: Option<Value>,
    /// The eco message of a failed task.
    pub error: Option<String>,
}

impl TaskRow {
    fn to_lua(&self, lua: &Lua) -> mlua::Result<Table> {
        let t = lua.create_table()?;
        t.set("guid", self.guid.as_str())?;
        t.set("action", self.action.as_str())?;
        t.set("state", self.state)?;
        t.set("created", self.created)?;
        t.set("duration", self.duration)?;
        if let Some(r) = &self.result {
            t.set("result", lua.to_value(r)?)?;
        }
        t.set("error", self.error.as_deref())?;
        Ok(t)
    }
}

/// How a task ended, seen by `task:wait`: its result, or its eco message.
pub(crate) type Ended = Result<Value, String>;

impl ServiceHandle {
    fn name(&self) -> &str {
        match self {
            ServiceHandle::Local(s) => &s.name,
            ServiceHandle::Remote(s) => &s.name,
        }
    }

    fn guid(&self) -> uuid::Uuid {
        match self {
            ServiceHandle::Local(s) => s.guid,
            ServiceHandle::Remote(s) => s.guid,
        }
    }

    async fn state(&self, lua: &Lua) -> mlua::Result<StateRows> {
        match self {
            ServiceHandle::Local(s) => Ok(s
                .state()
                .into_iter()
                .flat_map(|(cat, tags)| {
                    tags.into_iter()
                        .map(move |(tag, st)| (cat.clone(), tag, st.as_str().to_owned()))
                })
                .collect()),
            ServiceHandle::Remote(s) => Box::pin(s.state(lua)).await,
        }
    }

    async fn actions(&self, lua: &Lua) -> mlua::Result<Vec<String>> {
        match self {
            ServiceHandle::Local(s) => Ok(s.template().actions().to_vec()),
            ServiceHandle::Remote(s) => Box::pin(s.actions(lua)).await,
        }
    }

    async fn schedule(&self, lua: &Lua, action: String, args: Value) -> mlua::Result<TaskHandle> {
        match self {
            ServiceHandle::Local(s) => {
                let robot = ctx(lua, |c| c.robot.clone())?;
                let task = robot
                    .schedule(s, &action, args)
                    .await
                    .map_err(|e| rt(format!("service `{}`: {e}", s.name)))?;
                Ok(TaskHandle::Local(task))
            }
            ServiceHandle::Remote(s) => Ok(TaskHandle::Remote(
                Box::pin(s.schedule(lua, action, args)).await?,
            )),
        }
    }

    /// Its log, as `GET /services/{guid}/logs` gives it.
    async fn logs(&self, lua: &Lua) -> mlua::Result<String> {
        match self {
            ServiceHandle::Local(s) => {
                Ok(zrobot_client::wire::log_text(s.log_lines().iter().map(
                    |l| (l.time, l.level.as_str(), l.task_tag(), l.message.as_str()),
                )))
            }
            ServiceHandle::Remote(s) => Box::pin(s.logs(lua)).await,
        }
    }

    /// Its tasks: waiting and running, and with `all` the finished ones too.
    async fn tasks(&self, lua: &Lua, all: bool) -> mlua::Result<Vec<TaskRow>> {
        match self {
            ServiceHandle::Local(s) => {
                let robot = ctx(lua, |c| c.robot.clone())?;
                let records = robot
                    .tasks(s, all)
                    .await
                    .map_err(|e| rt(format!("tasks of service `{}`: {e}", s.name)))?;
                Ok(records
                    .into_iter()
                    .map(|r| TaskRow {
                        guid: r.guid.to_string(),
                        action: r.action_name,
                        state: r.state.as_str(),
                        created: r.created,
                        duration: r.duration,
                        result: r.result,
                        error: r.eco.map(|e| e.message),
                    })
                    .collect())
            }
            ServiceHandle::Remote(s) => Box::pin(s.tasks(lua, all)).await,
        }
    }

    /// Its data, for a robot in god mode (here: `--god`; there: this
    /// robot holds the other's god token).
    async fn data(&self, lua: &Lua) -> mlua::Result<Value> {
        match self {
            ServiceHandle::Local(s) => {
                let god = lua
                    .app_data_ref::<Arc<crate::api::Shared>>()
                    .is_some_and(|shared| shared.god_data);
                if !god {
                    return Err(rt(format!(
                        "the data of service `{}` are its own: other services read them only on a robot started with --god (development); ask one of its actions instead",
                        s.name
                    )));
                }
                Ok((*s.data()).clone())
            }
            ServiceHandle::Remote(s) => Box::pin(s.data(lua)).await,
        }
    }

    async fn delete(&self, lua: &Lua) -> mlua::Result<()> {
        match self {
            ServiceHandle::Local(s) => {
                let (robot, me) = ctx(lua, |c| (c.robot.clone(), c.service.guid))?;
                if me == s.guid {
                    return Err(rt(
                        "a service cannot delete itself from one of its own actions",
                    ));
                }
                // Its on_delete failures are in the robot's log, as for a
                // remote service deleted without a report.
                robot
                    .delete_service(s.guid)
                    .await
                    .map(|_| ())
                    .map_err(|e| rt(e.to_string()))
            }
            ServiceHandle::Remote(s) => Box::pin(s.delete(lua)).await,
        }
    }
}

impl UserData for ServiceHandle {
    fn add_fields<F: UserDataFields<Self>>(f: &mut F) {
        f.add_field_method_get("name", |_, this| Ok(this.name().to_owned()));
        f.add_field_method_get("guid", |_, this| Ok(this.guid().to_string()));
        f.add_field_method_get("template_uid", |_, this| {
            Ok(match this {
                ServiceHandle::Local(s) => s.template_uid(),
                ServiceHandle::Remote(s) => s.template_uid.clone(),
            })
        });
        // The robot holding the service: nil for this one.
        f.add_field_method_get("robot", |_, this| {
            Ok(match this {
                ServiceHandle::Local(_) => None,
                ServiceHandle::Remote(s) => Some(s.robot.clone()),
            })
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_async_method("state", |lua, this, ()| async move {
            let rows = this.state(&lua).await?;
            state_table(&lua, rows)
        });
        m.add_async_method("actions", |lua, this, ()| async move {
            this.actions(&lua).await
        });
        m.add_async_method(
            "schedule_action",
            |lua, this, (action, args): (String, LuaValue)| async move {
                let args = json_arg(&lua, args, "schedule_action arguments")?;
                this.schedule(&lua, action, args).await
            },
        );
        m.add_async_method("logs", |lua, this, ()| async move { this.logs(&lua).await });
        m.add_async_method("tasks", |lua, this, all: Option<bool>| async move {
            let rows = this.tasks(&lua, all.unwrap_or(false)).await?;
            let list = lua.create_table()?;
            for (i, row) in rows.iter().enumerate() {
                list.set(i + 1, row.to_lua(&lua)?)?;
            }
            Ok(list)
        });
        m.add_async_method("data", |lua, this, ()| async move {
            let data = this.data(&lua).await?;
            lua.to_value(&data)
        });
        m.add_async_method(
            "delete",
            |lua, this, ()| async move { this.delete(&lua).await },
        );
        m.add_meta_method("__tostring", |_, this, ()| {
            Ok(match this {
                ServiceHandle::Local(s) => format!("service {} ({})", s.name, s.guid),
                ServiceHandle::Remote(s) => {
                    format!("service {} ({}) on robot {}", s.name, s.guid, s.robot)
                }
            })
        });
    }
}

fn state_table(lua: &Lua, rows: StateRows) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    for (cat, tag, state) in rows {
        let c: Table = match t.get::<Option<Table>>(cat.as_str())? {
            Some(c) => c,
            None => {
                let c = lua.create_table()?;
                t.set(cat, c.clone())?;
                c
            }
        };
        c.set(tag, state)?;
    }
    Ok(t)
}

impl TaskHandle {
    /// `` `action` of service `name` ``, and the robot when it is another.
    fn describe(&self) -> String {
        match self {
            TaskHandle::Local(t) => format!(
                "`{}` of service `{}`",
                t.action_name(),
                t.record().service_name
            ),
            TaskHandle::Remote(t) => t.describe(),
        }
    }

    async fn state(&self, lua: &Lua) -> mlua::Result<&'static str> {
        match self {
            TaskHandle::Local(t) => Ok(t.state().as_str()),
            TaskHandle::Remote(t) => Box::pin(t.state(lua)).await,
        }
    }

    /// The result of a task that ended `ok`; `None` otherwise.
    async fn result(&self, lua: &Lua) -> mlua::Result<Option<Value>> {
        match self {
            TaskHandle::Local(t) => {
                let r = t.record();
                Ok(match (r.state, r.result) {
                    (TaskState::Ok, Some(v)) => Some(v),
                    _ => None,
                })
            }
            TaskHandle::Remote(t) => Box::pin(t.result(lua)).await,
        }
    }

    async fn wait(&self, lua: &Lua, limit: Option<Duration>) -> mlua::Result<Ended> {
        match self {
            TaskHandle::Local(t) => {
                let (robot, waiter) = ctx(lua, |c| (c.robot.clone(), c.task.clone()))?;
                let record = robot
                    .wait_task(waiter.as_ref(), t, limit)
                    .await
                    .map_err(|e| rt(format!("waiting on {}: {e}", self.describe())))?;
                Ok(if record.state == TaskState::Ok {
                    Ok(record.result.unwrap_or(Value::Null))
                } else {
                    Err(record
                        .eco
                        .map(|e| e.message)
                        .unwrap_or_else(|| "failed".into()))
                })
            }
            TaskHandle::Remote(t) => {
                // Shown in the graph of pending work while it lasts, and
                // followed by the robots a cycle would go through.
                let (robot, waiter) = ctx(lua, |c| (c.robot.clone(), c.task.clone()))?;
                let _edge = waiter.as_ref().map(|w| robot.waiting_remote(w, t.target()));
                let wait = Box::pin(t.wait(lua, limit));
                let Some(waiter) = waiter else {
                    return wait.await;
                };
                let cycle = Box::pin(t.find_cycle(lua, &waiter));
                tokio::select! {
                    ended = wait => ended,
                    found = cycle => Err(rt(format!(
                        "waiting on {}: a deadlock across robots, the wait would never end: {found}",
                        self.describe()
                    ))),
                }
            }
        }
    }

    async fn cancel(&self, lua: &Lua) -> mlua::Result<()> {
        match self {
            TaskHandle::Local(t) => {
                let robot = ctx(lua, |c| c.robot.clone())?;
                let svc = robot
                    .service(t.service_guid())
                    .ok_or_else(|| rt("task:cancel: its service no longer exists"))?;
                robot
                    .cancel_task(&svc, t.guid)
                    .await
                    .map_err(|e| rt(e.to_string()))
            }
            TaskHandle::Remote(t) => Box::pin(t.cancel(lua)).await,
        }
    }
}

/// `robot.wait_all(tasks[, timeout_s])`: waits for every task of the list
/// (local and remote mixed) within one timeout, and returns, in the same
/// order, `{ok = true, result = ...}` or `{ok = false, error = "..."}` for
/// each. A failed task, or one still running at the timeout, is a row, not
/// an error; bad arguments raise. The tasks run side by side whatever the
/// order of the waits, so waiting on each in turn until one deadline takes
/// as long as the slowest.
pub(crate) fn wait_all_function(lua: &Lua) -> mlua::Result<mlua::Function> {
    lua.create_async_function(
        |lua, (tasks, timeout): (mlua::Table, Option<f64>)| async move {
            let limit = wait_limit(timeout)
                .map_err(|_| rt("robot.wait_all: the timeout must be a positive number of seconds"))?;
            let deadline = limit.map(|l| tokio::time::Instant::now() + l);
            let mut handles = Vec::new();
            for (i, item) in tasks.sequence_values::<LuaValue>().enumerate() {
                let handle = match item? {
                    LuaValue::UserData(ud) => ud.borrow::<TaskHandle>().ok(),
                    _ => None,
                };
                handles.push(handle.ok_or_else(|| {
                    rt(format!(
                        "robot.wait_all: item {} of the list is not a task (give the tasks schedule_action returned)",
                        i + 1
                    ))
                })?);
            }
            let rows = lua.create_table()?;
            for (i, handle) in handles.iter().enumerate() {
                let left = deadline.map(|d| {
                    d.saturating_duration_since(tokio::time::Instant::now())
                        .max(Duration::from_millis(1))
                });
                let row = lua.create_table()?;
                match handle.wait(&lua, left).await {
                    Ok(Ok(v)) => {
                        row.set("ok", true)?;
                        row.set("result", lua.to_value(&v)?)?;
                    }
                    Ok(Err(msg)) => {
                        row.set("ok", false)?;
                        row.set("error", format!("task {} failed: {msg}", handle.describe()))?;
                    }
                    Err(mlua::Error::RuntimeError(message)) => {
                        row.set("ok", false)?;
                        row.set("error", message)?;
                    }
                    Err(other) => return Err(other),
                }
                rows.set(i + 1, row)?;
            }
            Ok(rows)
        },
    )
}

/// `task:wait`'s timeout: none, or a positive number of seconds.
fn wait_limit(timeout: Option<f64>) -> mlua::Result<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_finite() && t > 0.0 => Ok(Some(Duration::from_secs_f64(t.min(1e9)))),
        Some(_) => Err(rt(
            "task:wait: the timeout must be a positive number of seconds",
        )),
    }
}

impl UserData for TaskHandle {
    fn add_fields<F: UserDataFields<Self>>(f: &mut F) {
        f.add_field_method_get("guid", |_, this| {
            Ok(match this {
                TaskHandle::Local(t) => t.guid.to_string(),
                TaskHandle::Remote(t) => t.guid.to_string(),
            })
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_async_method(
            "state",
            |lua, this, ()| async move { this.state(&lua).await },
        );
        m.add_async_method("result", |lua, this, ()| async move {
            match this.result(&lua).await? {
                Some(v) => lua.to_value(&v),
                None => Ok(LuaValue::Nil),
            }
        });
        m.add_async_method("wait", |lua, this, timeout: Option<f64>| async move {
            let limit = wait_limit(timeout)?;
            match this.wait(&lua, limit).await? {
                Ok(v) => lua.to_value(&v),
                Err(msg) => Err(rt(format!("task {} failed: {msg}", this.describe()))),
            }
        });
        m.add_async_method(
            "cancel",
            |lua, this, ()| async move { this.cancel(&lua).await },
        );
        m.add_meta_method("__tostring", |_, this, ()| {
            Ok(match this {
                TaskHandle::Local(t) => format!("task {}", t.guid),
                TaskHandle::Remote(t) => format!("task {} on robot {}", t.guid, t.robot),
            })
        });
    }
}
