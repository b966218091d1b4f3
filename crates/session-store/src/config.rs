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
