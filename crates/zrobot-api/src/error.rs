//! The one error type of the API: every failure becomes `{code, message}`
//! with the matching HTTP status.
//!
//! 4xx messages name the field or value at fault and the fix; 5xx details go
//! to the log only, since they may say more about the robot than a caller
//! should learn.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use zrobot_core::CoreError;

/// An error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    /// A failure of the robot itself: logged in full, answered in general terms.
    pub fn internal(context: &str, detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(%detail, "{context}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{context}: internal error; the robot's log has the details"),
        )
    }

    pub fn service_not_found(guid: &str) -> ApiError {
        ApiError::not_found(format!(
            "no service `{guid}`; GET /services lists the services you may see"
        ))
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> ApiError {
        let status = match &e {
            CoreError::TemplateNotFound(_)
            | CoreError::AmbiguousTemplate { .. }
            | CoreError::InvalidData { .. }
            | CoreError::InvalidName(_)
            | CoreError::UnknownAction { .. }
            | CoreError::InvalidArgs { .. }
            | CoreError::HookFailed { .. } => StatusCode::BAD_REQUEST,
            CoreError::NameTaken(_)
            | CoreError::ServiceDeleting(_)
            | CoreError::TaskNotCancellable { .. }
            | CoreError::ServiceBusy(_)
            | CoreError::KeyReused { .. } => StatusCode::CONFLICT,
            CoreError::ServiceNotFound(_) | CoreError::TaskNotFound(_) => StatusCode::NOT_FOUND,
            CoreError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            CoreError::Storage(detail) => return ApiError::internal("storage failed", detail),
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = zrobot_client::wire::Error {
            code: self.status.as_u16(),
            message: self.message,
        };
        (self.status, axum::Json(body)).into_response()
    }
}
