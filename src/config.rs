//! Typed configuration: profile defaults, then an optional TOML file, then environment and flags;
//! validated once at start-up with errors that name the offending key.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};
use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

use crate::session::Limits;

/// Deployment profile: decides the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// One local Valkey without TLS; listens on loopback.
    #[default]
    Local,
    /// A TLS cluster (e.g. ElastiCache Serverless); listens on all interfaces, JSON logs.
    Cloud,
}

/// Where eventual Gets are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// Read replicas where the deployment has them, falling back to the primary.
    Replica,
    /// Always the primary.
    Primary,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
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

/// Command line; every flag can also be set through the environment variable it names.
#[derive(Debug, Parser, Default)]
#[command(
    name = "valkey-sessions",
    version,
    about = "gRPC session service backed by Valkey",
    after_help = "Every setting can also come from a TOML file (--config) or from an environment \
variable VALKEY_SESSIONS_<SECTION>__<KEY>, e.g. VALKEY_SESSIONS_LIMITS__MAX_VALUE_BYTES=65536 or \
VALKEY_SESSIONS_SESSIONS__DEFAULT_IDLE_TIMEOUT=1h. Sections and keys: see docs/configuration.md. \
Precedence: profile defaults < file < VALKEY_SESSIONS_* < the flags and variables above."
)]
pub struct Cli {
    /// Deployment profile.
    #[arg(long, env = "VALKEY_SESSIONS_PROFILE", value_enum, default_value_t = Profile::Local)]
    pub profile: Profile,
    /// Optional TOML configuration file.
    #[arg(long, env = "VALKEY_SESSIONS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Valkey URL: redis://, rediss://, redis-cluster:// or rediss-cluster://host:port.
    #[arg(long, env = "VALKEY_URL")]
    pub valkey_url: Option<String>,
    /// Cache endpoint with its port, as ElastiCache shows it; means rediss-cluster://SESSION_HOST.
    #[arg(long, env = "SESSION_HOST")]
    pub session_host: Option<String>,
    /// Extra PEM file of CA certificates trusted for Valkey TLS, besides the system roots.
    #[arg(long, env = "VALKEY_CA_FILE")]
    pub valkey_ca_file: Option<PathBuf>,
    /// Where eventual Gets are read from [default: replica in cloud, primary in local].
    #[arg(long, env = "VALKEY_READ_FROM", value_enum)]
    pub valkey_read_from: Option<ReadFrom>,
    /// gRPC listen address [default: 127.0.0.1:50051 in local, 0.0.0.0:50051 in cloud].
    #[arg(long, env = "GRPC_LISTEN")]
    pub grpc_listen: Option<SocketAddr>,
    /// Prometheus listen address for GET /metrics [default: 127.0.0.1:9090 in local, 0.0.0.0:9090 in cloud].
    #[arg(long, env = "METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log format [default: text in local, json in cloud]; the level comes from RUST_LOG.
    #[arg(long, env = "LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// PEM certificate chain served on the gRPC port (turns TLS on; re-read when it changes).
    #[arg(long, env = "GRPC_TLS_CERT_FILE")]
    pub grpc_tls_cert_file: Option<PathBuf>,
    /// PEM private key of that certificate.
    #[arg(long, env = "GRPC_TLS_KEY_FILE")]
    pub grpc_tls_key_file: Option<PathBuf>,
    /// PEM CA certificates for mutual TLS: clients without a certificate from them are refused.
    #[arg(long, env = "GRPC_TLS_CLIENT_CA_FILE")]
    pub grpc_tls_client_ca_file: Option<PathBuf>,
    /// TOML file of bearer-token hashes (`[[token]] identity = "...", sha256 = "<hex>"`).
    #[arg(long, env = "GRPC_AUTH_TOKENS_FILE")]
    pub grpc_auth_tokens_file: Option<PathBuf>,
    /// Valkey ACL user name (also the IAM user id with `valkey.auth = "iam"`).
    #[arg(long, env = "VALKEY_USERNAME")]
    pub valkey_username: Option<String>,
    /// File holding the Valkey password, re-read for every new connection.
    #[arg(long, env = "VALKEY_PASSWORD_FILE")]
    pub valkey_password_file: Option<PathBuf>,
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The profile the defaults came from.
    pub profile: Profile,
    /// The gRPC server.
    pub grpc: GrpcConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// The Valkey connection.
    pub valkey: ValkeyConfig,
    /// Session lifetimes.
    pub sessions: SessionConfig,
    /// Size and count limits.
    pub limits: Limits,
    /// Logging.
    pub log: LogConfig,
    /// Caller authentication and authorisation.
    pub auth: AuthConfig,
    /// Tenants by name: each has its own key prefix and may override `limits` and `sessions`.
    pub tenants: BTreeMap<String, TenantConfig>,
    /// The coherent in-memory cache of eventual Gets.
    pub near_cache: NearCacheConfig,
    /// The async runtime the service runs on.
    pub runtime: RuntimeConfig,
}

