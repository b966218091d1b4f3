//! Typed configuration: profile defaults, then an optional TOML file, then environment and flags;
//! validated once at start-up with errors that name the offending key.
//!
//! Each section is a type owned by what it configures (the store's `valkey` and `near_cache`,
//! the domain's `sessions`, `limits` and `tenants`, the server's `grpc`, ...), with its defaults
//! per profile and its own checks; this module only puts them together.

mod cli;
mod grpc;
pub mod reference;

pub use cli::Cli;
pub use grpc::{GrpcConfig, MetricsConfig};

use std::collections::BTreeMap;

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};
pub use service_kit::{LogFormat, Profile};
use session_core::{Lifetimes, Limits, SettingError, TenantOverrides};
use session_store::config::{NearCacheConfig, SecretConfig, ValkeyConfig};

use crate::{auth::AuthConfig, runtime::RuntimeConfig, telemetry::LogConfig};

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
    pub sessions: Lifetimes,
    /// Size and count limits.
    pub limits: Limits,
    /// Logging.
    pub log: LogConfig,
    /// Caller authentication and authorisation.
    pub auth: AuthConfig,
    /// Tenants by name: each has its own key prefix and may override `limits` and `sessions`.
    pub tenants: BTreeMap<String, TenantOverrides>,
    /// The coherent in-memory cache of eventual Gets.
    pub near_cache: NearCacheConfig,
    /// The async runtime the service runs on.
    pub runtime: RuntimeConfig,
    /// The deployment secret (principal tags, page tokens) and its rotation.
    pub secret: SecretConfig,
}

/// A configuration problem, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The sources could not be read or deserialised.
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A value was read but is not acceptable.
    #[error(transparent)]
    Setting(#[from] SettingError),
}

impl Config {
    /// The defaults of a profile.
    pub fn defaults(profile: Profile) -> Self {
        let cloud = profile == Profile::Cloud;
        Self {
            profile,
            grpc: GrpcConfig::for_profile(profile),
            metrics: MetricsConfig::for_profile(profile),
            valkey: if cloud {
                ValkeyConfig::cloud()
            } else {
                ValkeyConfig::local()
            },
            sessions: Lifetimes::default(),
            limits: Limits::default(),
            log: LogConfig::for_profile(profile),
            auth: AuthConfig::default(),
            tenants: BTreeMap::new(),
            near_cache: NearCacheConfig::for_profile(cloud),
            runtime: RuntimeConfig::default(),
            secret: SecretConfig::default(),
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
        cli.apply(&mut config)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that deserialise fine but cannot work, section by section. What needs the
    /// domain (tenants, callers) is checked where the domain is built (`server::Prepared`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.valkey.validate()?;
        self.near_cache.validate()?;
        self.grpc.validate(self.profile, &self.auth)?;
        self.auth.validate()?;
        self.secret.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use session_store::config::ReadFrom;

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
            Err(ConfigError::Setting(SettingError::Invalid {
                key: "valkey.url",
                ..
            }))
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
        cli.apply(&mut config).unwrap();
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
