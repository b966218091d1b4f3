//! Sends the store's one-key commands to the node that serves the key, follows MOVED and ASK,
//! and fails at once for a shard the health probe found down.
//!
//! fred 10.1.0's cluster client cannot follow ASK (this crate's `fred_follows_ask` test: it re-sends
//! the command to the old owner, then ends its connection task for good), so each node has a
//! plain client (nodes.rs) and redirections come back here as errors:
//! * MOVED: the command goes to the node named, and the slot table is re-read in the background;
//!   a MOVED to the very node that answered reopens its connections (they reach another node);
//! * ASK: `ASKING` and the command go to the node named, on a connection of their own and under
//!   a lock, so nothing comes between them. The command goes there only after the owner refused
//!   it for that key, never on a guess: a key not yet migrated is never read or written there;
//! * TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN: retried after a pause, within the deadline.
//!
//! Every attempt of one RPC shares its deadline (deadline.rs).

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use fred::{
    clients::Client,
    error::Error as FredError,
    interfaces::ClientLike,
    types::{ClusterHash, CustomCommand, Value, config::Server},
    util::redis_keyslot,
};

use crate::{RouteError, deadline, nodes::Node, topology::addr, valkey::Valkey};

/// Redirections followed for one command before it fails as UNAVAILABLE. An ASK of a script the
/// importing node does not know yet takes four: the owner's ASK; ASKING and EVALSHA there, whose
/// NOSCRIPT loads the script and whose retry (ASKING spent) is MOVED back to the owner; the
/// owner's ASK again; ASKING and EVALSHA. One more for a MOVED while the slot table is stale.
const MAX_ATTEMPTS: usize = 5;

/// Pause before a command refused with TRYAGAIN (its slot migrating) is sent again.
const TRYAGAIN_PAUSE: Duration = Duration::from_millis(20);

/// Pause before a command refused with CLUSTERDOWN, LOADING or MASTERDOWN (a failover or a
/// restart under way) is sent again.
const STATE_PAUSE: Duration = Duration::from_millis(50);

/// Which connection of a node a command goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The node's shared connections.
    Shared,
    /// The node's connection for writes that are followed by WAIT.
    Durable,
}

/// A redirection a node answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Redirect {
    Moved,
    Ask,
}

/// A replica read may take the command timeout divided by this before the primary is asked.
const REPLICA_TIMEOUT_DIVISOR: u32 = 4;

/// Round robin over a shard's replicas.
static NEXT_REPLICA: AtomicUsize = AtomicUsize::new(0);

impl Valkey {
    /// Runs `call` with a client of the primary serving `key` (on `lane`), following
    /// redirections; returns the reply and the client that gave it, whose connection carried the
    /// command (for WAIT). `call` may run more than once, each time with the client to use.
    pub async fn keyed<T, F, Fut>(
        self: &Arc<Self>,
        key: &str,
        lane: Lane,
        call: F,
    ) -> Result<(T, Client), RouteError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, FredError>>,
    {
        let slot = redis_keyslot(key.as_bytes());
        let deadline = deadline::deadline(self.command_timeout);
        let mut to: Option<(Redirect, Server)> = None;
        let mut last = None;
        let mut redirects = 0;
        while redirects < MAX_ATTEMPTS {
            // Everything of one attempt (connect waits, the ASK lane's lock, the command) ends
            // by the RPC's deadline.
            let attempt = async {
                Ok::<_, RouteError>(match &to {
                    None => {
                        let node = self.owner(slot)?;
                        let client = lane_client(&node, lane).await?;
                        let result = call(client.clone()).await;
                        (node, client, result)
                    }
                    Some((Redirect::Moved, server)) => {
                        let node = self.nodes.get(server)?;
                        node.wait_connected(self.command_timeout).await;
                        let client = lane_client(&node, lane).await?;
                        let result = call(client.clone()).await;
                        (node, client, result)
                    }
                    Some((Redirect::Ask, server)) => {
                        let node = self.nodes.get(server)?;
                        let (client, result) = ask(&node, slot, &call).await?;
                        (node, client, result)
                    }
                })
            };
            let (node, client, result) = match tokio::time::timeout_at(deadline, attempt).await {
                Ok(attempt) => attempt?,
                // Out of time while retrying: the refusal that made it retry says more than the
                // timeout does (CLUSTERDOWN, TRYAGAIN, a redirection).
                Err(_) => {
                    return Err(match last {
                        Some(e) => RouteError::Fred(e),
                        None => deadline::expired("the valkey command").into(),
                    });
                }
            };
            let e = match result {
                Ok(value) => return Ok((value, client)),
                Err(e) => e,
            };
            if let Some((kind, target)) = redirection(&e, &node.server, self.tls_name()) {
                let label = match kind {
                    Redirect::Moved => "moved",
                    Redirect::Ask => "ask",
                };
                metrics::counter!("valkey_redirects_total", "kind" => label).increment(1);
                if kind == Redirect::Moved {
                    if addr(&target) == addr(&node.server) {
                        // Sent back to where it was: the connection is not to the node the
                        // address now names (a replaced node). A new connection asks again.
                        node.reconnect("moved_to_self");
                    }
                    self.refresh_soon();
                }
                to = Some((kind, target));
                last = Some(e);
                redirects += 1;
                continue;
            }
            // The cluster is between states (a slot migrating, a failover, a node loading its
            // data): again from the owner after a pause, within the deadline, with a fresh
            // slot table on the way.
            let Some((label, pause)) = transient(&e) else {
                return Err(RouteError::Fred(e));
            };
            if tokio::time::Instant::now() + pause >= deadline {
                return Err(RouteError::Fred(e));
            }
            metrics::counter!("valkey_redirects_total", "kind" => label).increment(1);
            if label != "tryagain" {
                self.refresh_soon();
            }
            tokio::time::sleep(pause).await;
            to = None;
            last = Some(e);
        }
        Err(RouteError::Fred(last.expect("an attempt was made")))
    }

