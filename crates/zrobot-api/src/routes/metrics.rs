//! `/metrics`: the robot's figures in Prometheus text format.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use crate::AppState;

/// Tasks waiting per service, task durations and failures per template and
/// action, services, and HTTP requests by route and status.
#[utoipa::path(get, path = "/metrics", tag = "robot",
    responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn prometheus(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(&state.robot),
    )
}
