//! Domain errors as gRPC statuses: mapped here, once.

use session_core::Error;
use session_proto::{self as proto, ErrorReason};
use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt};

/// The one mapping of domain errors to gRPC statuses, with ErrorInfo and RetryInfo details where a
/// caller needs more than the code.
pub(super) fn status(e: Error) -> Status {
    let message = e.to_string();
    match e {
        Error::InvalidId(_) | Error::InvalidArgument(_) => Status::invalid_argument(message),
        Error::NotFound => Status::not_found(message),
        Error::AlreadyExists => Status::already_exists(message),
        Error::VersionConflict { current, .. } => Status::with_error_details(
            tonic::Code::Aborted,
            message,
            ErrorDetails::with_error_info(
                ErrorReason::VersionConflict.reason(),
                proto::ERROR_DOMAIN,
                [("current_version".to_string(), current.to_string())],
            ),
        ),
        Error::LimitExceeded(_) => Status::resource_exhausted(message),
        Error::OutOfMemory(_) => Status::with_error_details(
            tonic::Code::ResourceExhausted,
            message,
            ErrorDetails::with_error_info(
                ErrorReason::ValkeyOutOfMemory.reason(),
                proto::ERROR_DOMAIN,
                [],
            ),
        ),
        Error::Unavailable(_) => Status::unavailable(message),
        Error::SecretsDisagree(_) => Status::with_error_details(
            tonic::Code::Unavailable,
            message,
            ErrorDetails::with_error_info(
                ErrorReason::DeploymentSecretDisagreement.reason(),
                proto::ERROR_DOMAIN,
                [],
            ),
        ),
        Error::NotReplicated { timeout, .. } => Status::with_error_details(
            tonic::Code::Unavailable,
            message,
            ErrorDetails::with_error_info(
                ErrorReason::NotReplicated.reason(),
                proto::ERROR_DOMAIN,
                [
                    ("applied".to_string(), "true".to_string()),
                    ("timeout_ms".to_string(), timeout.as_millis().to_string()),
                ],
            ),
        ),
        Error::Unreachable { retry_after, .. } => Status::with_error_details(
            tonic::Code::Unavailable,
            message,
            ErrorDetails::with_retry_info(Some(retry_after)),
        ),
        Error::Internal(_) => {
            tracing::error!(error = %message, "internal error");
            Status::internal(message)
        }
    }
}