    /// Runs `call` with a client of a replica of the shard serving `key` (round robin over the
    /// replicas the probe last reached). Fails, without sending anything, when there is none: the
    /// caller then asks the primary. A replica that refuses the read (it answers MOVED until told
    /// READONLY, again after each reconnect) is told and the read fails.
    pub async fn replica<T, F, Fut>(self: &Arc<Self>, key: &str, call: F) -> Result<T, RouteError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, FredError>>,
    {
        let slot = redis_keyslot(key.as_bytes());
        let table = self.table();
        let replicas: Vec<_> = table
            .shard(slot)
            .map(|(_, shard)| {
                shard
                    .replicas
                    .iter()
                    .filter_map(|r| self.nodes.existing(r))
                    .filter(|n| n.is_up() && n.connected())
                    .collect()
            })
            .unwrap_or_default();
        if replicas.is_empty() {
            return Err(self.down("no replica reachable".into()));
        }
        let node = &replicas[NEXT_REPLICA.fetch_add(1, Ordering::Relaxed) % replicas.len()];
        // A quarter of the command timeout: the primary has the answer, so a replica that died
        // since the last probe (its connection not yet seen closed) costs little.
        let limit = self.command_timeout / REPLICA_TIMEOUT_DIVISOR;
        let until =
            deadline::deadline(self.command_timeout).min(tokio::time::Instant::now() + limit);
        match tokio::time::timeout_at(until, call(node.client().clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if redirection(&e, &node.server, None).is_some() {
                    node.send_readonly();
                }
                Err(RouteError::Fred(e))
            }
            Err(_) => Err(RouteError::Fred(FredError::new(
                fred::error::ErrorKind::Timeout,
                "replica read timed out",
            ))),
        }
    }

    /// The primary that owns `slot` in the slot table, unless the health probe found it down.
    fn owner(self: &Arc<Self>, slot: u16) -> Result<Arc<Node>, RouteError> {
        let table = self.table();
        let Some((_, shard)) = table.shard(slot) else {
            self.refresh_soon();
            return Err(self.down(format!("no valkey node serves slot {slot} yet")));
        };
        let node = self.nodes.get(&shard.primary)?;
        if !node.is_up() {
            return Err(self.down(format!(
                "the primary serving this session ({}:{}) did not answer the health probe",
                node.server.host, node.server.port
            )));
        }
        Ok(node)
    }

    fn down(&self, what: String) -> RouteError {
        RouteError::Down {
            what,
            retry_after: self.probe_every,
        }
    }

    /// Tells every replica to serve reads, once connected (`READONLY`).
    pub(crate) fn readonly_replicas(self: &Arc<Self>) {
        let table = self.table();
        for replica in table.shards().iter().flat_map(|s| s.replicas.iter()) {
            if let Some(node) = self.nodes.existing(replica) {
                let wait = self.command_timeout.max(Duration::from_secs(1));
                tokio::spawn(async move {
                    if node.wait_connected(wait).await {
                        node.send_readonly();
                    }
                });
            }
        }
    }
}

