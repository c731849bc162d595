//! `/blueprints`: services to create and actions to schedule, in one request.

use axum::http::StatusCode;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Json;
use crate::wire::{self, Blueprint, BlueprintResult};

/// Executes a blueprint (admin, user). Not supported yet: answers 400.
#[utoipa::path(post, path = "/blueprints", tag = "blueprints",
    security(("admin" = []), ("user" = [])),
    request_body = Blueprint,
    responses((status = 200, body = BlueprintResult), (status = 400, body = wire::Error), (status = 401, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn execute(
    caller: Caller,
    Json(_blueprint): Json<Blueprint>,
) -> Result<StatusCode, ApiError> {
    caller.require_user()?;
    Err(ApiError::bad_request(
        "blueprints are not supported yet by this robot; create services with POST /services \
         and schedule actions with POST /services/{guid}/task_list",
    ))
}
