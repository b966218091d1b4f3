//! Deployments the service is tested against: standalone, a serverless-shaped TLS pair (one
//! shard, primary on P and replica on P+1, like ElastiCache Serverless' 6379/6380) and a
//! 3-shard TLS cluster with one replica per shard.

use std::time::Duration;

use crate::{Service, Tls, Valkey, certs, free_port, wait_until};

/// The shape of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Standalone,
    Serverless,
    /// Serverless-shaped, but nodes announce the host name `localhost` and the certificate names
    /// only that host, as managed endpoints do.
    ServerlessHostnames,
    Cluster,
    /// Serverless-shaped, with the gRPC hop secured: TLS and a bearer token on every call.
    SecuredServerless,
}

/// Running Valkey nodes and how the service reaches them.
pub struct Deployment {
    pub shape: Shape,
    /// All nodes; `primaries[i]` and `replicas[i]` index into it.
    pub nodes: Vec<Valkey>,
    pub primaries: Vec<usize>,
    pub replicas: Vec<usize>,
    pub tls: Option<Tls>,
    _certs: Option<tempfile::TempDir>,
    /// The gRPC hop's TLS and tokens, for [`Shape::SecuredServerless`].
    pub secured: Option<super::secure::Secured>,
}

impl Deployment {
    /// Starts a deployment of the given shape and waits until it is fully formed.
    pub fn start(shape: Shape) -> Self {
        match shape {
            Shape::Standalone => Self {
                shape,
                nodes: vec![Valkey::standalone()],
                primaries: vec![0],
                replicas: vec![],
                tls: None,
                _certs: None,
                secured: None,
            },
            Shape::Serverless | Shape::ServerlessHostnames => Self::cluster(shape, 1),
            Shape::SecuredServerless => Self {
                secured: Some(super::secure::Secured::new(&[], "")),
                ..Self::cluster(shape, 1)
            },
            Shape::Cluster => Self::cluster(shape, 3),
        }
    }

    /// The 3-shard cluster with extra `valkey-server` arguments on every node (e.g.
    /// `--cluster-require-full-coverage no`).
    pub fn cluster_with(extra: &[&str]) -> Self {
        Self::cluster_of(Shape::Cluster, 3, extra)
    }

    fn cluster(shape: Shape, shards: usize) -> Self {
        Self::cluster_of(shape, shards, &[])
    }

    /// Over 80 lines on purpose: the cluster is built in the order Valkey needs (certificates,
    /// nodes, slots, meet, replicate, cluster_state:ok, replicas listed), one step after another.
    fn cluster_of(shape: Shape, shards: usize, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let hostnames = shape == Shape::ServerlessHostnames;
        let tls = certs::generate(dir.path(), !hostnames);
        let mut nodes = Vec::new();
        if shards == 1 {
            // Primary on P, replica on P+1: the ElastiCache Serverless port pair.
            // Another process (or this pair's own bus port) may take a port between the
            // choice and the bind: choose again.
            let (primary, replica) = (0..10)
                .find_map(|_| {
                    let (p, r) = adjacent_ports();
                    let primary = cluster_node_on(p, &tls, hostnames, extra)?;
                    let replica = cluster_node_on(r, &tls, hostnames, extra)?;
                    Some((primary, replica))
                })
                .expect("two adjacent free ports for the serverless pair");
            nodes.push(primary);
            nodes.push(replica);
        } else {
            for _ in 0..2 * shards {
                nodes.push(cluster_node(&tls, extra));
            }
        }
        let primaries: Vec<usize> = (0..shards).collect();
        let replicas: Vec<usize> = (shards..2 * shards).collect();

        let per = 16384 / shards;
        for (i, &p) in primaries.iter().enumerate() {
            let first = i * per;
            let last = if i + 1 == shards {
                16383
            } else {
                first + per - 1
            };
            ok(
                &nodes[p],
                &[
                    "CLUSTER",
                    "ADDSLOTSRANGE",
                    &first.to_string(),
                    &last.to_string(),
                ],
            );
        }
        let first = nodes[0].port.to_string();
        for node in &nodes[1..] {
            ok(
                node,
                &[
                    "CLUSTER",
                    "MEET",
                    "127.0.0.1",
                    &first,
                    &bus_port(&nodes[0]).to_string(),
                ],
            );
        }
        wait_until("all nodes to meet", Duration::from_secs(20), || {
            nodes
                .iter()
                .all(|n| n.cli(&["CLUSTER", "NODES"]).lines().count() == nodes.len())
        });
        for (i, &r) in replicas.iter().enumerate() {
            let primary_id = nodes[primaries[i]]
                .cli(&["CLUSTER", "MYID"])
                .trim()
                .to_string();
            wait_until(
                "replica to learn its primary",
                Duration::from_secs(10),
                || nodes[r].cli(&["CLUSTER", "REPLICATE", &primary_id]).trim() == "OK",
            );
        }
        wait_until(
            "cluster_state:ok everywhere",
            Duration::from_secs(30),
            || {
                nodes
                    .iter()
                    .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
            },
        );
        let deployment = Self {
            shape,
            nodes,
            primaries,
            replicas,
            tls: Some(tls),
            _certs: Some(dir),
            secured: None,
        };
        deployment.wait_for_replicas();
        deployment
    }

