//! The `valkey` and `near_cache` configuration sections: how the service reaches Valkey and keeps
//! sessions near. Each section has its defaults per profile and checks its own values.

use std::{path::PathBuf, time::Duration};

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use session_core::{SettingError, positive, readable};

/// Where eventual Gets are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// Read replicas where the deployment has them, falling back to the primary.
    Replica,
    /// Always the primary.
    Primary,
}

/// How long a durable write waits for a replica unless configured (`valkey.durability_timeout`).
pub const DEFAULT_DURABILITY_TIMEOUT: Duration = Duration::from_millis(200);

/// When a write is acknowledged, unless the request says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Once the shard's primary has applied it (replication is asynchronous).
    Primary,
    /// Once a replica has it too (WAIT), within `valkey.durability_timeout`.
    Replica,
}

/// How TLS server names are chosen for cluster nodes announced by IP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TlsHostMapping {
    /// Use what the cluster announces.
    None,
    /// Verify every node against the host name of the configured URL.
    DefaultHost,
}

/// The near cache: recently read sessions in memory, invalidated by Valkey (CLIENT TRACKING).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NearCacheConfig {
    /// Serve eventual Gets from memory (off in `local`, on in `cloud`). Turns itself off, with a
    /// log line and `near_cache_enabled` 0, where the server refuses CLIENT TRACKING.
    pub enabled: bool,
    /// Most sessions held.
    pub max_entries: u64,
    /// Most bytes of session data held (about).
    pub max_bytes: u64,
}

/// Valkey connection settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValkeyConfig {
    /// fred URL (`redis://`, `rediss://`, `redis-cluster://`, `rediss-cluster://`).
    pub url: String,
    /// Extra PEM roots.
    pub ca_file: Option<PathBuf>,
    /// Where eventual Gets go.
    pub read_from: ReadFrom,
    /// TLS server names for nodes announced by IP.
    pub tls_host_mapping: TlsHostMapping,
    /// Refuse non-TLS URLs (on by default in the cloud profile).
    pub require_tls: bool,
    /// Timeout of every command, including retries.
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Timeout of establishing one connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Connections per node (one plain fred client each). One is the default: all concurrent
    /// commands share a connection per node and fred pipelines them, which measured 15-35% more
    /// Gets per CPU than two (docs/benchmarks.md); more only helps when very large sessions
    /// would make small commands wait behind them.
    pub pool_size: usize,
    /// Prefix of every key the service writes.
    pub key_prefix: String,
    /// How often the cluster topology is re-read, so replicas that appear or return get reads
    /// again and resharding is seen without waiting for a MOVED.
    #[serde(with = "humantime_serde")]
    pub replica_sync_interval: Duration,
    /// How often the health probe PINGs Valkey.
    #[serde(with = "humantime_serde")]
    pub health_interval: Duration,
    /// When writes are acknowledged for requests that do not say (`durability` field).
    pub durability: Durability,
    /// How long a durable write waits for a replica's acknowledgement before it is answered
    /// UNAVAILABLE (NOT_REPLICATED); below `command_timeout`.
    #[serde(with = "humantime_serde")]
    pub durability_timeout: Duration,
    /// How the service authenticates to Valkey.
    pub auth: ValkeyAuth,
    /// ACL user name (the URL's userinfo is used when unset).
    pub username: Option<String>,
    /// File holding the password, re-read for every new connection (a mounted secret).
    pub password_file: Option<PathBuf>,
    /// ElastiCache IAM authentication settings (`auth = "iam"`).
    pub iam: IamConfig,
}

/// How the service authenticates to Valkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ValkeyAuth {
    /// The URL's userinfo, or `username` and `password_file`; nothing when none is set.
    Password,
    /// ElastiCache IAM: a SigV4-presigned token from the AWS credential chain as the password.
    Iam,
}

/// ElastiCache IAM authentication.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IamConfig {
    /// The cache's name (the replication group id or serverless cache name), signed as the host.
    pub cache_name: String,
    /// AWS region; unset means `AWS_REGION` from the environment.
    pub region: Option<String>,
    /// The cache is ElastiCache Serverless (adds `ResourceType=ServerlessCache` to the token).
    pub serverless: bool,
    /// How often a fresh token is signed; tokens are valid for 15 minutes.
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
}

