//! The configuration reference: what each key means, beside the defaults of each profile. A test
//! keeps `docs/config/{local,cloud}.toml` (the defaults, serialised) and the table in
//! docs/configuration.md generated from this module and [`Config::defaults`], so the docs cannot
//! drift from the code.

use std::collections::BTreeMap;

use super::{Config, Profile};

/// Every configuration key with what it means, in the order docs/configuration.md lists them.
pub const MEANINGS: &[(&str, &str)] = &[
    (
        "profile",
        "the profile the defaults come from: `--profile` / `VALKEY_SESSIONS_PROFILE` only",
    ),
    ("grpc.listen", "gRPC address (`GRPC_LISTEN`)"),
    (
        "grpc.request_timeout",
        "deadline for requests without `grpc-timeout`",
    ),
    (
        "grpc.concurrency_limit",
        "requests in flight; beyond it RESOURCE_EXHAUSTED",
    ),
    (
        "grpc.caller_concurrency_limit",
        "requests of one caller in flight (anonymous callers share one); beyond it RESOURCE_EXHAUSTED",
    ),
    ("grpc.shutdown_grace", "drain time after SIGTERM/SIGINT"),
    (
        "grpc.keepalive_interval",
        "HTTP/2 PING to idle callers, so vanished callers are closed",
    ),
    (
        "grpc.keepalive_timeout",
        "unanswered keepalive PING time before the connection closes",
    ),
    (
        "grpc.max_concurrent_streams",
        "HTTP/2 streams (RPCs) open at once on one connection",
    ),
    (
        "grpc.max_connection_age",
        "connections closed after this: bounds a revoked token or certificate",
    ),
    (
        "grpc.max_connection_age_grace",
        "time in-flight RPCs get once a connection reached its age",
    ),
    (
        "grpc.reflection",
        "serve gRPC server reflection (grpcurl without proto files)",
    ),
    (
        "grpc.trusted_network",
        "lets `cloud` run without TLS and caller auth (a mesh; loud warning at start-up)",
    ),
    (
        "grpc.tls.cert_file",
        "PEM chain served on the gRPC port (`GRPC_TLS_CERT_FILE`); turns TLS on",
    ),
    ("grpc.tls.key_file", "its PEM key (`GRPC_TLS_KEY_FILE`)"),
    (
        "grpc.tls.client_ca_file",
        "mutual TLS: clients need a certificate from these CAs (`GRPC_TLS_CLIENT_CA_FILE`)",
    ),
    (
        "grpc.tls.reload_interval",
        "how often the three files are checked for a rotation",
    ),
    (
        "auth.required",
        "session RPCs without a caller identity are UNAUTHENTICATED",
    ),
    (
        "auth.tokens_file",
        "bearer-token hashes (`GRPC_AUTH_TOKENS_FILE`), re-read on change",
    ),
    (
        "auth.reload_interval",
        "how often the tokens file is checked",
    ),
    (
        "auth.callers",
        "known identities: `identity`, `tenant`, `methods` (docs/security.md)",
    ),
    (
        "tenants",
        "tenants by name (`[tenants.<name>]`): keys under `<key_prefix><name>:`, optional `limits` and `sessions` overrides",
    ),
    (
        "metrics.listen",
        "Prometheus `GET /metrics` (`METRICS_LISTEN`)",
    ),
    (
        "valkey.url",
        "required in `cloud`; fred URL (`VALKEY_URL`, or `SESSION_HOST` = `rediss-cluster://SESSION_HOST`); more cluster seed nodes with `?node=host:port&node=...` (any node that answers is enough to discover the cluster)",
    ),
    (
        "valkey.ca_file",
        "extra PEM roots (`VALKEY_CA_FILE`); system roots are always trusted",
    ),
    (
        "valkey.read_from",
        "eventual Gets from replicas (`VALKEY_READ_FROM`)",
    ),
    (
        "valkey.tls_host_mapping",
        "`default-host`: verify nodes announced by IP against the URL's host name",
    ),
    ("valkey.require_tls", "refuse `redis://` URLs"),
    (
        "valkey.command_timeout",
        "per command, retries included; a replica read gets a quarter of it before the primary is asked; also the health probe's PING timeout",
    ),
    ("valkey.connect_timeout", "per connection attempt"),
    (
        "valkey.pool_size",
        "pipelined connections per Valkey node (one plain fred client each); raise it only for MiB-sized sessions",
    ),
    ("valkey.key_prefix", "prefix of every key"),
    (
        "valkey.replica_sync_interval",
        "re-read of the cluster topology (`CLUSTER SLOTS`, from any node that answers): new or returning replicas, resharding",
    ),
    (
        "valkey.health_interval",
        "health probe period: every node is PINGed; a shard found down fails fast, with this as the retry hint",
    ),
    (
        "valkey.durability",
        "when writes are acknowledged for requests whose `durability` is unspecified: `primary` (applied by the primary) or `replica` (a replica has it too, WAIT)",
    ),
    (
        "valkey.durability_timeout",
        "how long a durable write waits for a replica before UNAVAILABLE (`NOT_REPLICATED`); must be below `valkey.command_timeout`",
    ),
    (
        "valkey.auth",
        "`password` (URL userinfo or `username` + `password_file`) or `iam` (ElastiCache IAM)",
    ),
    (
        "valkey.username",
        "ACL user (`VALKEY_USERNAME`); the IAM user id with `auth = \"iam\"`",
    ),
    (
        "valkey.password_file",
        "password file (`VALKEY_PASSWORD_FILE`), re-read for every new connection",
    ),
    (
        "valkey.iam.cache_name",
        "cache name signed into the IAM token (required with `iam`)",
    ),
    (
        "valkey.iam.region",
        "region of the cache; unset: `AWS_REGION`",
    ),
    (
        "valkey.iam.serverless",
        "adds `ResourceType=ServerlessCache` (false for node-based clusters)",
    ),
    (
        "valkey.iam.refresh_interval",
        "a new token this often (tokens live 15 min); open connections re-AUTH with it",
    ),
    (
        "sessions.default_idle_timeout",
        "idle timeout when Create gives none",
    ),
    (
        "sessions.max_idle_timeout",
        "largest idle timeout a Create may ask for",
    ),
    (
        "sessions.default_absolute_timeout",
        "cap when Create gives none",
    ),
    (
        "sessions.max_absolute_timeout",
        "largest cap a Create may ask for",
    ),
    (
        "sessions.max_per_principal",
        "live sessions per principal (0 = no limit)",
    ),
    (
        "sessions.on_limit",
        "at the limit: revoke the least recently active session, or `reject` (RESOURCE_EXHAUSTED)",
    ),
    (
        "limits.max_name_bytes",
        "attribute name length (INVALID_ARGUMENT)",
    ),
    (
        "limits.max_value_bytes",
        "attribute value size (INVALID_ARGUMENT)",
    ),
    (
        "limits.max_session_bytes",
        "sum of names and values (RESOURCE_EXHAUSTED)",
    ),
    (
        "limits.max_attributes",
        "attributes per session (RESOURCE_EXHAUSTED)",
    ),
    (
        "limits.max_principal_bytes",
        "principal length (INVALID_ARGUMENT)",
    ),
    (
        "limits.display_attributes",
        "attributes ListSessions may show (others INVALID_ARGUMENT)",
    ),
    (
        "log.format",
        "`LOG_FORMAT`; the level comes from `RUST_LOG`",
    ),
    (
        "near_cache.enabled",
        "eventual Gets from memory, kept coherent by CLIENT TRACKING (`VALKEY_SESSIONS_NEAR_CACHE__ENABLED`); turns itself off where the server refuses tracking",
    ),
    ("near_cache.max_entries", "most sessions held"),
    (
        "near_cache.max_bytes",
        "most bytes of session data held (about)",
    ),
    (
        "runtime.worker_threads",
        "tokio worker threads; 0 is one per CPU",
    ),
    (
        "runtime.lifo_slot",
        "tokio's LIFO slot; off so the Valkey commands of concurrent requests share a socket write (docs/benchmarks.md). Turning it off needs a build with `--cfg tokio_unstable`, which the repository's `.cargo/config.toml` sets; a build without it keeps the slot and logs so once",
    ),
    (
        "secret.file",
        "deployment secrets (principal tags, page tokens), one per line, newest first (`openssl rand -base64 32`); unset, one is made and kept in Valkey. Rotation: docs/security.md",
    ),
    (
        "secret.keys",
        "the same list comma-separated, from the environment (`VALKEY_SESSIONS_SECRET__KEYS`); never logged",
    ),
    (
        "secret.agreement_interval",
        "how often instances register and compare their secrets; one that disagrees refuses principal RPCs and reports NOT_SERVING",
    ),
];