/// The tokio runtime.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Worker threads; 0 means one per CPU.
    pub worker_threads: usize,
    /// tokio's LIFO slot: a task woken by the running task runs next on the same worker. Off by
    /// default: with it, fred's connection task ran right after each request queued its command
    /// and flushed one command per write; without it, the commands of concurrent requests share a
    /// write (docs/benchmarks.md, issue 16). Only a build with `--cfg tokio_unstable` (the
    /// repository's `.cargo/config.toml`) can turn the slot off; other builds keep it.
    pub lifo_slot: bool,
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

/// gRPC server settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Deadline for requests that carry no `grpc-timeout` of their own.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Requests served at once; more are refused with RESOURCE_EXHAUSTED.
    pub concurrency_limit: usize,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Serve gRPC server reflection (on in `local`, off by default in `cloud`).
    pub reflection: bool,
    /// Declares the network trusted: lets the `cloud` profile run without TLS and without caller
    /// authentication. Logged loudly at start-up.
    pub trusted_network: bool,
    /// TLS on the gRPC port.
    pub tls: GrpcTlsConfig,
}

/// TLS of the gRPC port; on when `cert_file` and `key_file` are set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcTlsConfig {
    /// PEM certificate chain.
    pub cert_file: Option<PathBuf>,
    /// PEM private key.
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
    /// How often the files are checked for changes (rotation without restart).
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl GrpcTlsConfig {
    /// Whether the gRPC port speaks TLS.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }
}

/// Who may call the session API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Refuse session RPCs without a caller identity (UNAUTHENTICATED).
    pub required: bool,
    /// Bearer-token hashes; re-read when the file changes.
    pub tokens_file: Option<PathBuf>,
    /// How often the tokens file is checked for changes.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Known callers: identity, tenant and the RPCs each may call.
    pub callers: Vec<CallerConfig>,
}

/// One known caller.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerConfig {
    /// The identity: a client certificate's URI or DNS SAN, or a token's `identity`.
    pub identity: String,
    /// The caller's tenant; unset means the default tenant (the keys of a single-tenant set-up).
    #[serde(default)]
    pub tenant: Option<String>,
    /// RPC names the caller may use (`Get`, `Put`, ...), or `*` for all.
    #[serde(default = "all_methods")]
    pub methods: Vec<String>,
}

fn all_methods() -> Vec<String> {
    vec!["*".into()]
}

/// A tenant: its sessions live under `<valkey.key_prefix><name>:`; `limits` and `sessions` keys
/// given here replace the global ones for this tenant only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantConfig {
    /// Overrides of `limits` keys.
    pub limits: serde_json::Map<String, serde_json::Value>,
    /// Overrides of `sessions` keys.
    pub sessions: serde_json::Map<String, serde_json::Value>,
}

/// Metrics endpoint settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Listen address of `GET /metrics`.
    pub listen: SocketAddr,
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

