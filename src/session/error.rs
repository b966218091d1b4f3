//! The one error type of the session domain; `service` maps it to `tonic::Status` once.

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The id is malformed; no Valkey call was made.
    #[error("invalid session id: {0}")]
    InvalidId(&'static str),
    /// A request field is invalid; the message names the field and the rule.
    #[error("{0}")]
    InvalidArgument(String),
    /// The session does not exist, has expired or was deleted.
    #[error("session not found: it does not exist, has expired or was deleted")]
    NotFound,
    /// `expected_version` did not match the stored version.
    #[error(
        "version conflict: expected version {expected}, current version is {current}; re-read the session and retry"
    )]
    VersionConflict {
        /// The version the caller expected.
        expected: u64,
        /// The version stored now.
        current: u64,
    },
    /// A caller-proposed id is already a session's id; nothing was written.
    #[error("proposed_id is already taken: propose another random id")]
    AlreadyExists,
    /// The session would exceed a size or count limit; the message names the limit.
    #[error("{0}")]
    LimitExceeded(String),
    /// Valkey could not be reached or did not answer in time.
    #[error("valkey unavailable: {0}; retry with backoff")]
    Unavailable(String),
    /// Anything else: a bug or an unexpected reply.
    #[error("internal error: {0}")]
    Internal(String),
}
