//! `/templates`: the templates the robot has loaded.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Json;
use crate::extract::Query;
use crate::repos::{RepoError, TemplateRepositories};
use crate::wire::{self, CheckoutReport, Template, TemplateRepository};
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

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CheckoutQuery {
    /// `true`: answer 200 with what happened to each service (an addition;
    /// without it, 204 as 0-robot answered).
    report: Option<bool>,
}

/// Checks out another revision of a template repository; services move to
/// the newest versions (admin). With `report=true`, answers what each
/// service did: moved, failed to move (and why), or already on the newest.
#[utoipa::path(put, path = "/templates", tag = "templates",
    security(("admin" = [])),
    params(CheckoutQuery),
    request_body = TemplateRepository,
    responses((status = 204, description = "Checked out (without `report`)"),
        (status = 200, body = CheckoutReport, description = "Checked out, with `report=true`"),
        (status = 400, body = wire::Error), (status = 404, body = wire::Error), (status = 401, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn checkout(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<CheckoutQuery>,
    Json(repo): Json<TemplateRepository>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let report = repos(&state)?
        .checkout(repo.url, repo.branch)
        .await
        .map_err(repo_error)?;
    Ok(if q.report.unwrap_or(false) {
        axum::Json(report).into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    })
}
