//! The service's view of Valkey: the slot table, a client per node (store/nodes.rs), keeping the
//! table current, and probing every node for the health check and for failing fast.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use fred::{
    error::Error as FredError,
    interfaces::{ClientLike, ClusterInterface},
    types::{Value, config::Server},
};
use futures::future::join_all;
use tokio::sync::Mutex;

use crate::{
    nodes::{Node, Nodes, Template},
    topology::{Table, addr},
};

/// A connection to a standalone Valkey or to every node of a cluster.
pub struct Valkey {
    pub(crate) nodes: Nodes,
    table: ArcSwap<Table>,
    /// The URL's nodes: where discovery starts, and falls back to when no known node answers.
    seeds: Vec<Server>,
    clustered: bool,
    /// Whether eventual reads go to replicas (otherwise replicas get no client).
    replicas: bool,
    /// TLS server name for nodes announced by IP (`tls_host_mapping = default-host`).
    tls_name: Option<String>,
    /// Time allowed for one probe or discovery command.
    pub(crate) command_timeout: Duration,
    /// How often the health probe runs: the retry hint of a fail-fast error.
    pub(crate) probe_every: Duration,
    refreshing: Mutex<()>,
    refresh_wanted: AtomicBool,
    last_refresh: std::sync::Mutex<Instant>,
}

/// The view most of `tables` (in the order the nodes were asked) hold, with its votes and the
/// number of voters; among equals, the first asked (a node that answered the last probe).
fn majority(tables: Vec<Table>) -> Option<(Table, usize, usize)> {
    let voters = tables.len();
    let mut views: Vec<(Table, usize)> = Vec::new();
    for table in tables {
        match views.iter_mut().find(|(t, _)| t.same_as(&table)) {
            Some((_, votes)) => *votes += 1,
            None => views.push((table, 1)),
        }
    }
    let best = (0..views.len()).max_by_key(|&i| (views[i].1, std::cmp::Reverse(i)))?;
    let (table, votes) = views.swap_remove(best);
    Some((table, votes, voters))
}

/// Nodes asked for the slot table at once; the view most of them hold wins.
const VOTERS: usize = 3;

/// Least time between two topology refreshes asked for by redirections or failures.
const REFRESH_GAP: Duration = Duration::from_millis(100);

/// What one health probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Primaries (shards) in the slot table.
    pub primaries: usize,
    /// Primaries that answered.
    pub primaries_up: usize,
}

impl Probe {
    /// Whether this instance reaches Valkey at all: at least one shard answers.
    pub fn reachable(&self) -> bool {
        self.primaries_up > 0
    }
}

