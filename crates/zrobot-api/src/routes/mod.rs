//! The routes, one module per branch of the URL tree, and the OpenAPI
//! document generated from their annotations (so it cannot drift from them).

pub mod blueprints;
pub mod metrics;
pub mod robot;
pub mod services;
pub mod tasks;
pub mod templates;

use std::sync::Arc;

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use zrobot_core::Service;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "zrobot",
        description = "REST API of a zrobot, compatible with 0-robot's. Credentials go in the \
                       `ZrobotAdmin`, `ZrobotUser` and `ZrobotSecret` headers as `Bearer <token>`."
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "robot", description = "The robot itself"),
        (name = "templates", description = "Loaded templates"),
        (name = "services", description = "Services, their actions and logs"),
        (name = "tasks", description = "Task lists"),
        (name = "blueprints", description = "Blueprints")
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, header, what) in [
            (
                "admin",
                "ZrobotAdmin",
                "`Bearer <jwt>` with the scope `user:memberof:<admin organization>`",
            ),
            (
                "user",
                "ZrobotUser",
                "`Bearer <jwt>` with the scope `user:memberof:<user organization>`",
            ),
            (
                "secret",
                "ZrobotSecret",
                "`Bearer <secret> [<secret>...]`: secrets returned at service creation",
            ),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(header, what))),
            );
        }
    }
}

/// Every route with its OpenAPI description.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(robot::info))
        .routes(routes!(robot::host_metrics))
        .routes(routes!(robot::list_webhooks, robot::add_webhook))
        .routes(routes!(robot::delete_webhook))
        .routes(routes!(metrics::prometheus))
        .routes(routes!(
            templates::list,
            templates::add,
            templates::checkout
        ))
        .routes(routes!(blueprints::execute))
        .routes(routes!(services::list, services::create))
        .routes(routes!(services::get, services::delete))
        .routes(routes!(services::actions))
        .routes(routes!(services::logs))
        .routes(routes!(tasks::list, tasks::schedule))
        .routes(routes!(tasks::get, tasks::cancel))
}

/// What a request does with a service.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Access {
    /// Read it (without data), its actions and tasks, or schedule an action:
    /// open to anyone on a public service.
    Use,
    /// Delete it, cancel its tasks, read its log: its secret or an admin.
    Manage,
}

/// The service a path names (by guid, or by name), if the caller may reach
/// it that way.
///
/// A caller who may not reach services in general (neither god nor admin)
/// gets the same refusal whether or not the service exists, so that names
/// cannot be probed.
pub(crate) fn service_for(
    state: &AppState,
    caller: &Caller,
    id: &str,
    access: Access,
) -> Result<Arc<Service>, ApiError> {
    match state.robot.lookup(id) {
        Some(svc) => {
            match access {
                Access::Use => caller.require_service_use(&svc)?,
                Access::Manage => caller.require_service(&svc)?,
            }
            Ok(svc)
        }
        None if caller.god || caller.admin => Err(ApiError::service_not_found(id)),
        None => Err(caller.denied(
            &format!("an admin or the secret of service `{id}`"),
            "`ZrobotSecret: Bearer <secret>` with the secret its creation returned",
        )),
    }
}
