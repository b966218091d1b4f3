//! One deadline per RPC. The gRPC layer opens a scope for each call ([`scope`]); every command,
//! redirection, retry pause, connect wait and lock the router takes for that call is bounded by
//! the same instant, the call's start plus the command timeout (UNAVAILABLE when it passes).
//! The caller's own deadline (`grpc-timeout`), when it comes first, is the gRPC layer's to
//! enforce (DEADLINE_EXCEEDED). Without a scope (background work: the probe, refreshes) each
//! routed command gets the command timeout of its own.

use std::{future::Future, time::Duration};

use tokio::time::Instant;

tokio::task_local! {
    /// When the current RPC started.
    static STARTED: Instant;
}

/// Runs `call` (one RPC) with its deadline: whatever Valkey work it does ends by its start plus
/// the command timeout.
pub async fn scope<F: Future>(call: F) -> F::Output {
    STARTED.scope(Instant::now(), call).await
}

/// The instant the current RPC's Valkey work must end by, given the command timeout.
pub(crate) fn deadline(command_timeout: Duration) -> Instant {
    STARTED
        .try_with(|started| *started + command_timeout)
        .unwrap_or_else(|_| Instant::now() + command_timeout)
}

/// A timeout error naming what did not finish in time.
pub(crate) fn expired(what: &str) -> fred::error::Error {
    fred::error::Error::new(
        fred::error::ErrorKind::Timeout,
        format!("{what} did not finish within the request's deadline"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_budget_counts_from_the_start_of_the_call() {
        let budget = Duration::from_secs(1);
        let now = Instant::now();
        assert_eq!(deadline(budget), now + budget, "no scope: one budget");
        scope(async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(
                deadline(budget),
                now + budget,
                "the budget counts from the call's start, not from each command"
            );
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(deadline(budget), Instant::now() + budget);
    }
}
