//! The one error type of the session domain; `service` maps it to `tonic::Status` once.

use std::time::Duration;

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
    /// Valkey refused a write because it is at its memory limit (`maxmemory`, `noeviction`):
    /// nothing was written; reads keep working.
    #[error(
        "valkey is out of memory and refused the write; nothing was written and reads still \
         work. Operators: raise the cache's memory limit, or lower session sizes, idle timeouts \
         or sessions per principal (docs/capacity.md); {0}"
    )]
    OutOfMemory(String),
    /// Valkey could not be reached or did not answer in time.
    #[error("valkey unavailable: {0}; retry with backoff")]
    Unavailable(String),
    /// Valkey, or the shard holding the session, is known to be unreachable (the health probe
    /// found it down): the request failed at once instead of waiting for a timeout.
    #[error(
        "valkey unavailable: {what}; failing fast until the health probe reaches it again, retry after {} ms",
        retry_after.as_millis()
    )]
    Unreachable {
        /// What is unreachable.
        what: String,
        /// When the probe looks again.
        retry_after: Duration,
    },
    /// A write asked to be durable was applied on the primary, but no replica acknowledged it
    /// in time (or WAIT failed): it is kept unless that primary fails before replicating it.
    #[error(
        "the write was applied on the primary but no replica acknowledged it within {} ms ({detail}); \
         it is kept unless that primary fails before replicating it: re-read with \
         CONSISTENCY_STRONG before retrying",
        timeout.as_millis()
    )]
    NotReplicated {
        /// How long the write waited for a replica.
        timeout: Duration,
        /// What WAIT answered.
        detail: String,
    },
    /// This instance's deployment secrets disagree with the other instances': what needs them
    /// (principal tags, page tokens) is refused here rather than splitting a user's index.
    #[error(
        "this instance's deployment secret disagrees with the other instances' ({0}); \
         sessions of principals are refused here so that no user's sessions are split: retry \
         on another instance. Operators: docs/security.md, \"The deployment secret\""
    )]
    SecretsDisagree(String),
    /// Anything else: a bug or an unexpected reply.
    #[error("internal error: {0}")]
    Internal(String),
}