impl ValkeyConfig {
    /// The `local` profile: one Valkey on loopback without TLS, every read from the primary.
    pub fn local() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            read_from: ReadFrom::Primary,
            require_tls: false,
            ..Self::cloud()
        }
    }

    /// The `cloud` profile: a TLS cluster (the endpoint must be given), eventual reads from
    /// replicas.
    pub fn cloud() -> Self {
        Self {
            url: String::new(),
            ca_file: None,
            read_from: ReadFrom::Replica,
            tls_host_mapping: TlsHostMapping::None,
            require_tls: true,
            command_timeout: Duration::from_millis(1000),
            connect_timeout: Duration::from_millis(2000),
            pool_size: 1,
            key_prefix: "vs:".into(),
            replica_sync_interval: Duration::from_secs(3),
            health_interval: Duration::from_secs(1),
            durability: Durability::Primary,
            durability_timeout: DEFAULT_DURABILITY_TIMEOUT,
            auth: ValkeyAuth::Password,
            username: None,
            password_file: None,
            iam: IamConfig {
                cache_name: String::new(),
                region: None,
                serverless: true,
                refresh_interval: Duration::from_secs(10 * 60),
            },
        }
    }

    /// Checks values that deserialise fine but cannot work.
    pub fn validate(&self) -> Result<(), SettingError> {
        self.validate_url()?;
        if let Some(path) = &self.ca_file
            && !path.is_file()
        {
            return Err(SettingError::invalid(
                "valkey.ca_file",
                format!("{} is not a readable file", path.display()),
            ));
        }
        positive("valkey.command_timeout", self.command_timeout)?;
        positive("valkey.connect_timeout", self.connect_timeout)?;
        positive("valkey.replica_sync_interval", self.replica_sync_interval)?;
        positive("valkey.health_interval", self.health_interval)?;
        positive("valkey.durability_timeout", self.durability_timeout)?;
        if self.durability_timeout >= self.command_timeout {
            return Err(SettingError::invalid(
                "valkey.durability_timeout",
                "must be below valkey.command_timeout, which bounds the WAIT command itself",
            ));
        }
        if self.pool_size == 0 || self.pool_size > 64 {
            return Err(SettingError::invalid(
                "valkey.pool_size",
                "must be between 1 and 64",
            ));
        }
        if self.key_prefix.contains(['{', '}']) {
            return Err(SettingError::invalid(
                "valkey.key_prefix",
                "must not contain braces: the hash tag is the session id",
            ));
        }
        self.validate_auth()
    }

    fn validate_url(&self) -> Result<(), SettingError> {
        let url = &self.url;
        if url.is_empty() {
            return Err(SettingError::invalid(
                "valkey.url",
                "no Valkey endpoint: set SESSION_HOST (cloud) or VALKEY_URL",
            ));
        }
        let scheme = url.split("://").next().unwrap_or_default();
        let tls = match scheme {
            "redis" | "redis-cluster" | "valkey" | "valkey-cluster" => false,
            "rediss" | "rediss-cluster" | "valkeys" | "valkeys-cluster" => true,
            _ => {
                return Err(SettingError::invalid(
                    "valkey.url",
                    format!(
                        "unsupported scheme {scheme:?}: use redis://, rediss://, redis-cluster:// or rediss-cluster://"
                    ),
                ));
            }
        };
        if let Err(e) = fred::types::config::Config::from_url(url) {
            return Err(SettingError::invalid(
                "valkey.url",
                format!("not a valid URL: {e}"),
            ));
        }
        if self.require_tls && !tls {
            return Err(SettingError::invalid(
                "valkey.url",
                "the cloud profile requires TLS (rediss:// or rediss-cluster://); set \
                 VALKEY_SESSIONS_VALKEY__REQUIRE_TLS=false only for a trusted private network",
            ));
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), SettingError> {
        if let Some(path) = &self.password_file {
            readable("valkey.password_file", path)?;
        }
        if self.auth != ValkeyAuth::Iam {
            return Ok(());
        }
        if self.password_file.is_some() {
            return Err(SettingError::invalid(
                "valkey.password_file",
                "not used with valkey.auth = \"iam\": the password is the IAM token",
            ));
        }
        if self.username.as_deref().unwrap_or_default().is_empty() {
            return Err(SettingError::invalid(
                "valkey.username",
                "IAM authentication needs the ElastiCache user id (VALKEY_USERNAME)",
            ));
        }
        if self.iam.cache_name.is_empty() {
            return Err(SettingError::invalid(
                "valkey.iam.cache_name",
                "IAM authentication needs the cache name (VALKEY_SESSIONS_VALKEY__IAM__CACHE_NAME)",
            ));
        }
        positive("valkey.iam.refresh_interval", self.iam.refresh_interval)?;
        if self.iam.refresh_interval > Duration::from_secs(14 * 60) {
            return Err(SettingError::invalid(
                "valkey.iam.refresh_interval",
                "must be under the tokens' 15-minute validity (at most 14m)",
            ));
        }
        Ok(())
    }
}

impl NearCacheConfig {
    /// Off in `local`, where one instance reads its own writes; on in `cloud`.
    pub fn for_profile(enabled: bool) -> Self {
        Self {
            enabled,
            max_entries: 100_000,
            max_bytes: 256 << 20,
        }
    }

    /// Checks that an enabled cache can hold something.
    pub fn validate(&self) -> Result<(), SettingError> {
        if self.enabled && (self.max_entries == 0 || self.max_bytes < 4096) {
            return Err(SettingError::invalid(
                "near_cache.max_entries",
                "the near cache needs max_entries >= 1 and max_bytes >= 4096 (or enabled = false)",
            ));
        }
        Ok(())
    }
}

