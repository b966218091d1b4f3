//! Which node serves which hash slot: the table `CLUSTER SLOTS` describes, one entry per shard
//! (its primary and replicas), and the slot-to-shard map the router looks keys up in.

use fred::types::{Value, config::Server};

/// Hash slots in a Valkey cluster.
pub(crate) const SLOTS: usize = 16384;

/// Marks a slot no shard serves.
const UNASSIGNED: u16 = u16::MAX;

/// A node address: host (IP or announced host name) and port.
pub(crate) type Addr = (String, u16);

/// The address of a fred `Server`.
pub(crate) fn addr(server: &Server) -> Addr {
    (server.host.to_string(), server.port)
}

/// One shard: the primary that owns its slots and the replicas that follow it.
#[derive(Debug, Clone)]
pub(crate) struct Shard {
    pub primary: Server,
    pub replicas: Vec<Server>,
}

/// The slot table.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    shards: Vec<Shard>,
    /// Per slot, the index of its shard in `shards`.
    slots: Vec<u16>,
}

impl Table {
    /// A standalone server: one shard owning every slot.
    pub fn single(server: Server) -> Self {
        Self {
            shards: vec![Shard {
                primary: server,
                replicas: Vec::new(),
            }],
            slots: vec![0; SLOTS],
        }
    }

    /// No shard known yet (Valkey not reached since start-up).
    pub fn empty() -> Self {
        Self {
            shards: Vec::new(),
            slots: vec![UNASSIGNED; SLOTS],
        }
    }

    /// The shards.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// The shard serving `slot`, if any.
    pub fn shard(&self, slot: u16) -> Option<(usize, &Shard)> {
        let i = *self.slots.get(slot as usize)?;
        self.shards.get(i as usize).map(|s| (i as usize, s))
    }

    /// Whether two tables route every slot to the same primaries and replicas.
    pub fn same_as(&self, other: &Table) -> bool {
        let key = |t: &Table| -> Vec<(Addr, Vec<Addr>)> {
            t.slots
                .iter()
                .map(|&i| match t.shards.get(i as usize) {
                    Some(s) => (addr(&s.primary), s.replicas.iter().map(addr).collect()),
                    None => ((String::new(), 0), Vec::new()),
                })
                .collect()
        };
        self.slots.len() == other.slots.len() && key(self) == key(other)
    }

    /// Every node the table names, primaries first.
    pub fn nodes(&self) -> Vec<Server> {
        let mut all: Vec<Server> = self.shards.iter().map(|s| s.primary.clone()).collect();
        all.extend(self.shards.iter().flat_map(|s| s.replicas.iter().cloned()));
        all
    }

    /// Parses a `CLUSTER SLOTS` reply. `asked` is the node that answered: its host stands in
    /// where the reply leaves a node's host out. Host names announced in the metadata win over
    /// IP addresses, as in fred (certificates name hosts). `tls_name` is the TLS server name to
    /// verify nodes announced by IP against, where configured (`tls_host_mapping`).
    pub fn parse(reply: Value, asked: &str, tls_name: Option<&str>) -> Result<Self, String> {
        let ranges = match reply {
            Value::Array(ranges) => ranges,
            other => return Err(format!("CLUSTER SLOTS returned {other:?}")),
        };
        let mut table = Table::empty();
        for range in ranges {
            let Value::Array(range) = range else {
                return Err("CLUSTER SLOTS: a range is not an array".into());
            };
            let number = |v: Option<&Value>| {
                v.and_then(Value::as_i64)
                    .filter(|n| (0..SLOTS as i64).contains(n))
                    .map(|n| n as usize)
                    .ok_or_else(|| format!("CLUSTER SLOTS: bad slot number {v:?}"))
            };
            let (start, end) = (number(range.first())?, number(range.get(1))?);
            let mut nodes = range
                .iter()
                .skip(2)
                .filter_map(|n| node(n, asked, tls_name));
            // A primary whose endpoint the answering node does not know (`?`, a node still
            // joining or just failed over): its slots stay unassigned until a later refresh,
            // rather than being routed to a guess.
            if range.get(2).is_some_and(unknown_endpoint) {
                continue;
            }
            let Some(primary) = nodes.next() else {
                return Err("CLUSTER SLOTS: a range without a primary".into());
            };
            let replicas: Vec<Server> = nodes.collect();
            let index = match table
                .shards
                .iter()
                .position(|s| addr(&s.primary) == addr(&primary))
            {
                Some(i) => i,
                None => {
                    table.shards.push(Shard { primary, replicas });
                    table.shards.len() - 1
                }
            };
            for slot in start..=end.max(start) {
                table.slots[slot] = index as u16;
            }
        }
        Ok(table)
    }
}

