//! `/templates`: the templates the robot has loaded.

use axum::extract::State;
use axum::http::StatusCode;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Json;
use crate::repos::{RepoError, TemplateRepositories};
use crate::wire::{self, Template, TemplateRepository};
use crate::AppState;

use std::sync::Arc;

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

fn repos(state: &AppState) -> Result<Arc<dyn TemplateRepositories>, ApiError> {
    state.config.repos.0.clone().ok_or_else(|| {
        ApiError::bad_request("this robot does not manage template repositories from git")
    })
}

fn repo_error(e: RepoError) -> ApiError {
    match e {
        RepoError::Invalid(m) => ApiError::bad_request(m),
        RepoError::NotFound(m) => ApiError::not_found(m),
    }
}

/// Clones a template repository and loads its templates (admin).
#[utoipa::path(post, path = "/templates", tag = "templates",
    security(("admin" = [])),
    request_body = TemplateRepository,
    responses((status = 201, body = Vec<Template>), (status = 400, body = wire::Error), (status = 401, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    Json(repo): Json<TemplateRepository>,
) -> Result<(StatusCode, axum::Json<Vec<Template>>), ApiError> {
    caller.require_admin()?;
    let templates = repos(&state)?
        .add(repo.url, repo.branch)
        .await
        .map_err(repo_error)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(templates.iter().map(|t| wire::template(t)).collect()),
    ))
}

/// Checks out another revision of a template repository; services move to
/// the newest versions (admin).
#[utoipa::path(put, path = "/templates", tag = "templates",
    security(("admin" = [])),
    request_body = TemplateRepository,
    responses((status = 204), (status = 400, body = wire::Error), (status = 404, body = wire::Error), (status = 401, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn checkout(
    State(state): State<AppState>,
    caller: Caller,
    Json(repo): Json<TemplateRepository>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    repos(&state)?
        .checkout(repo.url, repo.branch)
        .await
        .map_err(repo_error)?;
    Ok(StatusCode::NO_CONTENT)
}
