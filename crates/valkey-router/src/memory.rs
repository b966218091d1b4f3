//! What each node says about its memory and evictions (`INFO memory stats`), exported per node
//! by the probe: at its limit a node refuses writes (`noeviction`) or evicts keys, and every
//! evicted session is a user logged out.

use std::time::Duration;

use fred::{
    interfaces::ClientLike,
    types::{ClusterHash, CustomCommand},
};

use crate::nodes::Node;

/// The fields of `INFO memory stats` the probe exports.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct MemoryInfo {
    used: Option<u64>,
    max: Option<u64>,
    policy: Option<String>,
    evicted: Option<u64>,
    expired: Option<u64>,
}

impl MemoryInfo {
    /// Reads the fields from an INFO reply; fields a server does not report stay unset.
    fn parse(reply: &str) -> Self {
        let mut info = Self::default();
        for line in reply.lines() {
            let Some((key, value)) = line.trim().split_once(':') else {
                continue;
            };
            let number = || value.parse::<u64>().ok();
            match key {
                "used_memory" => info.used = number(),
                "maxmemory" => info.max = number(),
                "maxmemory_policy" => info.policy = Some(value.to_owned()),
                "evicted_keys" => info.evicted = number(),
                "expired_keys" => info.expired = number(),
                _ => {}
            }
        }
        info
    }

    /// Exports the fields under `node`; `last_policy` is the policy exported before for this
    /// node, whose series turns 0 when the policy changes (one series at 1 per node).
    fn export(&self, node: &str, last_policy: &std::sync::Mutex<Option<String>>) {
        let node = node.to_owned();
        if let Some(used) = self.used {
            metrics::gauge!("valkey_memory_used_bytes", "node" => node.clone()).set(used as f64);
        }
        if let Some(max) = self.max {
            metrics::gauge!("valkey_memory_max_bytes", "node" => node.clone()).set(max as f64);
        }
        if let Some(policy) = &self.policy {
            let mut last = last_policy.lock().expect("policy lock");
            if let Some(old) = last.as_ref().filter(|old| *old != policy) {
                metrics::gauge!("valkey_maxmemory_policy", "node" => node.clone(), "policy" => old.clone())
                    .set(0.0);
            }
            metrics::gauge!("valkey_maxmemory_policy", "node" => node.clone(), "policy" => policy.clone())
                .set(1.0);
            *last = Some(policy.clone());
        }
        if let Some(evicted) = self.evicted {
            metrics::counter!("valkey_evicted_keys_total", "node" => node.clone())
                .absolute(evicted);
        }
        if let Some(expired) = self.expired {
            metrics::counter!("valkey_expired_keys_total", "node" => node).absolute(expired);
        }
    }
}

/// Asks `node` for its memory and eviction counters and exports them; a node that does not
/// answer in `limit`, or refuses INFO (managed services restrict it), exports nothing.
pub(crate) async fn record(node: &Node, limit: Duration) {
    let command = CustomCommand::new_static("INFO", ClusterHash::Random, false);
    let asked = node
        .client()
        .custom::<String, &str>(command, vec!["memory", "stats"]);
    match tokio::time::timeout(limit, asked).await {
        Ok(Ok(reply)) => {
            let label = format!("{}:{}", node.server.host, node.server.port);
            MemoryInfo::parse(&reply).export(&label, &node.memory_policy)
        }
        Ok(Err(e)) => tracing::debug!(error = %e, "INFO memory stats refused"),
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_it_exports_and_ignores_the_rest() {
        let reply = "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n\
                     maxmemory:8388608\r\nmaxmemory_policy:volatile-lru\r\n\r\n# Stats\r\n\
                     expired_keys:12\r\nevicted_keys:1300\r\nevicted_clients:0\r\n";
        assert_eq!(
            MemoryInfo::parse(reply),
            MemoryInfo {
                used: Some(1_048_576),
                max: Some(8_388_608),
                policy: Some("volatile-lru".into()),
                evicted: Some(1300),
                expired: Some(12),
            }
        );
        assert_eq!(MemoryInfo::parse("# Memory\r\n"), MemoryInfo::default());
    }
}
