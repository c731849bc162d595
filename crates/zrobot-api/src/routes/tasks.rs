//! `/services/{guid}/task_list/...`: a service's task list.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::{service_for, Access};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Json, Query};
use crate::wire::{self, Task, TaskCreate};
use crate::AppState;
use zrobot_client::{CALLER_TASK_HEADER, IDEMPOTENCY_HEADER};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `true` to include finished tasks.
    all: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GetQuery {
    /// Seconds to wait for the task to be done before answering (an
    /// addition to 0-robot's API: a long poll).
    wait: Option<f64>,
}

/// 0-robot's Python clients sent `True`; others send `true` or `1`.
fn parse_bool(key: &str, v: &str) -> Result<bool, ApiError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "query `{key}`: `{v}` is not a boolean; use true or false"
        ))),
    }
}

fn task_guid(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s)
        .map_err(|_| ApiError::not_found(format!("no task `{s}`: task guids are UUIDs")))
}

/// The running task and the waiting ones in the order they will run; with
/// `all`, the kept finished ones before them.
#[utoipa::path(get, path = "/services/{guid}/task_list", tag = "tasks",
    security(("admin" = []), ("secret" = [])),
    params(("guid" = String, Path, description = "The service's guid (or its name)"), ListQuery),
    responses((status = 200, body = Vec<Task>), (status = 404, body = wire::Error), (status = 401, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(guid): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Vec<Task>>, ApiError> {
    let svc = service_for(&state, &caller, &guid, Access::Use)?;
    let all = q
        .all
        .as_deref()
        .map(|v| parse_bool("all", v))
        .transpose()?
        .unwrap_or(false);
    let tasks = state.robot.tasks(&svc, all).await?;
    Ok(axum::Json(tasks.iter().map(wire::task).collect()))
}

/// Schedules an action; answers once the task is durable.
#[utoipa::path(post, path = "/services/{guid}/task_list", tag = "tasks",
    security(("admin" = []), ("secret" = [])),
    params(("guid" = String, Path, description = "The service's guid (or its name)")),
    request_body = TaskCreate,
    responses(
        (status = 201, body = Task, headers(("Location" = String, description = "/services/{guid}/task_list/{task_guid}"))),
        (status = 400, body = wire::Error, description = "Unknown action or bad arguments"),
        (status = 404, body = wire::Error), (status = 409, body = wire::Error, description = "The service is being deleted"),
        (status = 401, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(guid): Path<String>,
    headers: HeaderMap,
    Json(req): Json<TaskCreate>,
) -> Result<Response, ApiError> {
    let svc = service_for(&state, &caller, &guid, Access::Use)?;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 256)
            .map(str::to_owned)
    };
    // Additions to 0-robot's API: who asked (a task, maybe on another robot),
    // and a key that makes a retried request return the first one's task.
    let trace = match (header(CALLER_TASK_HEADER), header("traceparent")) {
        (None, None) => None,
        (caller_task, traceparent) => Some(zrobot_core::TaskTrace {
            caller_task,
            traceparent,
        }),
    };
    if let Some(key) = headers.get(IDEMPOTENCY_HEADER) {
        if key.len() > 256 || key.to_str().is_err() {
            return Err(ApiError::bad_request(format!(
                "the {IDEMPOTENCY_HEADER} header must be visible ASCII of at most 256 bytes \
                 (a UUID is a good key); this one has {} bytes",
                key.len()
            )));
        }
    }
    let record = match header(IDEMPOTENCY_HEADER) {
        Some(key) => {
            state
                .robot
                .schedule_idempotent(&svc, &req.action_name, req.args, &key, trace)
                .await?
        }
        None => state
            .robot
            .schedule_traced(
                &svc,
                &req.action_name,
                req.args,
                zrobot_core::Priority::Normal,
                trace,
            )
            .await?
            .record(),
    };
    let location = format!("/services/{}/task_list/{}", svc.guid, record.guid);
    Ok((
        StatusCode::CREATED,
        [(LOCATION, location)],
        axum::Json(wire::task(&record)),
    )
        .into_response())
}

/// One task. With `?wait=SECONDS`, answers as soon as the task is done, or
/// when the wait ends (the task is then still waiting or running).
#[utoipa::path(get, path = "/services/{guid}/task_list/{task_guid}", tag = "tasks",
    security(("admin" = []), ("secret" = [])),
    params(
        ("guid" = String, Path, description = "The service's guid (or its name)"),
        ("task_guid" = String, Path, description = "The task's guid"),
        GetQuery),
    responses((status = 200, body = Task), (status = 400, body = wire::Error), (status = 404, body = wire::Error), (status = 401, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((guid, task_guid_s)): Path<(String, String)>,
    Query(q): Query<GetQuery>,
) -> Result<axum::Json<Task>, ApiError> {
    let svc = service_for(&state, &caller, &guid, Access::Use)?;
    let tg = task_guid(&task_guid_s)?;
    let wait = match q.wait {
        None => Duration::ZERO,
        // Capped before it becomes a Duration: `from_secs_f64` panics past
        // u64::MAX seconds (`?wait=1e20`).
        Some(w) if w.is_finite() && w >= 0.0 => {
            if w >= state.config.max_wait.as_secs_f64() {
                state.config.max_wait
            } else if w == 0.0 {
                // -0.0 too.
                Duration::ZERO
            } else {
                Duration::from_secs_f64(w)
            }
        }
        Some(w) => {
            return Err(ApiError::bad_request(format!(
                "query `wait`: `{w}` is not a number of seconds; give one from 0 to {}",
                state.config.max_wait.as_secs()
            )))
        }
    };
    if let Some(task) = state.robot.live_task(&svc, tg) {
        if !wait.is_zero() {
            let mut stopping = state.stopping.clone();
            tokio::select! {
                _ = tokio::time::timeout(wait, task.done()) => {}
                // A long poll must not hold the robot's shutdown.
                _ = stopping.wait_for(|s| *s) => {}
            }
        }
        return Ok(axum::Json(wire::task(&task.record())));
    }
    let record = state.robot.task(&svc, tg).await?;
    Ok(axum::Json(wire::task(&record)))
}

/// Cancels a waiting task: it ends in `error` with a `task.cancelled` eco.
#[utoipa::path(delete, path = "/services/{guid}/task_list/{task_guid}", tag = "tasks",
    security(("admin" = []), ("secret" = [])),
    params(
        ("guid" = String, Path, description = "The service's guid (or its name)"),
        ("task_guid" = String, Path, description = "The task's guid")),
    responses((status = 204), (status = 404, body = wire::Error), (status = 409, body = wire::Error, description = "Already running or done"), (status = 401, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path((guid, task_guid_s)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let svc = service_for(&state, &caller, &guid, Access::Manage)?;
    let tg = task_guid(&task_guid_s)?;
    state.robot.cancel_task(&svc, tg).await?;
    Ok(StatusCode::NO_CONTENT)
}