/// Session lifetime settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Idle timeout when a Create gives none (Spring Session's default is 30 minutes).
    #[serde(with = "humantime_serde")]
    pub default_idle_timeout: Duration,
    /// Longest idle timeout a Create may ask for.
    #[serde(with = "humantime_serde")]
    pub max_idle_timeout: Duration,
    /// Absolute lifetime when a Create gives none; unset means no cap.
    #[serde(with = "humantime_serde", default)]
    pub default_absolute_timeout: Option<Duration>,
    /// Longest absolute lifetime a Create may ask for.
    #[serde(with = "humantime_serde")]
    pub max_absolute_timeout: Duration,
    /// Live sessions one principal may have; 0 means no limit.
    #[serde(default)]
    pub max_per_principal: usize,
    /// What a login beyond `max_per_principal` does.
    #[serde(default)]
    pub on_limit: OnLimit,
}

/// What happens when a principal would exceed `sessions.max_per_principal`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnLimit {
    /// The least recently active session of the principal is revoked (Spring Security's default).
    #[default]
    RevokeOldest,
    /// The new session is refused with RESOURCE_EXHAUSTED.
    Reject,
}

/// Logging settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
}

/// A configuration problem, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The sources could not be read or deserialised.
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A tenant's or caller's entry is not acceptable.
    #[error("configuration `{key}`: {problem}")]
    Entry {
        /// Dotted key, e.g. `tenants.shop.limits`.
        key: String,
        /// What is wrong and what would be right.
        problem: String,
    },
    /// A value was read but is not acceptable.
    #[error("configuration key `{key}`: {problem}")]
    Invalid {
        /// Dotted key, e.g. `valkey.url`.
        key: &'static str,
        /// What is wrong and what would be right.
        problem: String,
    },
}

impl Config {
    /// The defaults of a profile.
    pub fn defaults(profile: Profile) -> Self {
        let cloud = profile == Profile::Cloud;
        let host = if cloud { "0.0.0.0" } else { "127.0.0.1" };
        Self {
            profile,
            grpc: GrpcConfig {
                listen: format!("{host}:50051").parse().expect("valid address"),
                request_timeout: Duration::from_secs(5),
                concurrency_limit: 1024,
                shutdown_grace: Duration::from_secs(10),
                reflection: !cloud,
                trusted_network: false,
                tls: GrpcTlsConfig {
                    reload_interval: Duration::from_secs(5),
                    ..GrpcTlsConfig::default()
                },
            },
            metrics: MetricsConfig {
                listen: format!("{host}:9090").parse().expect("valid address"),
            },
            valkey: ValkeyConfig {
                url: if cloud {
                    String::new()
                } else {
                    "redis://127.0.0.1:6379".into()
                },
                ca_file: None,
                read_from: if cloud {
                    ReadFrom::Replica
                } else {
                    ReadFrom::Primary
                },
                tls_host_mapping: TlsHostMapping::None,
                require_tls: cloud,
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
            },
            sessions: SessionConfig {
                default_idle_timeout: Duration::from_secs(30 * 60),
                max_idle_timeout: Duration::from_secs(24 * 3600),
                default_absolute_timeout: None,
                max_absolute_timeout: Duration::from_secs(30 * 24 * 3600),
                max_per_principal: 0,
                on_limit: OnLimit::RevokeOldest,
            },
            limits: Limits::default(),
            log: LogConfig {
                format: if cloud {
                    LogFormat::Json
                } else {
                    LogFormat::Text
                },
            },
            auth: AuthConfig {
                required: false,
                tokens_file: None,
                reload_interval: Duration::from_secs(2),
                callers: Vec::new(),
            },
            tenants: BTreeMap::new(),
            near_cache: NearCacheConfig {
                enabled: cloud,
                max_entries: 100_000,
                max_bytes: 256 << 20,
            },
            runtime: RuntimeConfig {
                worker_threads: 0,
                lifo_slot: false,
            },
        }
    }

    /// Loads and validates the configuration from the command line, environment and file.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Self::defaults(cli.profile)));
        if let Some(path) = &cli.config {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(
            Env::prefixed("VALKEY_SESSIONS_")
                .split("__")
                .ignore(&["profile", "config"]),
        );
        let mut config: Config = figment.extract().map_err(Box::new)?;
        config.profile = cli.profile;
        config.apply_cli(cli)?;
        config.validate()?;
        Ok(config)
    }

