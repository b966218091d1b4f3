//! Why a routed command failed.

use std::time::Duration;

use fred::error::{Error as FredError, ErrorKind};

/// Why a routed command failed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The node answered with an error, or did not answer in time.
    #[error("{}", describe(.0))]
    Fred(FredError),
    /// The node serving the key is known to be down; nothing was sent.
    #[error("{what}")]
    Down {
        /// What is down.
        what: String,
        /// When the health probe looks again.
        retry_after: Duration,
    },
}

impl From<FredError> for RouteError {
    fn from(e: FredError) -> Self {
        Self::Fred(e)
    }
}

/// Whether Valkey refused the credentials (a wrong password or user, an expired IAM token).
pub fn is_auth_failure(e: &FredError) -> bool {
    *e.kind() == ErrorKind::Auth
        || e.details().starts_with("WRONGPASS")
        || e.details().starts_with("NOAUTH")
}

/// A fred error for logs, said plainly when it is an authentication failure: a wrong password
/// must not look like a generic connection error.
pub fn describe(e: &FredError) -> String {
    if is_auth_failure(e) {
        format!("valkey authentication failed: {e}")
    } else {
        e.to_string()
    }
}
