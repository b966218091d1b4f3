//! Gateway settings: flags and environment variables, checked once at start-up.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;

use service_kit::{LogFormat, Profile};
use session_proto::caller::CallerOptions;

/// `todo-gateway`: the todo demo over HTTP, sessions kept in valkey-sessions.
#[derive(Debug, Clone, Parser)]
#[command(name = "todo-gateway", version, about)]
pub struct GatewayConfig {
    /// HTTP listen address.
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// The valkey-sessions gRPC endpoint (`http://` or `https://` with system roots).
    #[arg(
        long,
        env = "SESSION_SERVICE_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub session_service_url: String,

    /// `cloud`: browsers always arrive over HTTPS, so the SESSION cookie is always `Secure`.
    #[arg(long, env = "GATEWAY_PROFILE", value_enum, default_value_t = Profile::Local)]
    pub profile: Profile,

    /// Mark the SESSION cookie `Secure` on every answer, whatever the request looked like.
    #[arg(long, env = "GATEWAY_COOKIE_SECURE", default_value_t = false)]
    pub cookie_secure: bool,

    /// Proxies whose `X-Forwarded-Proto` and `X-Forwarded-Host` are believed: addresses or
    /// networks, comma-separated (e.g. `10.0.0.0/8,127.0.0.1`).
    #[arg(long, env = "GATEWAY_TRUSTED_PROXIES", value_delimiter = ',', value_parser = crate::security::parse_proxy)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Origins besides the gateway's own that may send POST, PATCH and DELETE, comma-separated
    /// (e.g. `https://app.example.com`).
    #[arg(long, env = "GATEWAY_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Serve HTTPS with this PEM certificate chain (re-read when it changes).
    #[arg(long, env = "GATEWAY_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// The PEM private key of `GATEWAY_TLS_CERT_FILE`.
    #[arg(long, env = "GATEWAY_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,

    /// Deadline of every call to the session service (sent as `grpc-timeout`).
    #[arg(long, env = "GATEWAY_CALL_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub call_timeout: Duration,
    /// Time a client has to send a request's headers; a slower one (slowloris) is closed.
    #[arg(long, env = "GATEWAY_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// How the gateway authenticates to the session service (TLS trust, client certificate,
    /// bearer token), like any other caller.
    #[command(flatten)]
    pub caller: CallerOptions,

    /// Log format (`text` or `json`); the level comes from `RUST_LOG`.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl GatewayConfig {
    /// Checks what clap cannot: the service URL's scheme and a usable deadline.
    pub fn validate(&self) -> Result<(), String> {
        let url = &self.session_service_url;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "SESSION_SERVICE_URL `{url}`: expected http://host:port or https://host:port"
            ));
        }
        if url.parse::<http::Uri>().is_err() {
            return Err(format!("SESSION_SERVICE_URL `{url}` is not a valid URI"));
        }
        if self.call_timeout.is_zero() {
            return Err("GATEWAY_CALL_TIMEOUT must be greater than zero".into());
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err("GATEWAY_TLS_CERT_FILE and GATEWAY_TLS_KEY_FILE go together".into());
        }
        for origin in &self.allowed_origins {
            if !(origin.starts_with("https://") || origin.starts_with("http://"))
                || origin.ends_with('/')
            {
                return Err(format!(
                    "GATEWAY_ALLOWED_ORIGINS `{origin}`: expected scheme://host[:port] without a path"
                ));
            }
        }
        Ok(())
    }
}