/// Sends `ASKING` and then the command on `node`'s ASK connection, under its lock so that
/// nothing comes between them; returns the client and the command's result.
async fn ask<T, F, Fut>(
    node: &Node,
    slot: u16,
    call: &F,
) -> Result<(Client, Result<T, FredError>), FredError>
where
    F: Fn(Client) -> Fut,
    Fut: Future<Output = Result<T, FredError>>,
{
    let asking = node.asking().await?;
    let _together = asking.lock.lock().await;
    let command = CustomCommand::new_static("ASKING", ClusterHash::Custom(slot), false);
    asking
        .client
        .custom::<Value, Value>(command, Vec::new())
        .await?;
    let result = call(asking.client.clone()).await;
    Ok((asking.client.clone(), result))
}

/// A transient cluster state worth retrying: its metric label and the pause before the retry.
fn transient(e: &FredError) -> Option<(&'static str, Duration)> {
    let details = e.details();
    [
        ("TRYAGAIN", "tryagain", TRYAGAIN_PAUSE),
        ("CLUSTERDOWN", "clusterdown", STATE_PAUSE),
        ("LOADING", "loading", STATE_PAUSE),
        ("MASTERDOWN", "masterdown", STATE_PAUSE),
    ]
    .into_iter()
    .find(|(prefix, _, _)| details.starts_with(prefix))
    .map(|(_, label, pause)| (label, pause))
}

/// The client of `node` for `lane`.
async fn lane_client(node: &Node, lane: Lane) -> Result<Client, FredError> {
    Ok(match lane {
        Lane::Shared => node.client().clone(),
        Lane::Durable => node.durable().await?,
    })
}

/// The redirection in an error (`MOVED <slot> <host>:<port>` or `ASK ...`), with its target. A
/// node that does not know its own address announces `:<port>`: that is the node that answered.
fn redirection(e: &FredError, from: &Server, tls_name: Option<&str>) -> Option<(Redirect, Server)> {
    let mut words = e.details().split_whitespace();
    let kind = match words.next()? {
        "MOVED" => Redirect::Moved,
        "ASK" => Redirect::Ask,
        _ => return None,
    };
    let _slot: u16 = words.next()?.parse().ok()?;
    let (host, port) = words.next()?.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = if host.is_empty() { &*from.host } else { host };
    let tls = tls_name
        .filter(|_| host.parse::<std::net::IpAddr>().is_ok())
        .map(str::to_owned)
        .or_else(|| {
            from.tls_server_name
                .as_ref()
                .filter(|_| host == &*from.host)
                .map(|n| n.to_string())
        });
    Some((kind, Server::new_with_tls(host.to_owned(), port, tls)))
}

#[cfg(test)]
mod tests {
    use fred::error::ErrorKind;

    use super::*;

    #[test]
    fn transient_states_are_retried_with_a_pause() {
        let e = |m: &str| FredError::new(ErrorKind::Unknown, m.to_owned());
        assert_eq!(
            transient(&e(
                "TRYAGAIN Multiple keys request during rehashing of slot"
            )),
            Some(("tryagain", TRYAGAIN_PAUSE))
        );
        for (message, label) in [
            ("CLUSTERDOWN The cluster is down", "clusterdown"),
            ("LOADING Valkey is loading the dataset in memory", "loading"),
            ("MASTERDOWN Link with MASTER is down", "masterdown"),
        ] {
            assert_eq!(transient(&e(message)), Some((label, STATE_PAUSE)));
        }
        for other in [
            "ERR unknown command",
            "OOM command not allowed",
            "MOVED 1 a:1",
        ] {
            assert_eq!(transient(&e(other)), None, "{other}");
        }
    }

    #[test]
    fn reads_redirections() {
        let from = Server::new("10.0.0.1", 6379);
        let e = FredError::new(ErrorKind::Cluster, "MOVED 3999 10.0.0.2:6381");
        let (kind, to) = redirection(&e, &from, Some("cache.example")).unwrap();
        assert_eq!(kind, Redirect::Moved);
        assert_eq!((&*to.host, to.port), ("10.0.0.2", 6381));
        assert_eq!(to.tls_server_name.as_deref(), Some("cache.example"));
        let e = FredError::new(ErrorKind::Cluster, "ASK 12 :7000");
        let (kind, to) = redirection(&e, &from, None).unwrap();
        assert_eq!(kind, Redirect::Ask);
        assert_eq!((&*to.host, to.port), ("10.0.0.1", 7000));
        let e = FredError::new(ErrorKind::Cluster, "ASK 12 b.example:7000");
        let (_, to) = redirection(&e, &from, Some("cache.example")).unwrap();
        assert_eq!(
            to.tls_server_name, None,
            "a host name is verified as itself"
        );
        for other in [
            "CLUSTERDOWN The cluster is down",
            "MOVED x y",
            "ERR unknown",
        ] {
            assert!(redirection(&FredError::new(ErrorKind::Cluster, other), &from, None).is_none());
        }
    }
}
