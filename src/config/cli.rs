//! The command line: the documented flags and variables, applied over the other sources.

use std::{net::SocketAddr, path::PathBuf};

use clap::Parser;
use service_kit::{LogFormat, Profile};
use session_core::SettingError;
use session_store::config::ReadFrom;

use super::Config;

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

impl Cli {
    /// Applies the flags and variables that were given to `config`.
    pub fn apply(&self, config: &mut Config) -> Result<(), SettingError> {
        match (&self.valkey_url, &self.session_host) {
            (Some(_), Some(_)) => {
                return Err(SettingError::invalid(
                    "valkey.url",
                    "set VALKEY_URL or SESSION_HOST, not both",
                ));
            }
            (Some(url), None) => config.valkey.url = url.clone(),
            (None, Some(host)) => config.valkey.url = format!("rediss-cluster://{host}"),
            (None, None) => {}
        }
        if let Some(path) = &self.valkey_ca_file {
            config.valkey.ca_file = Some(path.clone());
        }
        if let Some(read_from) = self.valkey_read_from {
            config.valkey.read_from = read_from;
        }
        if let Some(listen) = self.grpc_listen {
            config.grpc.listen = listen;
        }
        if let Some(listen) = self.metrics_listen {
            config.metrics.listen = listen;
        }
        if let Some(format) = self.log_format {
            config.log.format = format;
        }
        let tls = &mut config.grpc.tls;
        for (flag, field) in [
            (&self.grpc_tls_cert_file, &mut tls.cert_file),
            (&self.grpc_tls_key_file, &mut tls.key_file),
            (&self.grpc_tls_client_ca_file, &mut tls.client_ca_file),
            (&self.grpc_auth_tokens_file, &mut config.auth.tokens_file),
            (&self.valkey_password_file, &mut config.valkey.password_file),
        ] {
            if let Some(path) = flag {
                *field = Some(path.clone());
            }
        }
        if let Some(user) = &self.valkey_username {
            config.valkey.username = Some(user.clone());
        }
        Ok(())
    }
}
