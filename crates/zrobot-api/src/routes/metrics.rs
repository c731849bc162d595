//! `/metrics`: the robot's figures in Prometheus text format.

use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use crate::AppState;

/// Tasks waiting per template, task durations and failures per template and
/// action, services, HTTP requests by route and status, and the host's CPU,
/// memory, network bytes and the data directory's filesystem. `name[]`
/// (repeated) keeps only the metrics named, as 0-robot's did.
#[utoipa::path(get, path = "/metrics", tag = "robot",
    params(("name[]" = Option<Vec<String>>, Query, description = "Only these metrics")),
    responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn prometheus(
    State(state): State<AppState>,
    Query(query): Query<Vec<(String, String)>>,
) -> impl IntoResponse {
    let names: Vec<String> = query
        .into_iter()
        .filter(|(k, _)| k == "name[]" || k == "name")
        .map(|(_, v)| v)
        .collect();
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(&state.robot, &names),
    )
}