/// Whether a node block announces `?`: an endpoint the answering node does not know.
fn unknown_endpoint(block: &Value) -> bool {
    matches!(block, Value::Array(fields)
        if fields.first().and_then(Value::as_string).as_deref() == Some("?"))
}

/// One node block of `CLUSTER SLOTS`: `[host | null, port, id, {metadata}]`; `None` for a block
/// without a usable endpoint (`?`).
fn node(block: &Value, asked: &str, tls_name: Option<&str>) -> Option<Server> {
    if unknown_endpoint(block) {
        return None;
    }
    let Value::Array(fields) = block else {
        return None;
    };
    let port = u16::try_from(fields.get(1)?.as_i64()?).ok()?;
    let metadata_hostname = fields.get(3).and_then(|m| {
        let pairs: Vec<(String, String)> = match m {
            Value::Map(map) => map
                .clone()
                .inner()
                .into_iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_string()?)))
                .collect(),
            Value::Array(items) => items
                .chunks(2)
                .filter_map(|kv| Some((kv.first()?.as_string()?, kv.get(1)?.as_string()?)))
                .collect(),
            _ => Vec::new(),
        };
        pairs
            .into_iter()
            .find(|(k, v)| k == "hostname" && !v.is_empty())
            .map(|(_, v)| v)
    });
    let announced = fields
        .first()
        .and_then(Value::as_string)
        .filter(|h| !h.is_empty());
    let host = match (announced, metadata_hostname) {
        (Some(h), Some(name)) if h.parse::<std::net::IpAddr>().is_ok() => name,
        (Some(h), _) => h,
        (None, Some(name)) => name,
        (None, None) => asked.to_owned(),
    };
    let tls = tls_name
        .filter(|_| host.parse::<std::net::IpAddr>().is_ok())
        .map(str::to_owned);
    Some(Server::new_with_tls(host, port, tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(host: Option<&str>, port: i64, hostname: Option<&str>) -> Value {
        let mut fields = vec![
            host.map(Value::from).unwrap_or(Value::Null),
            Value::from(port),
            Value::from("id"),
        ];
        if let Some(name) = hostname {
            fields.push(Value::Array(vec!["hostname".into(), name.into()]));
        }
        Value::Array(fields)
    }

    #[test]
    fn parses_ranges_replicas_and_host_names() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                0.into(),
                5460.into(),
                block(Some("10.0.0.1"), 6379, None),
                block(Some("10.0.0.4"), 6379, None),
            ]),
            Value::Array(vec![
                5461.into(),
                16000.into(),
                block(Some("10.0.0.2"), 6379, Some("b.example")),
            ]),
            Value::Array(vec![100.into(), 100.into(), block(None, 7000, None)]),
            Value::Array(vec![
                16100.into(),
                16200.into(),
                block(Some("?"), 7001, None),
                block(Some("10.0.0.5"), 6379, None),
            ]),
            Value::Array(vec![
                16300.into(),
                16300.into(),
                block(Some("10.0.0.6"), 6379, None),
                block(Some("?"), 7002, None),
            ]),
        ]);
        let table = Table::parse(reply, "seed.example", Some("cache.example")).unwrap();
        assert_eq!(table.shards().len(), 4);
        let (_, a) = table.shard(0).unwrap();
        assert_eq!(addr(&a.primary), ("10.0.0.1".into(), 6379));
        assert_eq!(a.primary.tls_server_name.as_deref(), Some("cache.example"));
        assert_eq!(addr(&a.replicas[0]), ("10.0.0.4".into(), 6379));
        let (_, b) = table.shard(16000).unwrap();
        assert_eq!(addr(&b.primary), ("b.example".into(), 6379));
        assert_eq!(
            b.primary.tls_server_name, None,
            "a host name is verified as itself"
        );
        let (_, c) = table.shard(100).unwrap();
        assert_eq!(addr(&c.primary), ("seed.example".into(), 7000));
        assert!(
            table.shard(16150).is_none(),
            "a primary announced as `?` leaves its slots unassigned"
        );
        let (_, d) = table.shard(16300).unwrap();
        assert_eq!(addr(&d.primary), ("10.0.0.6".into(), 6379));
        assert!(
            d.replicas.is_empty(),
            "a replica announced as `?` is skipped"
        );
        assert!(table.same_as(&table.clone()));
        assert!(!table.same_as(&Table::empty()));
        assert!(Table::empty().shard(5).is_none());
        assert_eq!(Table::single(a.primary.clone()).shard(16383).unwrap().0, 0);
    }
}
