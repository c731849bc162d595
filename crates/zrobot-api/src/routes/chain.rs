//! `GET /services/{guid}/task_list/{task_guid}/chain`: what blocks a task,
//! followed across robots, so that a wait that would close a cycle through
//! other robots is found (edge chasing: each robot walks its own part and
//! asks the next one, with the tasks already on the chain).

use std::time::Duration;

use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;
use zrobot_client::{Client, Credentials};

use super::{service_for, Access};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Query;
use crate::wire;
use crate::AppState;

/// The most tasks a chain may hold: past it, the robot does not ask further.
const LONGEST: usize = 64;
/// How long the next robot may take to answer.
const HOP_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChainQuery {
    /// Task guids already on the chain, comma-separated: reaching one is a cycle.
    visited: Option<String>,
}

/// What blocks the task: the task itself, then each task that blocks the
/// one before it, here and on the robots the chain leads to; `cycle` when it
/// comes back to a task of `visited`. A task done (or not found among the
/// live ones) is blocked by nothing.
#[utoipa::path(get, path = "/services/{guid}/task_list/{task_guid}/chain", tag = "tasks",
    security(("admin" = []), ("secret" = [])),
    params(
        ("guid" = String, Path, description = "The service's guid (or its name)"),
        ("task_guid" = String, Path, description = "The task's guid"),
        ChainQuery),
    responses((status = 200, body = wire::WaitChain), (status = 400, body = wire::Error), (status = 404, body = wire::Error), (status = 401, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn chain(
    State(state): State<AppState>,
    caller: Caller,
    Path((guid, task_guid)): Path<(String, String)>,
    Query(q): Query<ChainQuery>,
) -> Result<axum::Json<wire::WaitChain>, ApiError> {
    let svc = service_for(&state, &caller, &guid, Access::Use)?;
    let task = Uuid::parse_str(&task_guid)
        .map_err(|_| ApiError::not_found(format!("no task `{task_guid}`: task guids are UUIDs")))?;
    let mut visited = Vec::new();
    for v in q
        .visited
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|v| !v.is_empty())
    {
        visited.push(Uuid::parse_str(v.trim()).map_err(|_| {
            ApiError::bad_request(format!("query `visited`: `{v}` is not a task guid"))
        })?);
    }
    if visited.len() > LONGEST {
        return Err(ApiError::bad_request(format!(
            "query `visited`: at most {LONGEST} tasks"
        )));
    }
    let mut out = wire::WaitChain {
        links: Vec::new(),
        cycle: false,
    };
    let Some(found) = state.robot.blocking_chain(&svc, task) else {
        return Ok(axum::Json(out));
    };
    for l in found.links {
        let seen = visited.contains(&l.guid);
        out.links.push(wire::WaitLink {
            guid: l.guid,
            robot: None,
            describe: l.describe,
        });
        if seen {
            out.cycle = true;
            return Ok(axum::Json(out));
        }
    }
    let Some(next) = found.remote else {
        return Ok(axum::Json(out));
    };
    let Some(cfg) = state.robot.remote_robot(&next.robot) else {
        return Ok(axum::Json(out));
    };
    if visited.len() + out.links.len() >= LONGEST {
        return Ok(axum::Json(out));
    }
    visited.extend(out.links.iter().map(|l| l.guid));
    let credentials = Credentials {
        admin_jwt: cfg.token.clone(),
        user_jwt: cfg.token.clone(),
        secrets: cfg
            .secret_of(next.service_guid)
            .map(str::to_owned)
            .into_iter()
            .collect(),
        god_token: None,
    };
    // The next robot unreachable, or refusing: the chain ends here, unknown.
    let Ok(client) = Client::new(&cfg.url, credentials) else {
        return Ok(axum::Json(out));
    };
    let asked = client
        .with_timeout(HOP_TIMEOUT)
        .wait_chain(next.service_guid, next.guid, &visited)
        .await;
    match asked {
        Ok(rest) => {
            for l in rest.links {
                let robot = match l.robot {
                    Some(further) => format!("{}/{further}", next.robot),
                    None => next.robot.clone(),
                };
                out.links.push(wire::WaitLink {
                    robot: Some(robot),
                    ..l
                });
            }
            out.cycle = rest.cycle;
        }
        Err(e) => tracing::debug!(robot = %next.robot, error = %e, "following a chain of waits"),
    }
    Ok(axum::Json(out))
}
