//! Truthful gRPC health: a background probe PINGs every Valkey node and drives tonic-health.
//!
//! Readiness of a sharded store: SERVING while this instance reaches at least one shard's
//! primary, NOT_SERVING only when it reaches none (docs/cloud.md). Every instance shares the same
//! cluster, so taking all of them out of their load balancer when one shard fails would turn a
//! partial outage into a total one; requests for a shard that is down fail fast instead
//! (UNAVAILABLE with a retry hint) and the others are served.

use std::time::Duration;

use tonic_health::{ServingStatus, server::HealthReporter};

use session_store::SessionStore;

/// The name under which the session service reports health.
pub const SERVICE_NAME: &str = session_proto::session_service_server::SERVICE_NAME;

/// Handle to the probe, used at shutdown.
pub struct Health {
    reporter: HealthReporter,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Health {
    /// Reports NOT_SERVING for good: the first step of a graceful shutdown.
    pub async fn stop_serving(&self) {
        let _ = self.stop.send(true);
        set(&self.reporter, ServingStatus::NotServing).await;
    }
}

/// Starts the probe loop: SERVING while a primary answers its PING within the command timeout
/// and the deployment secrets agree.
pub fn spawn_probe(store: SessionStore, reporter: HealthReporter, every: Duration) -> Health {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let probe_reporter = reporter.clone();
    tokio::spawn(async move {
        set(&probe_reporter, ServingStatus::NotServing).await;
        let mut last = None;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.wait_for(|s| *s) => return,
            }
            let probe = store.probe().await;
            let up = probe.reachable();
            // An instance whose deployment secret disagrees with the others' leaves its load
            // balancer: it would refuse every call about a principal (agreement.rs).
            let agree = store.secrets_agree();
            if *stopped.borrow() {
                return;
            }
            metrics::gauge!("valkey_shards").set(probe.primaries as f64);
            metrics::gauge!("valkey_shards_up").set(probe.primaries_up as f64);
            if last != Some((up, agree)) {
                let status = if up && agree {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                tracing::info!(
                    valkey_up = up,
                    secrets_agree = agree,
                    shards = probe.primaries,
                    shards_up = probe.primaries_up,
                    "health changed"
                );
                metrics::gauge!("valkey_up").set(if up { 1.0 } else { 0.0 });
                set(&probe_reporter, status).await;
                last = Some((up, agree));
            }
        }
    });
    Health { reporter, stop }
}

async fn set(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    reporter.set_service_status(SERVICE_NAME, status).await;
}