    fn apply_cli(&mut self, cli: &Cli) -> Result<(), ConfigError> {
        match (&cli.valkey_url, &cli.session_host) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "valkey.url",
                    "set VALKEY_URL or SESSION_HOST, not both",
                ));
            }
            (Some(url), None) => self.valkey.url = url.clone(),
            (None, Some(host)) => self.valkey.url = format!("rediss-cluster://{host}"),
            (None, None) => {}
        }
        if let Some(path) = &cli.valkey_ca_file {
            self.valkey.ca_file = Some(path.clone());
        }
        if let Some(read_from) = cli.valkey_read_from {
            self.valkey.read_from = read_from;
        }
        if let Some(listen) = cli.grpc_listen {
            self.grpc.listen = listen;
        }
        if let Some(listen) = cli.metrics_listen {
            self.metrics.listen = listen;
        }
        if let Some(format) = cli.log_format {
            self.log.format = format;
        }
        let tls = &mut self.grpc.tls;
        for (flag, field) in [
            (&cli.grpc_tls_cert_file, &mut tls.cert_file),
            (&cli.grpc_tls_key_file, &mut tls.key_file),
            (&cli.grpc_tls_client_ca_file, &mut tls.client_ca_file),
            (&cli.grpc_auth_tokens_file, &mut self.auth.tokens_file),
            (&cli.valkey_password_file, &mut self.valkey.password_file),
        ] {
            if let Some(path) = flag {
                *field = Some(path.clone());
            }
        }
        if let Some(user) = &cli.valkey_username {
            self.valkey.username = Some(user.clone());
        }
        Ok(())
    }

    /// Checks values that deserialise fine but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = &self.valkey.url;
        if url.is_empty() {
            return Err(invalid(
                "valkey.url",
                "no Valkey endpoint: set SESSION_HOST (cloud) or VALKEY_URL",
            ));
        }
        let scheme = url.split("://").next().unwrap_or_default();
        let tls = match scheme {
            "redis" | "redis-cluster" | "valkey" | "valkey-cluster" => false,
            "rediss" | "rediss-cluster" | "valkeys" | "valkeys-cluster" => true,
            _ => {
                return Err(invalid(
                    "valkey.url",
                    format!(
                        "unsupported scheme {scheme:?}: use redis://, rediss://, redis-cluster:// or rediss-cluster://"
                    ),
                ));
            }
        };
        if let Err(e) = fred::types::config::Config::from_url(url) {
            return Err(invalid("valkey.url", format!("not a valid URL: {e}")));
        }
        if self.valkey.require_tls && !tls {
            return Err(invalid(
                "valkey.url",
                "the cloud profile requires TLS (rediss:// or rediss-cluster://); set \
                 VALKEY_SESSIONS_VALKEY__REQUIRE_TLS=false only for a trusted private network",
            ));
        }
        if let Some(path) = &self.valkey.ca_file {
            if !path.is_file() {
                return Err(invalid(
                    "valkey.ca_file",
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
        positive("valkey.command_timeout", self.valkey.command_timeout)?;
        positive("valkey.connect_timeout", self.valkey.connect_timeout)?;
        positive(
            "valkey.replica_sync_interval",
            self.valkey.replica_sync_interval,
        )?;
        positive("valkey.health_interval", self.valkey.health_interval)?;
        positive("valkey.durability_timeout", self.valkey.durability_timeout)?;
        if self.valkey.durability_timeout >= self.valkey.command_timeout {
            return Err(invalid(
                "valkey.durability_timeout",
                "must be below valkey.command_timeout, which bounds the WAIT command itself",
            ));
        }
        positive("grpc.request_timeout", self.grpc.request_timeout)?;
        if self.valkey.pool_size == 0 || self.valkey.pool_size > 64 {
            return Err(invalid("valkey.pool_size", "must be between 1 and 64"));
        }
        if self.valkey.key_prefix.contains(['{', '}']) {
            return Err(invalid(
                "valkey.key_prefix",
                "must not contain braces: the hash tag is the session id",
            ));
        }
        if self.grpc.concurrency_limit == 0 {
            return Err(invalid("grpc.concurrency_limit", "must be at least 1"));
        }
        if self.near_cache.enabled
            && (self.near_cache.max_entries == 0 || self.near_cache.max_bytes < 4096)
        {
            return Err(invalid(
                "near_cache.max_entries",
                "the near cache needs max_entries >= 1 and max_bytes >= 4096 (or enabled = false)",
            ));
        }
        self.validate_valkey_auth()?;
        self.validate_grpc_security()?;
        crate::tenant::Tenants::from_config(self)?;
        check_lifetimes_and_limits(&self.sessions, &self.limits)?;
        Ok(())
    }

    fn validate_valkey_auth(&self) -> Result<(), ConfigError> {
        let v = &self.valkey;
        if let Some(path) = &v.password_file {
            readable("valkey.password_file", path)?;
        }
        if v.auth == ValkeyAuth::Iam {
            if v.password_file.is_some() {
                return Err(invalid(
                    "valkey.password_file",
                    "not used with valkey.auth = \"iam\": the password is the IAM token",
                ));
            }
            if v.username.as_deref().unwrap_or_default().is_empty() {
                return Err(invalid(
                    "valkey.username",
                    "IAM authentication needs the ElastiCache user id (VALKEY_USERNAME)",
                ));
            }
            if v.iam.cache_name.is_empty() {
                return Err(invalid(
                    "valkey.iam.cache_name",
                    "IAM authentication needs the cache name (VALKEY_SESSIONS_VALKEY__IAM__CACHE_NAME)",
                ));
            }
            positive("valkey.iam.refresh_interval", v.iam.refresh_interval)?;
            if v.iam.refresh_interval > Duration::from_secs(14 * 60) {
                return Err(invalid(
                    "valkey.iam.refresh_interval",
                    "must be under the tokens' 15-minute validity (at most 14m)",
                ));
            }
        }
        Ok(())
    }

    fn validate_grpc_security(&self) -> Result<(), ConfigError> {
        let tls = &self.grpc.tls;
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => {
                readable("grpc.tls.cert_file", cert)?;
                readable("grpc.tls.key_file", key)?;
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(invalid(
                    "grpc.tls.key_file",
                    "GRPC_TLS_CERT_FILE is set but GRPC_TLS_KEY_FILE is not",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "grpc.tls.cert_file",
                    "GRPC_TLS_KEY_FILE is set but GRPC_TLS_CERT_FILE is not",
                ));
            }
        }
        if let Some(ca) = &tls.client_ca_file {
            if !tls.enabled() {
                return Err(invalid(
                    "grpc.tls.client_ca_file",
                    "mutual TLS needs server TLS: set GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE",
                ));
            }
            readable("grpc.tls.client_ca_file", ca)?;
        }
        positive("grpc.tls.reload_interval", tls.reload_interval)?;
        positive("auth.reload_interval", self.auth.reload_interval)?;
        if let Some(tokens) = &self.auth.tokens_file {
            readable("auth.tokens_file", tokens)?;
        }
        if self.auth.required && self.auth.tokens_file.is_none() && tls.client_ca_file.is_none() {
            return Err(invalid(
                "auth.required",
                "no way to authenticate callers: set GRPC_AUTH_TOKENS_FILE (bearer tokens) or \
                 GRPC_TLS_CLIENT_CA_FILE (client certificates)",
            ));
        }
        crate::auth::validate_callers(&self.auth.callers, &self.tenants)?;
        if self.profile == Profile::Cloud
            && !tls.enabled()
            && !self.auth.required
            && !self.grpc.trusted_network
        {
            return Err(invalid(
                "grpc.tls",
                "the cloud profile needs TLS on the gRPC port (GRPC_TLS_CERT_FILE, \
                 GRPC_TLS_KEY_FILE) or caller authentication (VALKEY_SESSIONS_AUTH__REQUIRED=true \
                 with GRPC_AUTH_TOKENS_FILE or GRPC_TLS_CLIENT_CA_FILE); set \
                 VALKEY_SESSIONS_GRPC__TRUSTED_NETWORK=true only where the network itself \
                 authenticates and encrypts (a service mesh)",
            ));
        }
        Ok(())
    }

    /// Largest gRPC message the server accepts or sends: the largest session any tenant may hold
    /// plus framing headroom.
    pub fn max_message_bytes(&self) -> usize {
        crate::tenant::Tenants::from_config(self)
            .map(|t| t.largest_limits())
            .unwrap_or_else(|_| self.limits.clone())
            .message_bytes()
    }
}

fn readable(key: &'static str, path: &std::path::Path) -> Result<(), ConfigError> {
    if std::fs::File::open(path).is_err() || !path.is_file() {
        return Err(invalid(
            key,
            format!("{} is not a readable file", path.display()),
        ));
    }
    Ok(())
}

/// Checks the `sessions` and `limits` sections (global, or a tenant's after its overrides).
pub(crate) fn check_lifetimes_and_limits(
    sessions: &SessionConfig,
    limits: &Limits,
) -> Result<(), ConfigError> {
    let s = sessions;
    if s.default_idle_timeout < Duration::from_secs(1)
        || s.default_idle_timeout > s.max_idle_timeout
    {
        return Err(invalid(
            "sessions.default_idle_timeout",
            "must be at least 1s and at most sessions.max_idle_timeout",
        ));
    }
    if let Some(abs) = s.default_absolute_timeout {
        if abs < Duration::from_secs(1) || abs > s.max_absolute_timeout {
            return Err(invalid(
                "sessions.default_absolute_timeout",
                "must be at least 1s and at most sessions.max_absolute_timeout",
            ));
        }
    }
    let l = limits;
    for (key, value) in [
        ("limits.max_name_bytes", l.max_name_bytes),
        ("limits.max_value_bytes", l.max_value_bytes),
        ("limits.max_session_bytes", l.max_session_bytes),
        ("limits.max_attributes", l.max_attributes),
    ] {
        if value == 0 {
            return Err(invalid(key, "must be at least 1"));
        }
    }
    if l.max_session_bytes > 256 << 20 {
        return Err(invalid(
            "limits.max_session_bytes",
            "must be at most 256 MiB",
        ));
    }
    Ok(())
}

fn positive(key: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(invalid(key, "must be greater than zero"));
    }
    Ok(())
}

