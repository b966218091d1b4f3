//! Gateway settings: flags and environment variables, checked once at start-up.

use std::{net::SocketAddr, time::Duration};

use clap::Parser;

use crate::{client::CallerOptions, config::LogFormat};

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

    /// Mark the SESSION cookie `Secure` (set when browsers reach the gateway over HTTPS).
    #[arg(long, env = "GATEWAY_COOKIE_SECURE", default_value_t = false)]
    pub cookie_secure: bool,

    /// Deadline of every call to the session service (sent as `grpc-timeout`).
    #[arg(long, env = "GATEWAY_CALL_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub call_timeout: Duration,

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
        Ok(())
    }
}
