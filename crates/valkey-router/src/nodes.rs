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
    interfaces::ClientLike,
    prelude::{Builder, ReconnectPolicy},
    types::{
        ClusterHash, CustomCommand, RespVersion, Value,
        config::{
            Config, ConnectionConfig, PerformanceConfig, ReplicaConfig, ReplicaFilter, Server,
            ServerConfig,
        },
    },
};
use tokio::sync::{Mutex, OnceCell};

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
    /// A client of its own for writes that wait for a replica (WAIT blocks its connection, so
    /// it must not hold up the shared one), with its supervisor's stop flag; closed when the
    /// node stops being a primary.
    durable: Mutex<Option<(Client, Arc<AtomicBool>)>>,
    /// A client of its own for `ASKING` + command, so nothing comes between them.
    asking: OnceCell<Asking>,
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
        for client in &clients {
            supervise(client.clone(), stopped.clone());
        }
        Ok(Self {
            server: server.clone(),
            clients,
            next: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
            stopped,
            template,
            durable: Mutex::new(None),
            asking: OnceCell::new(),
        })
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
        supervise(client.clone(), stopped.clone());
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
    pub async fn asking(&self) -> Result<&Asking, FredError> {
        self.asking
            .get_or_try_init(|| async {
                let client = self.template.client(&self.server)?;
                supervise(client.clone(), self.stopped.clone());
                wait_connected(&client, self.template.connect_timeout()).await;
                Ok(Asking {
                    client,
                    lock: Mutex::new(()),
                })
            })
            .await
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
        for client in self
            .clients
            .iter()
            .chain(self.asking.get().map(|a| &a.client))
        {
            let _ = client.quit().await;
        }
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
