//! Keeps the near cache coherent: one RESP3 connection per node (every primary, and every
//! replica that serves reads) with `CLIENT TRACKING on BCAST PREFIX <prefix>`, whose invalidation
//! messages drop cached keys. Tracking on the replicas matters: a value read from a lagging
//! replica after the primary's invalidation is dropped again when the replica applies the write.
//!
//! fred's own `start_tracking` is not used: in a cluster it sends BCAST on one connection only,
//! and never covers replica connections (shared/valkey-notes.md, fact 16).

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use fred::{
    prelude::{ClientLike, EventInterface, TrackingInterface},
    types::config::Server,
};
use tokio::{sync::Notify, task::JoinHandle};

use crate::{Valkey, near_cache::NearCache};

/// The state of one node's tracking connection.
struct Tracker {
    up: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

/// How often the node list is re-read from the router's slot table (no network): a replica
/// that appears is tracked within this, and until it is, nothing is served.
const DISCOVERY: Duration = Duration::from_millis(250);

/// Starts keeping `cache` coherent with the nodes `valkey` reads from.
pub fn spawn(valkey: Arc<Valkey>, cache: Arc<NearCache>, prefix: String) {
    tokio::spawn(async move {
        let changed = Arc::new(Notify::new());
        let refused = Arc::new(AtomicBool::new(false));
        let mut trackers: HashMap<Server, Tracker> = HashMap::new();
        let mut tick = tokio::time::interval(DISCOVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        metrics::gauge!("near_cache_enabled").set(1.0);
        loop {
            if refused.load(Ordering::Acquire) {
                for (_, t) in trackers.drain() {
                    t.task.abort();
                }
                cache.suspend("tracking_refused");
                metrics::gauge!("near_cache_enabled").set(0.0);
                return;
            }
            let wanted = valkey.read_nodes();
            trackers.retain(|server, t| {
                let keep = wanted.contains(server);
                if !keep {
                    t.task.abort();
                }
                keep
            });
            for server in &wanted {
                if !trackers.contains_key(server) {
                    let up = Arc::new(AtomicBool::new(false));
                    let task = tokio::spawn(track(
                        server.clone(),
                        valkey.clone(),
                        prefix.clone(),
                        cache.clone(),
                        up.clone(),
                        changed.clone(),
                        refused.clone(),
                    ));
                    trackers.insert(server.clone(), Tracker { up, task });
                }
            }
            let all_up =
                !trackers.is_empty() && trackers.values().all(|t| t.up.load(Ordering::Acquire));
            match (all_up, cache.is_healthy()) {
                (true, false) => cache.resume(),
                (false, true) => cache.suspend("tracking_down"),
                _ => {}
            }
            metrics::gauge!("near_cache_entries").set(cache.entries() as f64);
            tokio::select! {
                _ = tick.tick() => {}
                _ = changed.notified() => {}
            }
        }
    });
}

/// One node's tracking connection: (re)connects, turns tracking on, forwards invalidations, and
/// says whether it is up. A server that refuses tracking turns the near cache off for good.
///
/// Over 80 lines on purpose: it is one connection's whole life (build, connect, enable, forward,
/// reconnect), a state machine that reads best in one place; its parts would pass the same
/// seven handles to each other.
async fn track(
    server: Server,
    valkey: Arc<Valkey>,
    prefix: String,
    cache: Arc<NearCache>,
    up: Arc<AtomicBool>,
    changed: Arc<Notify>,
    refused: Arc<AtomicBool>,
) {
    let set = |state: bool| {
        if up.swap(state, Ordering::AcqRel) != state {
            if !state {
                // Invalidations may be lost from here on: stop serving before anything else.
                cache.suspend("tracking_connection_lost");
            }
            changed.notify_one();
        }
    };
    loop {
        let client = match valkey.tracking_client(&server) {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(error = %e, "near cache: cannot build a tracking client");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut invalidations = client.invalidation_rx();
        let mut errors = client.error_rx();
        let mut reconnects = client.reconnect_rx();
        let _connection = client.init().await;
        if let Err(e) = client.wait_for_connect().await {
            tracing::debug!(error = %e, node = %server, "near cache: tracking connection failed");
            let _ = client.quit().await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        loop {
            match enable(&client, &prefix).await {
                Ok(()) => set(true),
                Err(e) if is_refusal(&e) => {
                    tracing::warn!(error = %e, node = %server,
                        "near cache off: the server refuses CLIENT TRACKING; every Get goes to Valkey");
                    metrics::counter!("near_cache_flushes_total", "reason" => "tracking_refused")
                        .increment(1);
                    refused.store(true, Ordering::Release);
                    set(false);
                    changed.notify_one();
                    let _ = client.quit().await;
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, node = %server, "near cache: CLIENT TRACKING failed");
                    set(false);
                }
            }
            // Until the connection drops: invalidations in, or the connection's end. A
            // connection that only receives cannot tell a quiet node from a silent one, so it
            // PINGs: no PONG within the command timeout and nothing cached can be trusted.
            let timeout = valkey.command_timeout();
            let mut heartbeat = tokio::time::interval(timeout / 2);
            heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let reconnected = loop {
                tokio::select! {
                    _ = heartbeat.tick() => {
                        let pong = tokio::time::timeout(timeout, client.ping::<()>(None)).await;
                        if !matches!(pong, Ok(Ok(()))) {
                            tracing::warn!(node = %server, "near cache: the tracking connection did not answer a PING; reconnecting");
                            set(false);
                            let _ = tokio::time::timeout(timeout, client.force_reconnection()).await;
                        }
                    }
                    message = invalidations.recv() => match message {
                        Ok(invalidation) if invalidation.keys.is_empty() => cache.clear(),
                        Ok(invalidation) => {
                            for key in &invalidation.keys {
                                if let Some(key) = key.as_str() {
                                    cache.invalidate(key);
                                }
                            }
                        }
                        // Fell behind: some invalidations are gone, so is everything cached.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => cache.clear(),
                        Err(_) => break false,
                    },
                    _ = errors.recv() => set(false),
                    _ = reconnects.recv() => break true,
                }
            };
            if !reconnected {
                break;
            }
            // A new connection has no tracking: nothing cached can be trusted until it has.
            set(false);
        }
        let _ = client.quit().await;
    }
}

/// Turns BCAST tracking on for the connection, from a clean state: the reconnect event of a
/// connection that is already tracking must not fail on "overlapping prefix".
async fn enable(client: &fred::prelude::Client, prefix: &str) -> Result<(), fred::error::Error> {
    use fred::prelude::ClientInterface;
    let none: Vec<String> = Vec::new();
    let _: Result<(), _> = client
        .client_tracking("off", None, none, false, false, false, false)
        .await;
    client
        .client_tracking::<(), _, _>("on", None, prefix, true, false, false, false)
        .await
}

fn is_refusal(e: &fred::error::Error) -> bool {
    let details = e.details().to_ascii_lowercase();
    details.contains("unknown") || details.contains("not supported") || details.contains("noperm")
}
