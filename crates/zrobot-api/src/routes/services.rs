//! `/services/...`: services, their actions and their logs.

use axum::extract::{Path, State};
use axum::http::header::LOCATION;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use zrobot_core::robot::NewService;

use super::{service_for, Access};
use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::extract::{Json, Query};
use crate::wire::{
    self, Action, Logs, OnDeleteFailure, Service, ServiceCreate, ServiceCreated, ServiceDeleted,
    ServiceFilter,
};
use crate::AppState;

/// The services matching the filter that the caller may see: all for an
/// admin, else the public ones and those it holds a secret of.
#[utoipa::path(get, path = "/services", tag = "services",
    params(ServiceFilter),
    responses((status = 200, body = Vec<Service>), (status = 400, body = wire::Error), (status = 401, body = wire::Error)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(filter): Query<ServiceFilter>,
) -> axum::Json<Vec<Service>> {
    let filter = zrobot_core::ServiceFilter {
        name: filter.name,
        guid: None,
        template_uid: filter.template_uid,
        template_host: filter.template_host,
        template_account: filter.template_account,
        template_repo: filter.template_repo,
        template_name: filter.template_name,
        template_version: filter.template_version,
    };
    let services = state
        .robot
        .find_services(&filter)
        .iter()
        .filter(|s| caller.may_list(s))
        .map(|s| wire::service(s, caller.sees_data()))
        .collect();
    axum::Json(services)
}