/// The defaults of `profile` as a TOML document.
pub fn defaults_toml(profile: Profile) -> String {
    toml::to_string_pretty(&Config::defaults(profile)).expect("the configuration serialises")
}

/// The defaults of `profile` by dotted key, as the table shows them; an empty table or list is
/// one entry.
pub fn defaults_by_key(profile: Profile) -> BTreeMap<String, String> {
    let value = toml::Value::try_from(Config::defaults(profile)).expect("serialises");
    let mut out = BTreeMap::new();
    flatten("", &value, &mut out);
    out
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(table) if !table.is_empty() => {
            for (k, v) in table {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        toml::Value::String(s) if s.is_empty() => {
            out.insert(prefix.to_owned(), "(empty)".into());
        }
        toml::Value::String(s) => {
            out.insert(prefix.to_owned(), s.clone());
        }
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

/// The markdown table of docs/configuration.md: key, `local` default, `cloud` default, meaning.
pub fn table() -> String {
    let (local, cloud) = (
        defaults_by_key(Profile::Local),
        defaults_by_key(Profile::Cloud),
    );
    let shown = |v: Option<&String>| v.map_or("–".to_owned(), |v| v.replace('|', "\\|"));
    let mut out = String::from("| key | local | cloud | meaning |\n|---|---|---|---|\n");
    for (key, meaning) in MEANINGS {
        out.push_str(&format!(
            "| `{key}` | {} | {} | {meaning} |\n",
            shown(local.get(*key)),
            shown(cloud.get(*key)),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BEGIN: &str = "<!-- generated from src/config/reference.rs: begin -->\n";
    const END: &str = "<!-- generated from src/config/reference.rs: end -->";

    /// `UPDATE_CONFIG_DOCS=1` rewrites the file instead of failing.
    fn check_file(path: &Path, expected: &str) {
        let current = std::fs::read_to_string(path).unwrap_or_default();
        if current == expected {
            return;
        }
        if std::env::var_os("UPDATE_CONFIG_DOCS").is_some() {
            std::fs::write(path, expected).expect("write the generated file");
            return;
        }
        panic!(
            "{} is not what the code says; regenerate it with \
             `UPDATE_CONFIG_DOCS=1 cargo test -p valkey-sessions --lib config::reference`",
            path.display()
        );
    }

    #[test]
    fn every_key_of_the_defaults_has_a_meaning_and_no_meaning_is_twice() {
        let known: Vec<&str> = MEANINGS.iter().map(|(k, _)| *k).collect();
        for profile in [Profile::Local, Profile::Cloud] {
            for key in defaults_by_key(profile).keys() {
                assert!(
                    known.contains(&key.as_str()),
                    "`{key}` has no entry in MEANINGS (src/config/reference.rs)"
                );
            }
        }
        let mut sorted = known.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), known.len(), "a key is listed twice");
    }

    #[test]
    fn the_checked_in_defaults_and_the_docs_table_are_current() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (profile, name) in [(Profile::Local, "local"), (Profile::Cloud, "cloud")] {
            let path = root.join(format!("docs/config/{name}.toml"));
            let expected = format!(
                "# The `{name}` profile's defaults, generated from the code (src/config/reference.rs).\n{}",
                defaults_toml(profile)
            );
            check_file(&path, &expected);
            let parsed: Config = toml::from_str(&expected).expect("the file reads back");
            assert_eq!(
                toml::Value::try_from(parsed).unwrap(),
                toml::Value::try_from(Config::defaults(profile)).unwrap(),
                "{name}.toml deserialises to the defaults"
            );
        }
        let doc = root.join("docs/configuration.md");
        let text = std::fs::read_to_string(&doc).expect("docs/configuration.md");
        let (Some(begin), Some(end)) = (text.find(BEGIN), text.find(END)) else {
            panic!("docs/configuration.md lacks the generated-table markers");
        };
        let expected = format!("{}{BEGIN}{}{}", &text[..begin], table(), &text[end..]);
        check_file(&doc, &expected);
    }
}
