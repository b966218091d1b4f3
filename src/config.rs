//! Typed configuration: profile defaults, then an optional TOML file, then environment and flags;
//! validated once at start-up with errors that name the offending key.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

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
    /// Clients in the pool (each multiplexes one connection per node). One is the default: all
    /// concurrent commands share a connection per node and fred pipelines them, which measured
    /// 15-35% more Gets per CPU than two (docs/benchmarks.md); more only helps when very large
    /// sessions would make small commands wait behind them.
    pub pool_size: usize,
    /// Prefix of every key the service writes.
    pub key_prefix: String,
    /// How often replica routing is re-read, so replicas that appear or return get reads again.
    #[serde(with = "humantime_serde")]
    pub replica_sync_interval: Duration,
    /// How often the health probe PINGs Valkey.
    #[serde(with = "humantime_serde")]
    pub health_interval: Duration,
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
            },
            sessions: SessionConfig {
                default_idle_timeout: Duration::from_secs(30 * 60),
                max_idle_timeout: Duration::from_secs(24 * 3600),
                default_absolute_timeout: None,
                max_absolute_timeout: Duration::from_secs(30 * 24 * 3600),
            },
            limits: Limits::default(),
            log: LogConfig {
                format: if cloud {
                    LogFormat::Json
                } else {
                    LogFormat::Text
                },
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
        let s = &self.sessions;
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
        let l = &self.limits;
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

    /// Largest gRPC message the server accepts or sends: a full session plus framing headroom.
    pub fn max_message_bytes(&self) -> usize {
        let l = &self.limits;
        l.max_session_bytes + l.max_attributes * 16 + l.max_principal_bytes + 64 * 1024
    }
}

fn positive(key: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(invalid(key, "must be greater than zero"));
    }
    Ok(())
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
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
        let config = Config::load(&cli).expect("valid");
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