/// Creates a service (admin, user). The answer holds the secret that grants
/// it: the robot keeps only its hash, so it is shown this once.
#[utoipa::path(post, path = "/services", tag = "services",
    security(("admin" = []), ("user" = [])),
    request_body = ServiceCreate,
    responses(
        (status = 201, body = ServiceCreated, headers(("Location" = String, description = "/services/{guid}"))),
        (status = 400, body = wire::Error, description = "Unknown template, invalid name or data"),
        (status = 409, body = wire::Error, description = "The name is taken"),
        (status = 401, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<ServiceCreate>,
) -> Result<Response, ApiError> {
    caller.require_user()?;
    let secret = auth::new_secret();
    let svc = state
        .robot
        .create_service(NewService {
            template: req.template,
            // 0-robot named an unnamed service after an id; so do we.
            name: if req.name.is_empty() {
                uuid::Uuid::new_v4().to_string()
            } else {
                req.name
            },
            data: req.data,
            public: req.public,
            secrets: vec![auth::hash_secret(&secret)],
        })
        .await?;
    let body = ServiceCreated {
        service: wire::service(&svc, caller.sees_data()),
        secret,
    };
    Ok((
        StatusCode::CREATED,
        [(LOCATION, format!("/services/{}", svc.guid))],
        axum::Json(body),
    )
        .into_response())
}

/// One service (admin or its secret; anyone if it is public); its data in
/// god mode only.
#[utoipa::path(get, path = "/services/{guid}", tag = "services",
    security(("admin" = []), ("secret" = [])),
    params(("guid" = String, Path, description = "The service's guid (or its name)")),
    responses((status = 200, body = Service), (status = 404, body = wire::Error), (status = 401, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(guid): Path<String>,
) -> Result<axum::Json<Service>, ApiError> {
    let svc = service_for(&state, &caller, &guid, Access::Use)?;
    Ok(axum::Json(wire::service(&svc, caller.sees_data())))
}

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// `true`: answer 200 with the `on_delete` actions that failed (an
    /// addition; without it, 204 as 0-robot answered).
    report: Option<bool>,
}

/// Deletes a service after its `on_delete` actions (admin or its secret).
/// The service is gone even if one of them failed; with `report=true`, the
/// answer says which, and why.
#[utoipa::path(delete, path = "/services/{guid}", tag = "services",
    security(("admin" = []), ("secret" = [])),
    params(("guid" = String, Path, description = "The service's guid (or its name)"), DeleteQuery),
    responses((status = 204, description = "Deleted (without `report`)"),
        (status = 200, body = ServiceDeleted, description = "Deleted, with `report=true`"),
        (status = 404, body = wire::Error), (status = 409, body = wire::Error, description = "Already being deleted"), (status = 401, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(guid): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> Result<Response, ApiError> {
    let svc = service_for(&state, &caller, &guid, Access::Manage)?;
    let report = state.robot.delete_service(svc.guid).await?;
    if !q.report.unwrap_or(false) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let on_delete_failed = report
        .on_delete_failed
        .into_iter()
        .map(|(action, message)| OnDeleteFailure { action, message })
        .collect();
    Ok(axum::Json(ServiceDeleted { on_delete_failed }).into_response())
}

/// The actions of a service's template, with the JSON Schema of their
/// arguments where the template gives one.
#[utoipa::path(get, path = "/services/{guid}/actions", tag = "services",
    security(("admin" = []), ("secret" = [])),
    params(("guid" = String, Path, description = "The service's guid (or its name)")),
    responses((status = 200, body = Vec<Action>), (status = 404, body = wire::Error), (status = 401, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn actions(
    State(state): State<AppState>,
    caller: Caller,
    Path(guid): Path<String>,
) -> Result<axum::Json<Vec<Action>>, ApiError> {
    let svc = service_for(&state, &caller, &guid, Access::Use)?;
    let template = svc.template();
    let actions = template
        .actions()
        .iter()
        .map(|name| {
            Action::new(
                name.clone(),
                template.policy(name).args.as_ref().map(|s| s.raw().clone()),
            )
        })
        .collect();
    Ok(axum::Json(actions))
}

/// The service's own log, oldest line first.
#[utoipa::path(get, path = "/services/{guid}/logs", tag = "services",
    security(("admin" = []), ("secret" = [])),
    params(("guid" = String, Path, description = "The service's guid (or its name)")),
    responses((status = 200, body = Logs), (status = 404, body = wire::Error), (status = 401, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn logs(
    State(state): State<AppState>,
    caller: Caller,
    Path(guid): Path<String>,
) -> Result<axum::Json<Logs>, ApiError> {
    let svc = service_for(&state, &caller, &guid, Access::Manage)?;
    Ok(axum::Json(wire::logs(&svc.log_lines())))
}

/// Removes a whole category from a service's state table (admin or its
/// secret), stored at once. An addition to 0-robot's API.
#[utoipa::path(delete, path = "/services/{guid}/state/{category}", tag = "services",
    security(("admin" = []), ("secret" = [])),
    params(("guid" = String, Path, description = "The service's guid (or its name)"),
        ("category" = String, Path, description = "The category to remove")),
    responses((status = 204), (status = 404, body = wire::Error, description = "No such service, or no such category"), (status = 401, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn clear_state_category(
    State(state): State<AppState>,
    caller: Caller,
    Path((guid, category)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    clear_state(&state, &caller, &guid, &category, None).await
}

/// Removes one tag from a service's state table (admin or its secret),
/// stored at once. An addition to 0-robot's API.
#[utoipa::path(delete, path = "/services/{guid}/state/{category}/{tag}", tag = "services",
    security(("admin" = []), ("secret" = [])),
    params(("guid" = String, Path, description = "The service's guid (or its name)"),
        ("category" = String, Path, description = "The tag's category"),
        ("tag" = String, Path, description = "The tag to remove")),
    responses((status = 204), (status = 404, body = wire::Error, description = "No such service, or no such tag"), (status = 401, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn clear_state_tag(
    State(state): State<AppState>,
    caller: Caller,
    Path((guid, category, tag)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    clear_state(&state, &caller, &guid, &category, Some(&tag)).await
}

async fn clear_state(
    state: &AppState,
    caller: &Caller,
    guid: &str,
    category: &str,
    tag: Option<&str>,
) -> Result<StatusCode, ApiError> {
    let svc = service_for(state, caller, guid, Access::Manage)?;
    if state.robot.clear_state(&svc, category, tag).await? {
        return Ok(StatusCode::NO_CONTENT);
    }
    let what = match tag {
        Some(t) => format!("{category}/{t}"),
        None => category.to_owned(),
    };
    Err(ApiError::not_found(format!(
        "service `{}` has no state `{what}`; GET /services/{} shows its state table",
        svc.name, svc.guid
    )))
}
