//! One plain (non-cluster) fred client per Valkey node, so that a node that dies or hangs costs
//! only the commands sent to it. fred 10.1's cluster client, when it loses any node, reconnects
//! all its connections in one loop inside its router task and writes nothing to any node until
//! every primary of its slot table answers again, that is until the failover is over: a single
//! shard's failure stopped every shard for 4-5 s (tests/faults.rs).

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering},
    },
    time::Duration,
};

use fred::{
    clients::Client,
    error::Error as FredError,
    interfaces::{ClientLike, EventInterface},
    prelude::{Builder, ReconnectPolicy},
    types::{
        ClusterHash, CustomCommand, RespVersion, Value,
        config::{
            Config, ConnectionConfig, PerformanceConfig, ReplicaConfig, ReplicaFilter, Server,
            ServerConfig,
        },
    },
};
use tokio::sync::Mutex;

use crate::topology::{Addr, addr};

/// Unanswered PINGs in a row after which a connected node counts as down.
const PROBES_TO_FAIL: u32 = 2;

/// Pause between attempts of a node client's initial connection.
const INITIAL_RETRY: Duration = Duration::from_millis(500);

/// How every node client is configured: the service's fred settings with one server.
pub struct Template {
    pub config: Config,
    pub connection: ConnectionConfig,
    pub performance: PerformanceConfig,
    pub policy: ReconnectPolicy,
    /// Clients (connections) per node.
    pub per_node: usize,
}

impl Template {
    /// An unconnected client to `server` alone.
    fn client(&self, server: &Server) -> Result<Client, FredError> {
        self.build(server, RespVersion::RESP2)
    }

    /// An unconnected RESP3 client to `server` alone, for its invalidation messages (near
    /// cache tracking): the same TLS, credentials, timeouts and reconnect policy as the others.
    pub fn tracking_client(&self, server: &Server) -> Result<Client, FredError> {
        self.build(server, RespVersion::RESP3)
    }

    fn build(&self, server: &Server, version: RespVersion) -> Result<Client, FredError> {
        let mut config = self.config.clone();
        config.version = version;
        config.server = ServerConfig::Centralized {
            server: server.clone(),
        };
        let mut connection = self.connection.clone();
        // fred's plain clients discover their server's replicas and connect to them on their
        // own (feature `replicas`): connections nobody uses, to nodes the router already has
        // clients for, and reconnect loops when one dies. A node client stays on its node.
        connection.replica = ReplicaConfig {
            filter: Some(Arc::new(ThisNodeOnly)),
            ..ReplicaConfig::default()
        };
        let mut builder = Builder::from_config(config);
        builder
            .set_connection_config(connection)
            .set_performance_config(self.performance.clone())
            .set_policy(self.policy.clone());
        builder.build()
    }

    /// How long one connection attempt may take.
    pub fn connect_timeout(&self) -> Duration {
        self.connection.connection_timeout
    }
}

/// Refuses every replica fred discovers behind a node.
struct ThisNodeOnly;

#[async_trait::async_trait]
impl ReplicaFilter for ThisNodeOnly {
    async fn filter(&self, _primary: &Server, _replica: &Server) -> bool {
        false
    }
}

/// A node's clients and what the service knows about it.
pub(crate) struct Node {
    pub server: Server,
    clients: Vec<Client>,
    next: AtomicUsize,
    /// Health probes in a row the node did not answer.
    failures: AtomicU32,
    stopped: Arc<AtomicBool>,
    template: Arc<Template>,
    /// Whether its connections must say READONLY when they open (a replica serving reads).
    readonly: Arc<AtomicBool>,
    /// Why its connections were last closed on purpose, for the reconnect metric.
    forced: Arc<std::sync::Mutex<Option<&'static str>>>,
    /// When a reconnect was last forced: at most one per [`FORCE_GAP`].
    last_forced: std::sync::Mutex<Option<std::time::Instant>>,
    /// The `maxmemory-policy` last exported for it (memory.rs).
    pub memory_policy: std::sync::Mutex<Option<String>>,
    /// The tasks watching its clients' connection events, ended with the node.
    watchers: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// A client of its own for writes that wait for a replica (WAIT blocks its connection, so
    /// it must not hold up the shared one), with its supervisor's stop flag; closed when the
    /// node stops being a primary.
    durable: Mutex<Option<(Client, Arc<AtomicBool>)>>,
    /// A client of its own for `ASKING` + command, so nothing comes between them; opened on
    /// the first ASK, closed when the slot table changes (the migration that needed it is over).
    asking: Mutex<Option<Arc<Asking>>>,
}

