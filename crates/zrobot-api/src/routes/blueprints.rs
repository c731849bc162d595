//! `/blueprints`: services to create and actions to schedule, in one request.

use axum::extract::State;

use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::extract::Json;
use crate::wire::{self, Blueprint, BlueprintResult, ServiceCreated};
use crate::AppState;
use zrobot_core::robot::BlueprintCaller;

/// Executes a blueprint (admin, user): all of it, or nothing. The error names
/// the block at fault. Each created service comes with its secret.
#[utoipa::path(post, path = "/blueprints", tag = "blueprints",
    security(("admin" = []), ("user" = [])),
    request_body = Blueprint,
    responses((status = 200, body = BlueprintResult), (status = 400, body = wire::Error), (status = 401, body = wire::Error), (status = 403, body = wire::Error)))]
pub async fn execute(
    State(state): State<AppState>,
    caller: Caller,
    Json(blueprint): Json<Blueprint>,
) -> Result<axum::Json<BlueprintResult>, ApiError> {
    caller.require_user()?;
    let bp = zrobot_core::blueprint::Blueprint::from_value(&blueprint.content)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let may_manage = |svc: &zrobot_core::Service| caller.require_service(svc).is_ok();
    let new_secret = || {
        let secret = auth::new_secret();
        let hash = auth::hash_secret(&secret);
        (secret, hash)
    };
    let outcome = state
        .robot
        .execute_blueprint(
            &bp,
            &BlueprintCaller {
                may_manage: &may_manage,
                new_secret: &new_secret,
            },
        )
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(axum::Json(BlueprintResult {
        services: outcome
            .created
            .iter()
            .map(|(svc, secret)| ServiceCreated {
                service: wire::service(svc, caller.sees_data()),
                secret: secret.clone(),
            })
            .collect(),
        tasks: outcome
            .tasks
            .iter()
            .map(|t| wire::task(&t.record()))
            .collect(),
    }))
}