impl Valkey {
    /// A router over `nodes`, starting from the URL's `seeds`; `replicas` gives replicas clients
    /// of their own (eventual reads), `tls_name` is the TLS name of nodes announced by IP.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        template: Template,
        seeds: Vec<Server>,
        clustered: bool,
        replicas: bool,
        tls_name: Option<String>,
        command_timeout: Duration,
        probe_every: Duration,
    ) -> Self {
        let table = if clustered {
            Table::empty()
        } else {
            Table::single(seeds[0].clone())
        };
        Self {
            nodes: Nodes::new(template),
            table: ArcSwap::from_pointee(table),
            seeds,
            clustered,
            replicas,
            tls_name,
            command_timeout,
            probe_every,
            refreshing: Mutex::new(()),
            refresh_wanted: AtomicBool::new(false),
            last_refresh: std::sync::Mutex::new(
                Instant::now()
                    .checked_sub(REFRESH_GAP)
                    .unwrap_or_else(Instant::now),
            ),
        }
    }

    /// The current slot table.
    pub(crate) fn table(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// The TLS server name for a node announced by IP, where one is configured.
    pub(crate) fn tls_name(&self) -> Option<&str> {
        self.tls_name.as_deref()
    }

    /// The nodes of `table` the service keeps clients for: the primaries, and the replicas when
    /// eventual reads go to them.
    fn used(&self, table: &Table) -> Vec<Server> {
        if self.replicas {
            table.nodes()
        } else {
            table.shards().iter().map(|s| s.primary.clone()).collect()
        }
    }

    /// Connects to the seeds, discovers the cluster and connects to its nodes; returns once a
    /// primary is connected or after `wait`, whichever is first, so that a service can start (and
    /// report NOT_SERVING) while Valkey is still down.
    pub async fn connect(self: &Arc<Self>, wait: Duration) -> bool {
        let start = Instant::now();
        for seed in &self.seeds {
            if let Err(e) = self.nodes.get(seed) {
                tracing::warn!(error = %crate::describe(&e), "valkey client could not be built");
            }
        }
        loop {
            if self.clustered && self.table().shards().is_empty() {
                let _ = self.refresh().await;
            }
            let primaries: Vec<Arc<Node>> = self
                .table()
                .shards()
                .iter()
                .filter_map(|s| self.nodes.get(&s.primary).ok())
                .collect();
            if primaries.iter().any(|n| n.connected()) {
                // Give the others the rest of the time, together.
                let left = wait.saturating_sub(start.elapsed());
                join_all(primaries.iter().map(|n| n.wait_connected(left))).await;
                return true;
            }
            if start.elapsed() >= wait {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Re-reads the slot table (`CLUSTER SLOTS`). Up to [`VOTERS`] nodes are asked at once
    /// (those that answered the last probe first: known primaries, replicas, then the URL's
    /// nodes) and the view most of them hold wins, so one node with a stale view (a partitioned
    /// or restarted primary) cannot send every command to the wrong place. Returns whether the
    /// table changed.
    pub async fn refresh(self: &Arc<Self>) -> Result<bool, FredError> {
        if !self.clustered {
            return Ok(false);
        }
        let _one_at_a_time = self.refreshing.lock().await;
        self.refresh_wanted.store(false, Ordering::Relaxed);
        *self.last_refresh.lock().expect("refresh clock") = Instant::now();
        let current = self.table();
        let mut candidates: Vec<Server> = self.used(&current);
        candidates.extend(self.seeds.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        candidates.retain(|s| seen.insert(addr(s)));
        // Nodes that answered the last probe first: a hung node would cost a timeout.
        candidates.sort_by_key(|s| !self.nodes.existing(s).is_none_or(|n| n.is_up()));
        let connected: Vec<(Server, Arc<Node>)> = candidates
            .into_iter()
            .filter_map(|server| {
                let node = self
                    .nodes
                    .existing(&server)
                    .or_else(|| self.nodes.get(&server).ok())?;
                node.connected().then_some((server, node))
            })
            .take(VOTERS)
            .collect();
        let answers = join_all(connected.iter().map(|(server, node)| async move {
            let asked =
                tokio::time::timeout(self.command_timeout, node.client().cluster_slots::<Value>())
                    .await;
            match asked {
                Ok(Ok(reply)) => match Table::parse(reply, &server.host, self.tls_name()) {
                    Ok(table) if !table.shards().is_empty() => Ok(table),
                    Ok(_) => Err(None),
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable CLUSTER SLOTS reply");
                        Err(None)
                    }
                },
                Ok(Err(e)) => Err(Some(e)),
                Err(_) => Err(None),
            }
        }))
        .await;
        let mut last = None;
        let mut tables = Vec::new();
        for answer in answers {
            match answer {
                Ok(table) => tables.push(table),
                Err(e) => last = e.or(last),
            }
        }
        let Some((table, votes, voters)) = majority(tables) else {
            return Err(last.unwrap_or_else(|| {
                FredError::new(
                    fred::error::ErrorKind::IO,
                    "no valkey node answered CLUSTER SLOTS",
                )
            }));
        };
        metrics::gauge!("valkey_topology_agreement").set(votes as f64 / voters as f64);
        if votes < voters {
            tracing::warn!(
                agreeing = votes,
                asked = voters,
                "valkey nodes disagree on the slot table; the view most hold is used"
            );
        }
        let changed = !table.same_as(&current);
        if changed {
            self.install(table).await;
        }
        Ok(changed)
    }

    /// Starts a refresh in the background unless one is already wanted (after a MOVED, a
    /// CLUSTERDOWN, a primary down), never sooner than [`REFRESH_GAP`] after the last one: a
    /// storm of redirections costs one CLUSTER SLOTS per node and gap, not one per command.
    pub(crate) fn refresh_soon(self: &Arc<Self>) {
        if !self.clustered || self.refresh_wanted.swap(true, Ordering::Relaxed) {
            return;
        }
        let valkey = self.clone();
        tokio::spawn(async move {
            let last = *valkey.last_refresh.lock().expect("refresh clock");
            tokio::time::sleep_until(tokio::time::Instant::from_std(last + REFRESH_GAP)).await;
            if let Err(e) = valkey.refresh().await {
                tracing::debug!(error = %e, "topology refresh failed");
            }
        });
    }

    /// What is left of the current RPC's deadline (deadline.rs), or the command timeout outside
    /// an RPC.
    pub fn remaining(&self) -> Duration {
        crate::deadline::deadline(self.command_timeout)
            .saturating_duration_since(tokio::time::Instant::now())
    }

    /// The time one command (or one RPC's Valkey work) may take.
    pub fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    async fn install(self: &Arc<Self>, table: Table) {
        let mut keep = self.used(&table);
        keep.extend(self.seeds.iter().cloned());
        for server in &keep {
            let _ = self.nodes.get(server);
        }
        tracing::info!(
            shards = table.shards().len(),
            nodes = table.nodes().len(),
            "valkey topology changed"
        );
        let primaries: Vec<_> = table.shards().iter().map(|s| addr(&s.primary)).collect();
        self.table.store(Arc::new(table));
        self.nodes.retain(&keep).await;
        for node in self.nodes.all() {
            let primary = primaries.contains(&addr(&node.server));
            if !primary {
                node.close_durable().await;
            }
            node.close_asking().await;
            node.set_readonly(self.replicas && !primary);
        }
        if self.replicas {
            self.readonly_replicas();
        }
    }

    /// PINGs every node of the table at once. A node is marked down (commands for its slots then
    /// fail fast) when it is not connected and does not answer, or when it is connected but did
    /// not answer two probes in a row (hung, or the machine too busy to tell); up again as soon
    /// as it answers.
    /// When a primary is down the table is re-read, so a promoted replica takes over as soon as
    /// the cluster has promoted it. A node that answers also reports its memory and evictions
    /// (memory.rs).
    pub async fn probe(self: &Arc<Self>) -> Probe {
        let table = self.table();
        let nodes: Vec<Arc<Node>> = self
            .used(&table)
            .iter()
            .filter_map(|s| self.nodes.get(s).ok())
            .collect();
        let answers = join_all(nodes.iter().map(|node| async {
            let started = Instant::now();
            let ping = tokio::time::timeout(self.command_timeout, node.client().ping::<()>(None));
            let failure = match ping.await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("no answer within the command timeout".to_owned()),
            };
            // The same series the probe's single PING fed before it PINGed every node (the
            // runbook's ValkeyDown queries read them).
            metrics::histogram!("valkey_command_duration_seconds", "command" => "ping")
                .record(started.elapsed().as_secs_f64());
            if failure.is_some() {
                metrics::counter!("valkey_command_errors_total", "command" => "ping", "kind" => "unavailable")
                    .increment(1);
            }
            if failure.is_none() {
                crate::memory::record(node, self.command_timeout).await;
            }
            let was = node.is_up();
            node.record_probe(failure.is_none());
            let up = node.is_up();
            if was != up {
                tracing::info!(
                    node = %format_args!("{}:{}", node.server.host, node.server.port),
                    up,
                    error = failure.as_deref().unwrap_or_default(),
                    "valkey node changed"
                );
            }
            (addr(&node.server), up)
        }))
        .await;
        let up = |server: &Server| {
            let a = addr(server);
            answers.iter().any(|(n, up)| *n == a && *up)
        };
        let probe = Probe {
            primaries: table.shards().len(),
            primaries_up: table.shards().iter().filter(|s| up(&s.primary)).count(),
        };
        if !self.clustered {
            // One server: nothing to disagree about (the series exists on every deployment).
            metrics::gauge!("valkey_topology_agreement").set(1.0);
        }
        if self.clustered && (probe.primaries_up < probe.primaries || probe.primaries == 0) {
            // In the background: a refresh that waits on dead nodes must not stretch the
            // probe's cadence, which decides how soon a shard fails fast or serves again.
            self.refresh_soon();
        }
        probe
    }

    /// Re-reads the table periodically: a replica that appears (a fresh replica is only listed
    /// once it has data) or returns gets reads again, resharding is seen without a MOVED.
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration) {
        if !self.clustered {
            return;
        }
        let valkey = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(valkey) = valkey.upgrade() else {
                    return;
                };
                if let Err(e) = valkey.refresh().await {
                    tracing::debug!(error = %e, "topology refresh failed");
                }
            }
        });
    }

    /// The nodes whose writes (or replicated writes) may change what this instance reads: the
    /// primaries, and the replicas when eventual reads go to them (near cache tracking).
    pub fn read_nodes(&self) -> Vec<Server> {
        self.used(&self.table())
    }

    /// An unconnected RESP3 client to one node, configured like the node clients.
    pub fn tracking_client(&self, server: &Server) -> Result<fred::clients::Client, FredError> {
        self.nodes.template().tracking_client(server)
    }

    /// Closes every connection.
    pub async fn quit(&self) {
        self.nodes.quit().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned_by(port: u16) -> Table {
        Table::single(Server::new("10.0.0.1", port))
    }

    #[test]
    fn the_view_most_nodes_hold_wins() {
        let (table, votes, voters) = majority(vec![owned_by(1), owned_by(2), owned_by(2)]).unwrap();
        assert!(
            table.same_as(&owned_by(2)),
            "two of three outvote the first asked"
        );
        assert_eq!((votes, voters), (2, 3));
        let (table, votes, voters) = majority(vec![owned_by(1), owned_by(2)]).unwrap();
        assert!(table.same_as(&owned_by(1)), "a tie goes to the first asked");
        assert_eq!((votes, voters), (1, 2));
        assert!(majority(Vec::new()).is_none());
    }
}