/// The connection used to follow ASK redirections to this node.
pub(crate) struct Asking {
    pub client: Client,
    pub lock: Mutex<()>,
}

impl Node {
    fn new(template: Arc<Template>, server: &Server) -> Result<Self, FredError> {
        let stopped = Arc::new(AtomicBool::new(false));
        let clients = (0..template.per_node.max(1))
            .map(|_| template.client(server))
            .collect::<Result<Vec<_>, _>>()?;
        let node = Self {
            server: server.clone(),
            clients,
            next: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
            stopped,
            template,
            readonly: Arc::new(AtomicBool::new(false)),
            forced: Arc::default(),
            last_forced: std::sync::Mutex::default(),
            watchers: std::sync::Mutex::default(),
            memory_policy: std::sync::Mutex::default(),
            durable: Mutex::new(None),
            asking: Mutex::new(None),
        };
        for client in &node.clients {
            node.start(client, node.stopped.clone());
        }
        Ok(node)
    }

    /// Keeps `client` connecting until `stopped` and watches its connection's life: counts
    /// reconnects by cause, and says READONLY on every new connection of a replica.
    fn start(&self, client: &Client, stopped: Arc<AtomicBool>) {
        supervise(client.clone(), stopped);
        let watcher = watch(client.clone(), self.readonly.clone(), self.forced.clone());
        self.watchers.lock().expect("watchers lock").push(watcher);
    }

    /// Marks the node as a replica serving reads (READONLY on each connection as it opens) or
    /// not; the connections already open are told by `Valkey::readonly_replicas`.
    pub fn set_readonly(&self, readonly: bool) {
        self.readonly.store(readonly, Ordering::Relaxed);
    }

