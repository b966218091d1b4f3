//! Durable writes on request: after a write, WAIT on the very connection that carried it until
//! a replica has it too, or the timeout passes. WAIT counts the replicas that acknowledged every
//! earlier write of its connection, so it must follow the write on the same connection: the
//! router returns that client (valkey-router), on a node connection reserved for durable
//! writes, because WAIT blocks its connection and would hold up everyone else's commands.

use std::time::Duration;

use fred::{clients::Client, interfaces::ServerInterface};

use session_core::Error;

/// Replicas that must acknowledge a durable write.
const REPLICAS: i64 = 1;

/// The shortest WAIT worth sending (WAIT with 0 ms waits for ever).
const MIN_WAIT: Duration = Duration::from_millis(1);

/// Waits until a replica has every write `client`'s connection made, up to `timeout`, within
/// `left` (what the RPC's deadline leaves).
pub(super) async fn replicated(
    client: &Client,
    timeout: Duration,
    left: Duration,
) -> Result<(), Error> {
    let timeout = timeout.min(left - left / 10);
    if timeout < MIN_WAIT {
        // No time left in the RPC's deadline: WAIT 0 would block until a replica answers.
        metrics::counter!("valkey_durable_writes_total", "outcome" => "not_replicated")
            .increment(1);
        return Err(Error::NotReplicated {
            timeout,
            detail: "the request's deadline left no time to wait for a replica".into(),
        });
    }
    let started = std::time::Instant::now();
    let acked = wait(client, timeout, left).await;
    metrics::histogram!("valkey_command_duration_seconds", "command" => "wait")
        .record(started.elapsed().as_secs_f64());
    let outcome = match &acked {
        Ok(n) if *n >= REPLICAS => "acknowledged",
        _ => "not_replicated",
    };
    metrics::counter!("valkey_durable_writes_total", "outcome" => outcome).increment(1);
    match acked {
        Ok(n) if n >= REPLICAS => Ok(()),
        Ok(n) => Err(Error::NotReplicated {
            timeout,
            detail: format!("{n} of {REPLICAS} replicas acknowledged"),
        }),
        // WAIT itself failed (a refused command, a lost connection): durability is unknown,
        // which is not durable.
        Err(e) => Err(Error::NotReplicated {
            timeout,
            detail: format!("WAIT failed: {e}"),
        }),
    }
}

/// How much later than the server's WAIT timeout its answer may arrive before it is given up.
const WAIT_GRACE: Duration = Duration::from_millis(50);

/// WAIT for a replica for `timeout` (on the server), its answer awaited here until a little after
/// that and never beyond `left`: a primary that is busy, frozen or silent answers late or never,
/// and the RPC's deadline still holds.
async fn wait(
    client: &Client,
    timeout: Duration,
    left: Duration,
) -> Result<i64, fred::error::Error> {
    let sent = client.wait::<i64>(REPLICAS, timeout.as_millis().max(1) as i64);
    let bound = (timeout + WAIT_GRACE).min(left);
    match tokio::time::timeout(bound, sent).await {
        Ok(acked) => acked,
        Err(_) => Err(fred::error::Error::new(
            fred::error::ErrorKind::Timeout,
            format!("the primary did not answer WAIT within {bound:?}"),
        )),
    }
}

/// How long a revocation waits for a replica before answering, where reads go to replicas.
const REVOCATION_WAIT: Duration = Duration::from_millis(500);

/// Waits (at most `left`, what the RPC's deadline leaves) until a replica has the revocation
/// `client`'s connection made, so a revoked id is NOT_FOUND on the replica read path too once
/// the call returns. A replica that does not answer in time is logged, not an error: the
/// revocation happened on the primary, and a lagging replica's miss-fallback is all it could
/// serve.
pub(super) async fn revocation_replicated(client: &Client, left: Duration) {
    let wait = REVOCATION_WAIT.min(left - left / 10);
    if wait < MIN_WAIT {
        tracing::warn!("no time left to wait for a replica after a revocation");
        return;
    }
    let started = std::time::Instant::now();
    let acked = self::wait(client, wait, left).await;
    metrics::histogram!("valkey_command_duration_seconds", "command" => "wait")
        .record(started.elapsed().as_secs_f64());
    match acked {
        Ok(acked) if acked >= REPLICAS => {}
        Ok(_) => tracing::warn!("a revocation was not acknowledged by a replica in time"),
        Err(e) => tracing::warn!(error = %e, "WAIT after a revocation failed"),
    }
}
