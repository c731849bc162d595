//! `/robot/...`: what the robot is, the host it runs on, and its webhooks.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Json;
use crate::wire::{
    self, ConfigRepository, DataRepository, Repositories, RobotInfo, RobotMetrics, Webhook,
    WebhookCreate,
};
use crate::AppState;

/// The robot's repositories and the health of its storage; repository URLs
/// without their credentials.
#[utoipa::path(get, path = "/robot/info", tag = "robot",
    responses((status = 200, body = RobotInfo)))]
pub async fn info(State(state): State<AppState>) -> axum::Json<RobotInfo> {
    let (config_url, (data_url, last_pushed)) = match &state.config.repos.0 {
        Some(r) => (r.config_url(), r.data_repo()),
        None => (String::new(), (String::new(), None)),
    };
    axum::Json(RobotInfo {
        repositories: Repositories {
            config: ConfigRepository {
                url: crate::url_without_credentials(&config_url),
            },
            data: DataRepository {
                url: crate::url_without_credentials(&data_url),
                last_pushed,
            },
        },
        storage_healthy: state.robot.store().healthy(),
    })
}

/// CPU and memory of the host, and how many services the robot has.
#[utoipa::path(get, path = "/robot/metrics", tag = "robot",
    responses((status = 200, body = RobotMetrics)))]
pub async fn host_metrics(State(state): State<AppState>) -> axum::Json<RobotMetrics> {
    axum::Json(RobotMetrics {
        cpu: state.host.cpu(),
        memory: state.host.memory(),
        nr_services: state.robot.service_count() as u64,
    })
}

/// The webhooks told about failed tasks (admin).
#[utoipa::path(get, path = "/robot/webhooks", tag = "robot",
    security(("admin" = [])),
    responses((status = 200, body = Vec<Webhook>), (status = 401, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Vec<Webhook>>, ApiError> {
    caller.require_admin()?;
    Ok(axum::Json(state.webhooks.list()))
}

/// Adds a webhook (admin). A URL already known answers its webhook, with 200.
#[utoipa::path(post, path = "/robot/webhooks", tag = "robot",
    security(("admin" = [])),
    request_body = WebhookCreate,
    responses(
        (status = 201, body = Webhook, description = "Added"),
        (status = 200, body = Webhook, description = "The URL was already a webhook"),
        (status = 400, body = wire::Error, description = "Bad URL or kind"),
        (status = 401, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn add_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<WebhookCreate>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let (hook, added) = state.webhooks.add(req).await?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(hook)).into_response())
}

/// Removes a webhook (admin).
#[utoipa::path(delete, path = "/robot/webhooks/{id}", tag = "robot",
    security(("admin" = [])),
    params(("id" = String, Path, description = "The webhook's id")),
    responses((status = 204), (status = 404, body = wire::Error), (status = 401, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    state.webhooks.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