pub(crate) fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_have_sensible_defaults() {
        let local = Config::defaults(Profile::Local);
        local.validate().expect("local defaults are valid");
        assert_eq!(local.grpc.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(
            local.sessions.default_idle_timeout,
            Duration::from_secs(1800)
        );
        let cloud = Config::defaults(Profile::Cloud);
        assert!(matches!(
            cloud.validate(),
            Err(ConfigError::Invalid {
                key: "valkey.url",
                ..
            })
        ));
        assert_eq!(cloud.valkey.read_from, ReadFrom::Replica);
    }

    #[test]
    fn session_host_means_a_tls_cluster_and_plaintext_is_refused_in_cloud() {
        let cli = Cli {
            profile: Profile::Cloud,
            session_host: Some("cache.example:6379".into()),
            ..Cli::default()
        };
        let err = Config::load(&cli).unwrap_err().to_string();
        assert!(
            err.contains("grpc.tls") && err.contains("TRUSTED_NETWORK"),
            "the cloud profile refuses an unauthenticated plaintext gRPC port: {err}"
        );
        let mut config = Config::defaults(Profile::Cloud);
        config.apply_cli(&cli).unwrap();
        config.grpc.trusted_network = true;
        config
            .validate()
            .expect("valid on a declared trusted network");
        assert_eq!(config.valkey.url, "rediss-cluster://cache.example:6379");
        let plain = Cli {
            profile: Profile::Cloud,
            valkey_url: Some("redis://127.0.0.1:6379".into()),
            ..Cli::default()
        };
        let err = Config::load(&plain).unwrap_err().to_string();
        assert!(err.contains("valkey.url") && err.contains("TLS"), "{err}");
    }
}