    /// `CLUSTER SLOTS` omits replicas whose replication offset is still 0: write to every shard
    /// and wait until each replica is listed, so clients discover them.
    pub fn wait_for_replicas(&self) {
        for (i, &p) in self.primaries.iter().enumerate() {
            let node = &self.nodes[p];
            // A key whose slot this primary owns: try tags until one lands there.
            let key = (0..10_000)
                .map(|n| format!("warmup:{{{n}}}"))
                .find(|k| node.cli(&["SET", k, "1"]).trim() == "OK")
                .expect("a key for this shard");
            let replica_port = self.nodes[self.replicas[i]].port.to_string();
            wait_until(
                "replica listed in CLUSTER SLOTS",
                Duration::from_secs(30),
                || {
                    node.cli(&["CLUSTER", "SLOTS"])
                        .lines()
                        .any(|l| l.trim() == replica_port)
                },
            );
            node.cli(&["DEL", &key]);
        }
    }

    /// The URL the service connects with.
    pub fn url(&self) -> String {
        let first = &self.nodes[self.primaries[0]];
        match self.shape {
            Shape::Standalone => first.url(),
            Shape::ServerlessHostnames => format!("rediss-cluster://localhost:{}", first.port),
            _ => format!("rediss-cluster://127.0.0.1:{}", first.port),
        }
    }

    /// Environment for the service: the cloud profile for the clusters.
    pub fn service_env(&self) -> Vec<(String, String)> {
        let mut env = vec![("VALKEY_URL".to_string(), self.url())];
        if let Some(tls) = &self.tls {
            env.push(("VALKEY_SESSIONS_PROFILE".into(), "cloud".into()));
            // Loopback: the gRPC hop's own TLS and auth are tested in tests/security.rs.
            env.push((
                "VALKEY_SESSIONS_GRPC__TRUSTED_NETWORK".into(),
                "true".into(),
            ));
            // Where reads go is what most tests check: the near cache has its own tests.
            env.push(("VALKEY_SESSIONS_NEAR_CACHE__ENABLED".into(), "false".into()));
            env.push(("VALKEY_CA_FILE".into(), tls.ca.display().to_string()));
            env.push(("VALKEY_READ_FROM".into(), "replica".into()));
        }
        env
    }

    /// Starts the service against this deployment, with extra environment.
    pub fn start_service(&self, extra: &[(&str, &str)]) -> Service {
        let mut env = self.service_env();
        if self.secured.is_some() {
            // Secured: the gRPC hop has TLS and tokens, the trusted-network escape is not used.
            env.retain(|(k, _)| k != "VALKEY_SESSIONS_GRPC__TRUSTED_NETWORK");
        }
        let mut all: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.extend_from_slice(extra);
        match &self.secured {
            Some(secured) => Service::start_secured(&self.url(), secured, &all),
            None => Service::start(&self.url(), &all),
        }
    }

    /// Sum of one command's calls over every node.
    pub fn calls(&self, command: &str) -> u64 {
        self.nodes.iter().map(|n| n.calls(command)).sum()
    }

    /// Every key on every primary, with the primary that holds it.
    pub fn keys(&self) -> Vec<(&Valkey, String)> {
        self.primaries
            .iter()
            .flat_map(|&p| {
                let node = &self.nodes[p];
                node.cli(&["KEYS", "*"])
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(|k| (node, k.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Keys held by the primaries.
    pub fn dbsize(&self) -> u64 {
        self.primaries
            .iter()
            .map(|&p| {
                self.nodes[p]
                    .cli(&["DBSIZE"])
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0)
            })
            .sum()
    }

    /// The node of `primaries[i]`.
    pub fn primary(&self, i: usize) -> &Valkey {
        &self.nodes[self.primaries[i]]
    }

    /// The node of `replicas[i]`.
    pub fn replica(&self, i: usize) -> &Valkey {
        &self.nodes[self.replicas[i]]
    }
}

/// A TLS cluster node on a free port.
fn cluster_node(tls: &Tls, more: &[&str]) -> Valkey {
    Valkey::start_with(cluster_args(free_port(), false, more), Some(tls.clone()))
}

/// The arguments of a TLS cluster node whose bus listens on `bus`.
fn cluster_args(bus: u16, hostnames: bool, more: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--cluster-enabled".into(),
        "yes".into(),
        "--cluster-config-file".into(),
        "nodes.conf".into(),
        "--cluster-node-timeout".into(),
        "2000".into(),
        "--cluster-port".into(),
        bus.to_string(),
        "--tls-cluster".into(),
        "yes".into(),
        "--tls-replication".into(),
        "yes".into(),
        "--cluster-replica-validity-factor".into(),
        "0".into(),
    ];
    if hostnames {
        args.extend([
            "--cluster-announce-hostname".into(),
            "localhost".into(),
            "--cluster-preferred-endpoint-type".into(),
            "hostname".into(),
        ]);
    }
    args.extend(more.iter().map(|a| a.to_string()));
    args
}

/// A cluster node on `port`; `None` if the port (or the bus port chosen for it) was taken.
fn cluster_node_on(port: u16, tls: &Tls, hostnames: bool, more: &[&str]) -> Option<Valkey> {
    let bus = std::iter::repeat_with(free_port)
        .find(|&b| b.abs_diff(port) > 1)
        .expect("a free port");
    Valkey::start_on(port, cluster_args(bus, hostnames, more), Some(tls.clone()))
}

fn bus_port(node: &Valkey) -> u16 {
    node.arg("--cluster-port")
        .and_then(|p| p.parse().ok())
        .expect("bus port")
}

/// Two free ports P and P+1.
fn adjacent_ports() -> (u16, u16) {
    for _ in 0..100 {
        let p = free_port();
        if p < 65535 && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return (p, p + 1);
        }
    }
    panic!("no adjacent free ports");
}

fn ok(node: &Valkey, args: &[&str]) {
    let out = node.cli(args);
    assert_eq!(out.trim(), "OK", "{args:?} on port {}: {out}", node.port);
}