    /// Closes and reopens every connection of the node (with a fresh DNS resolution): they no
    /// longer reach the node its address names. At most once a second.
    pub fn reconnect(&self, cause: &'static str) {
        {
            let mut last = self.last_forced.lock().expect("forced clock");
            if last.is_some_and(|at| at.elapsed() < FORCE_GAP) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        tracing::warn!(node = %format_args!("{}:{}", self.server.host, self.server.port), cause,
            "reopening the connections of a valkey node");
        *self.forced.lock().expect("forced lock") = Some(cause);
        for client in self.clients.clone() {
            tokio::spawn(async move {
                let _ = client.force_reconnection().await;
            });
        }
    }

    /// The next client, round robin.
    pub fn client(&self) -> &Client {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        &self.clients[i]
    }

    /// Whether the health probe considers the node reachable.
    pub fn is_up(&self) -> bool {
        self.failures.load(Ordering::Relaxed) < PROBES_TO_FAIL
    }

    /// Records a health probe: a node without a connection is down at its first unanswered
    /// PING; a connected one only at its second in a row, so that a machine too busy to answer
    /// within the timeout once does not make its shard fail fast.
    pub fn record_probe(&self, answered: bool) {
        let failures = if answered {
            0
        } else if !self.connected() {
            PROBES_TO_FAIL
        } else {
            self.failures.load(Ordering::Relaxed).saturating_add(1)
        };
        self.failures.store(failures, Ordering::Relaxed);
    }

    /// Whether a client of the node has a connection.
    pub fn connected(&self) -> bool {
        self.clients.iter().any(|c| c.is_connected())
    }

    /// Waits until a client of the node is connected, up to `limit`.
    pub async fn wait_connected(&self, limit: Duration) -> bool {
        let start = tokio::time::Instant::now();
        while !self.connected() {
            if start.elapsed() >= limit {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// The connection for writes that wait for a replica's acknowledgement, connected on first
    /// use.
    pub async fn durable(&self) -> Result<Client, FredError> {
        let mut lane = self.durable.lock().await;
        if let Some((client, _)) = lane.as_ref() {
            return Ok(client.clone());
        }
        let client = self.template.client(&self.server)?;
        let stopped = Arc::new(AtomicBool::new(self.stopped.load(Ordering::Relaxed)));
        self.start(&client, stopped.clone());
        wait_connected(&client, self.template.connect_timeout()).await;
        *lane = Some((client.clone(), stopped));
        Ok(client)
    }

    /// Closes the durable lane of a node that is no longer a primary: a replica takes no
    /// writes, and a failover would otherwise leave one idle connection on every node that was
    /// ever a primary. A later promotion opens it again on first use.
    pub async fn close_durable(&self) {
        let closed = self.durable.lock().await.take();
        if let Some((client, stopped)) = closed {
            stopped.store(true, Ordering::Relaxed);
            let _ = client.quit().await;
        }
    }

    /// The connection that follows ASK to this node, connected on first use.
    pub async fn asking(&self) -> Result<Arc<Asking>, FredError> {
        let mut lane = self.asking.lock().await;
        if let Some(asking) = lane.as_ref() {
            return Ok(asking.clone());
        }
        let client = self.template.client(&self.server)?;
        self.start(&client, self.stopped.clone());
        wait_connected(&client, self.template.connect_timeout()).await;
        let asking = Arc::new(Asking {
            client,
            lock: Mutex::new(()),
        });
        *lane = Some(asking.clone());
        Ok(asking)
    }

    /// Closes the ASK connection, if one is open: the slot table changed, so the migration
    /// that needed it is over (the next ASK opens it again).
    pub async fn close_asking(&self) {
        let closed = self.asking.lock().await.take();
        if let Some(asking) = closed {
            let _ = asking.client.quit().await;
        }
    }

    /// Asks the node to serve reads of its primary's slots (a replica answers MOVED without it;
    /// fred's plain clients do not send it on connect). Sent again whenever a read is refused.
    pub fn send_readonly(&self) {
        for client in self.clients.clone() {
            tokio::spawn(async move {
                let readonly = CustomCommand::new_static("READONLY", ClusterHash::Random, false);
                let _ = client.custom::<Value, Value>(readonly, Vec::new()).await;
            });
        }
    }

    /// Closes every connection of the node for good.
    pub async fn quit(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.close_durable().await;
        self.close_asking().await;
        for client in &self.clients {
            let _ = client.quit().await;
        }
        for watcher in self.watchers.lock().expect("watchers lock").drain(..) {
            watcher.abort();
        }
    }
}

/// Least time between two forced reconnects of one node.
const FORCE_GAP: Duration = Duration::from_secs(1);

/// Follows one client's connection events for as long as the node lives: each new connection
/// after the first is a reconnect, counted by what closed the last one (a reconnect the router
/// forced, a connection that went silent (TCP_USER_TIMEOUT or keepalive), or one closed by the
/// peer or the network); a replica's new connection is told READONLY before anything else is
/// routed to it (a read sent in between is refused and served by the primary).
fn watch(
    client: Client,
    readonly: Arc<AtomicBool>,
    forced: Arc<std::sync::Mutex<Option<&'static str>>>,
) -> tokio::task::JoinHandle<()> {
    let mut errors = client.error_rx();
    let mut reconnects = client.reconnect_rx();
    tokio::spawn(async move {
        let mut cause = "closed";
        loop {
            tokio::select! {
                error = errors.recv() => match error {
                    Ok((e, _)) => cause = reconnect_cause(&e),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                },
                reconnect = reconnects.recv() => match reconnect {
                    Ok(_) => {
                        let why = forced.lock().expect("forced lock").take().unwrap_or(cause);
                        metrics::counter!("valkey_reconnects_total", "cause" => why).increment(1);
                        cause = "closed";
                        if readonly.load(Ordering::Relaxed) {
                            let command = CustomCommand::new_static("READONLY", ClusterHash::Random, false);
                            let _ = client.custom::<Value, Value>(command, Vec::new()).await;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                },
            }
        }
    })
}

/// What closed a connection, from the error fred reported: `silent` when the kernel gave up on
/// a peer that stopped answering (TCP_USER_TIMEOUT, keepalive), else `closed`.
fn reconnect_cause(e: &FredError) -> &'static str {
    let text = e.to_string().to_ascii_lowercase();
    if text.contains("timed out") || text.contains("timeout") {
        "silent"
    } else {
        "closed"
    }
}

/// Keeps a client connecting: fred's reconnect policy covers connections that once succeeded,
/// while a failed first connection ends the client's connection task, so that task is started
/// again until it succeeds; from then on it runs (and reconnects) until `quit`.
fn supervise(client: Client, stopped: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let mut last = String::new();
        while !stopped.load(Ordering::Relaxed) {
            match client.connect().await {
                Ok(Err(e)) => {
                    let now = e.to_string();
                    if now != last {
                        tracing::warn!(error = %crate::describe(&e), "valkey connection failed; retrying");
                        last = now;
                    }
                    tokio::time::sleep(INITIAL_RETRY).await;
                }
                // Ended by `quit`, or the task could not run.
                Ok(Ok(())) | Err(_) => return,
            }
        }
    });
}

async fn wait_connected(client: &Client, limit: Duration) {
    let _ = tokio::time::timeout(limit, client.wait_for_connect()).await;
}

/// Every node client, by address.
pub(crate) struct Nodes {
    template: Arc<Template>,
    map: RwLock<HashMap<Addr, Arc<Node>>>,
}

impl Nodes {
    /// How every node client is configured.
    pub fn template(&self) -> &Template {
        &self.template
    }

    /// No node yet.
    pub fn new(template: Template) -> Self {
        Self {
            template: Arc::new(template),
            map: RwLock::default(),
        }
    }

    /// The node at `server`, its clients created (and connecting) on first use.
    pub fn get(&self, server: &Server) -> Result<Arc<Node>, FredError> {
        let key = addr(server);
        if let Some(node) = self.map.read().expect("nodes lock").get(&key) {
            return Ok(node.clone());
        }
        let mut map = self.map.write().expect("nodes lock");
        if let Some(node) = map.get(&key) {
            return Ok(node.clone());
        }
        let node = Arc::new(Node::new(self.template.clone(), server)?);
        map.insert(key, node.clone());
        Ok(node)
    }

    /// The node at `server`, if it has clients.
    pub fn existing(&self, server: &Server) -> Option<Arc<Node>> {
        self.map
            .read()
            .expect("nodes lock")
            .get(&addr(server))
            .cloned()
    }

    /// Every node with clients.
    pub fn all(&self) -> Vec<Arc<Node>> {
        self.map
            .read()
            .expect("nodes lock")
            .values()
            .cloned()
            .collect()
    }

    /// Closes the clients of every node not in `keep`.
    pub async fn retain(&self, keep: &[Server]) {
        let keep: Vec<Addr> = keep.iter().map(addr).collect();
        let gone: Vec<Arc<Node>> = {
            let mut map = self.map.write().expect("nodes lock");
            let gone_keys: Vec<Addr> = map.keys().filter(|k| !keep.contains(k)).cloned().collect();
            gone_keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        for node in gone {
            tracing::info!(node = %format_args!("{}:{}", node.server.host, node.server.port), "valkey node left the topology");
            node.quit().await;
        }
    }

    /// Closes every client.
    pub async fn quit(&self) {
        for node in self.all() {
            node.quit().await;
        }
    }
}
