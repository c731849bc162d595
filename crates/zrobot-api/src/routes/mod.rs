//! The routes, one module per branch of the URL tree, and the OpenAPI
//! document generated from their annotations (so it cannot drift from them).

pub mod blueprints;
pub mod chain;
pub mod events;
pub mod graph;
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
        .routes(routes!(events::events))
        .routes(routes!(graph::graph))
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
        .routes(routes!(services::clear_state_category))
        .routes(routes!(services::clear_state_tag))
        .routes(routes!(tasks::list, tasks::schedule))
        .routes(routes!(tasks::get, tasks::cancel))
        .routes(routes!(chain::chain))
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

/// The errors any operation may answer with, whatever its own annotations
/// say: a request the framework refuses before the handler runs (a query,
/// path or body that does not parse, a body too large, a content type a
/// browser sends cross-site, too many secrets), and credentials refused.
const COMMON_ERRORS: [(u16, &str, bool); 6] = [
    (
        400,
        "The request is malformed: its path, query or body names the problem",
        false,
    ),
    (401, "Credentials are missing or not valid", false),
    (
        403,
        "The credentials do not grant this, or the request's origin or host is refused",
        false,
    ),
    (413, "The body is larger than the robot accepts", true),
    (415, "The body's content type is not JSON", true),
    (
        431,
        "A credential header is too large or carries too many secrets",
        false,
    ),
];

/// Completes the document generated from the routes with [`COMMON_ERRORS`],
/// so that a client (or a fuzzer) reading it knows every status it can get.
pub fn document_common_errors(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    for item in doc.paths.paths.values_mut() {
        let operations = [
            (&mut item.get, false),
            (&mut item.delete, false),
            (&mut item.post, true),
            (&mut item.put, true),
            (&mut item.patch, true),
        ];
        for (operation, has_body) in operations {
            let Some(operation) = operation else { continue };
            for (status, description, needs_body) in COMMON_ERRORS {
                if needs_body && !has_body {
                    continue;
                }
                operation
                    .responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| {
                        ResponseBuilder::new()
                            .description(description)
                            .content(
                                "application/json",
                                ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name("Error")))
                                    .build(),
                            )
                            .build()
                            .into()
                    });
            }
        }
    }
}