/// How often instances compare their deployment secrets unless configured.
pub const DEFAULT_AGREEMENT_INTERVAL: Duration = Duration::from_secs(5);

/// Most secrets one instance knows at once (one writing, the rest being rotated out).
pub const MAX_SECRETS: usize = 4;

/// A secret's text from the configuration: never printed.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The deployment secret (`secret`): principal tags and page tokens. Unset, it is made once and
/// kept in Valkey; set, every instance must be given the same list (newest first).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretConfig {
    /// A file of secrets, one per line (32 bytes in base64, `openssl rand -base64 32`), newest
    /// first; `#` comments and blank lines ignored.
    pub file: Option<PathBuf>,
    /// The same list comma-separated, for the environment (`VALKEY_SESSIONS_SECRET__KEYS`).
    pub keys: Option<SecretText>,
    /// How often instances register and compare their secrets.
    #[serde(with = "humantime_serde")]
    pub agreement_interval: Duration,
}

impl Default for SecretConfig {
    fn default() -> Self {
        Self {
            file: None,
            keys: None,
            agreement_interval: DEFAULT_AGREEMENT_INTERVAL,
        }
    }
}

impl SecretConfig {
    /// The configured secrets, newest first; empty when the secret is to live in Valkey.
    pub fn load(&self) -> Result<Vec<crate::Secret>, SettingError> {
        let (key, text) = match (&self.file, &self.keys) {
            (Some(_), Some(_)) => {
                return Err(SettingError::invalid(
                    "secret.keys",
                    "set secret.file or secret.keys, not both",
                ));
            }
            (Some(path), None) => (
                "secret.file",
                std::fs::read_to_string(path).map_err(|e| {
                    SettingError::invalid(
                        "secret.file",
                        format!("{} cannot be read: {e}", path.display()),
                    )
                })?,
            ),
            (None, Some(text)) => ("secret.keys", text.0.clone()),
            (None, None) => return Ok(Vec::new()),
        };
        parse_secrets(key, &text)
    }

    /// Checks the secrets can be read and the interval.
    pub fn validate(&self) -> Result<(), SettingError> {
        positive("secret.agreement_interval", self.agreement_interval)?;
        self.load().map(|_| ())
    }
}

/// Reads a list of secrets (lines or commas), refusing anything but 1..=MAX_SECRETS distinct ones.
fn parse_secrets(key: &'static str, text: &str) -> Result<Vec<crate::Secret>, SettingError> {
    let mut secrets: Vec<crate::Secret> = Vec::new();
    for item in text.split(['\n', ',']).map(str::trim) {
        if item.is_empty() || item.starts_with('#') {
            continue;
        }
        let secret = crate::Secret::parse(item).map_err(|e| {
            SettingError::invalid(key, format!("secret {}: {e}", secrets.len() + 1))
        })?;
        if secrets.contains(&secret) {
            return Err(SettingError::invalid(
                key,
                format!("secret {} is listed twice", secrets.len() + 1),
            ));
        }
        secrets.push(secret);
    }
    if secrets.is_empty() {
        return Err(SettingError::invalid(
            key,
            "holds no secret: list at least one (openssl rand -base64 32)",
        ));
    }
    if secrets.len() > MAX_SECRETS {
        return Err(SettingError::invalid(
            key,
            format!("at most {MAX_SECRETS} secrets (the newest and those being rotated out)"),
        ));
    }
    Ok(secrets)
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    const A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const B: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8";

    #[test]
    fn secrets_are_listed_newest_first_and_refused_with_the_key_named() {
        let listed = parse_secrets("secret.file", &format!("# rotated 2026-12\n{B}\n\n{A}\n"))
            .expect("two secrets");
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0], crate::Secret::parse(B).unwrap());
        assert_eq!(
            parse_secrets("secret.keys", &format!("{A},{B}"))
                .unwrap()
                .len(),
            2
        );
        for (text, says) in [
            ("", "holds no secret"),
            ("# only a comment", "holds no secret"),
            ("c2hvcnQ=", "this one is 5"),
            ("not base64!", "base64"),
            (&format!("{A}\n{A}") as &str, "twice"),
            (&[A; 5].join(","), "listed twice"),
        ] {
            let e = parse_secrets("secret.keys", text).unwrap_err().to_string();
            assert!(
                e.contains("secret.keys") && e.contains(says),
                "{text:?}: {e}"
            );
        }
        let five: Vec<String> = (0..5u8)
            .map(|i| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode([i; 32])
            })
            .collect();
        let e = parse_secrets("secret.keys", &five.join(","))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 4"), "{e}");
    }

    #[test]
    fn configured_secrets_never_print() {
        let config = SecretConfig {
            keys: Some(SecretText(A.into())),
            ..SecretConfig::default()
        };
        assert!(!format!("{config:?}").contains(A));
        assert!(!format!("{:?}", config.load().unwrap()).contains(A));
    }
}
