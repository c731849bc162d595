//! `/templates`: the templates the robot has loaded.

use axum::extract::State;
use axum::http::StatusCode;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Json;
use crate::wire::{self, Template, TemplateRepository};
use crate::AppState;

/// Every loaded template version (admin, user).
#[utoipa::path(get, path = "/templates", tag = "templates",
    security(("admin" = []), ("user" = [])),
    responses((status = 200, body = Vec<Template>), (status = 401, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Vec<Template>>, ApiError> {
    caller.require_user()?;
    let templates = state.robot.templates().list();
    Ok(axum::Json(
        templates.iter().map(|t| wire::template(t)).collect(),
    ))
}

fn not_supported(repo: &TemplateRepository) -> ApiError {
    ApiError::bad_request(format!(
        "adding or updating template repositories from git (`{}`) is not supported yet: \
         this robot serves the template repositories it was started with",
        repo.url
    ))
}

/// Clones a template repository (admin). Not supported yet: answers 400.
#[utoipa::path(post, path = "/templates", tag = "templates",
    security(("admin" = [])),
    request_body = TemplateRepository,
    responses((status = 201, body = Vec<Template>), (status = 400, body = wire::Error), (status = 401, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn add(
    caller: Caller,
    Json(repo): Json<TemplateRepository>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    Err(not_supported(&repo))
}

/// Checks out another ref of a template repository (admin). Not supported yet: answers 400.
#[utoipa::path(put, path = "/templates", tag = "templates",
    security(("admin" = [])),
    request_body = TemplateRepository,
    responses((status = 204), (status = 400, body = wire::Error), (status = 404, body = wire::Error), (status = 401, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn checkout(
    caller: Caller,
    Json(repo): Json<TemplateRepository>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    Err(not_supported(&repo))
}
