//! HTTP errors of the gateway: one type, one JSON shape, one mapping from gRPC statuses.

use axum::{
    Json,
    extract::rejection::JsonRejection,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};

/// Everything a handler can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON, or not the expected shape.
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than the gateway accepts.
    #[error("request body too large")]
    PayloadTooLarge,
    /// The body is not declared as `application/json`.
    #[error("expected a body with Content-Type: application/json")]
    UnsupportedMediaType,
    /// Well-formed JSON that breaks a rule (length, count).
    #[error("{0}")]
    Unprocessable(String),
    /// The browser is not signed in (the session has no principal).
    #[error("{0}")]
    Unauthorized(String),
    /// No such todo in this session, or no such session of the signed-in user.
    #[error("{0}")]
    NotFound(String),
    /// A state-changing request from a foreign origin (CSRF).
    #[error("{0}")]
    Forbidden(String),
    /// Concurrent edits of one session kept colliding, or the user is at the session limit.
    #[error("{0}")]
    Conflict(String),
    /// The session service is unreachable, overloaded or too slow.
    #[error("session service unavailable: {0}")]
    Unavailable(String),
    /// The session store is full (Valkey refused the write for memory): the change was not
    /// saved and the session is intact.
    #[error(
        "the session store is full: your change was not saved, your session is intact; try again later"
    )]
    StorageFull,
    /// The session service answered something the gateway cannot use.
    #[error("session service error: {0}")]
    Upstream(String),
}

/// The JSON body of every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable kind, e.g. `invalid_request`.
    #[schema(example = "invalid_request")]
    pub error: &'static str,
    /// What went wrong and what to do about it.
    pub message: String,
}

/// The error answers of every operation that reads or changes the todo list (OpenAPI only).
#[derive(IntoResponses)]
#[allow(
    dead_code,
    reason = "never built: it only describes responses to utoipa"
)]
pub enum SessionErrors {
    /// See [`ApiError::Conflict`].
    #[response(
        status = 409,
        description = "Concurrent edits of the session kept colliding; retry"
    )]
    Conflict(ErrorBody),
    /// See [`ApiError::Unavailable`].
    #[response(
        status = 503,
        description = "The session service is unavailable, or the session store is full; retry after the Retry-After delay"
    )]
    Unavailable(ErrorBody),
}

/// The answer of a state-changing operation called from a foreign origin (OpenAPI only).
#[derive(IntoResponses)]
#[allow(
    dead_code,
    reason = "never built: it only describes responses to utoipa"
)]
pub enum CsrfErrors {
    /// See [`ApiError::Forbidden`].
    #[response(
        status = 403,
        description = "Sent from a foreign Origin (CSRF protection)"
    )]
    Forbidden(ErrorBody),
}

/// The error answers of every operation with a JSON body (OpenAPI only).
#[derive(IntoResponses)]
#[allow(
    dead_code,
    reason = "never built: it only describes responses to utoipa"
)]
pub enum BodyErrors {
    /// See [`ApiError::BadRequest`].
    #[response(status = 400, description = "Malformed JSON")]
    BadRequest(ErrorBody),
    /// See [`ApiError::PayloadTooLarge`].
    #[response(status = 413, description = "Body over 64 KiB")]
    PayloadTooLarge(ErrorBody),
    /// See [`ApiError::UnsupportedMediaType`].
    #[response(status = 415, description = "Body is not application/json")]
    UnsupportedMediaType(ErrorBody),
    /// See [`ApiError::Unprocessable`].
    #[response(
        status = 422,
        description = "Missing or unknown field, wrong type, bad length, or too many todos"
    )]
    Unprocessable(ErrorBody),
}

impl ApiError {
    fn status_and_kind(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::StorageFull => (StatusCode::SERVICE_UNAVAILABLE, "storage_full"),
            Self::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream_error"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_kind();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "request failed");
        }
        let message = match self {
            // The service's own words (node addresses, Valkey errors) go to the log, not to the
            // browser.
            Self::Unavailable(_) => {
                "the session service is unavailable; try again in a moment".to_owned()
            }
            Self::Upstream(_) => "the session service answered unexpectedly".to_owned(),
            other => other.to_string(),
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: kind,
                message,
            }),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::PayloadTooLarge;
        }
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType,
            JsonRejection::JsonDataError(e) => Self::Unprocessable(e.body_text()),
            other => Self::BadRequest(other.body_text()),
        }
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        use tonic::Code;
        use tonic_types::StatusExt;
        let reason = status.get_details_error_info().map(|info| info.reason);
        if reason.as_deref() == Some(session_proto::ErrorReason::ValkeyOutOfMemory.reason()) {
            return Self::StorageFull;
        }
        match status.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Cancelled => {
                Self::Unavailable(format!("{:?}: {}", status.code(), status.message()))
            }
            code => Self::Upstream(format!("{code:?}: {}", status.message())),
        }
    }
}
