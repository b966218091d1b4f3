//! The `grpc` and `metrics` configuration sections: the ports the service listens on, their
//! limits and their security.

use std::{net::SocketAddr, time::Duration};

use serde::{Deserialize, Serialize};
use service_kit::{Profile, tls::ServerTlsConfig};
use session_core::{SettingError, positive, readable};

use crate::auth::AuthConfig;

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
    /// Requests of one caller identity served at once (anonymous callers count as one), so one
    /// caller cannot starve the others; more are refused with RESOURCE_EXHAUSTED.
    pub caller_concurrency_limit: usize,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How often an HTTP/2 PING goes to a caller whose connection is idle, so a caller that
    /// vanished without closing is noticed.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// How long a keepalive PING may go unanswered before the connection is closed.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// HTTP/2 streams (concurrent RPCs) one connection may have open.
    pub max_concurrent_streams: u32,
    /// Connections are closed (GOAWAY) after this long, so every caller re-authenticates: the
    /// bound on how long a revoked token or certificate keeps working on an open connection.
    #[serde(with = "humantime_serde")]
    pub max_connection_age: Duration,
    /// Time the RPCs in flight on a connection past its age get to finish.
    #[serde(with = "humantime_serde")]
    pub max_connection_age_grace: Duration,
    /// Serve gRPC server reflection (on in `local`, off by default in `cloud`).
    pub reflection: bool,
    /// Declares the network trusted: lets the `cloud` profile run without TLS and without caller
    /// authentication. Logged loudly at start-up.
    pub trusted_network: bool,
    /// TLS on the gRPC port.
    pub tls: ServerTlsConfig,
}

/// The `metrics` configuration section: where Prometheus scrapes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Listen address of `GET /metrics`.
    pub listen: SocketAddr,
}

impl MetricsConfig {
    /// Loopback in `local`, every interface in `cloud`.
    pub fn for_profile(profile: Profile) -> Self {
        Self {
            listen: SocketAddr::new(listen_host(profile), 9090),
        }
    }
}

fn listen_host(profile: Profile) -> std::net::IpAddr {
    match profile {
        Profile::Local => std::net::Ipv4Addr::LOCALHOST.into(),
        Profile::Cloud => std::net::Ipv4Addr::UNSPECIFIED.into(),
    }
}

impl GrpcConfig {
    /// Loopback and reflection in `local`; every interface and no reflection in `cloud`.
    pub fn for_profile(profile: Profile) -> Self {
        Self {
            listen: SocketAddr::new(listen_host(profile), 50051),
            request_timeout: Duration::from_secs(5),
            concurrency_limit: 1024,
            caller_concurrency_limit: 512,
            shutdown_grace: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            max_concurrent_streams: 200,
            max_connection_age: Duration::from_secs(30 * 60),
            max_connection_age_grace: Duration::from_secs(30),
            reflection: profile == Profile::Local,
            trusted_network: false,
            tls: ServerTlsConfig {
                reload_interval: Duration::from_secs(5),
                ..ServerTlsConfig::default()
            },
        }
    }

    /// Checks the port's limits, its TLS files and, with `auth`, that the `cloud` profile does
    /// not serve an unauthenticated plaintext port.
    pub fn validate(&self, profile: Profile, auth: &AuthConfig) -> Result<(), SettingError> {
        positive("grpc.request_timeout", self.request_timeout)?;
        positive("grpc.keepalive_interval", self.keepalive_interval)?;
        positive("grpc.keepalive_timeout", self.keepalive_timeout)?;
        positive("grpc.max_connection_age", self.max_connection_age)?;
        positive(
            "grpc.max_connection_age_grace",
            self.max_connection_age_grace,
        )?;
        if self.max_concurrent_streams == 0 {
            return Err(SettingError::invalid(
                "grpc.max_concurrent_streams",
                "must be at least 1",
            ));
        }
        if self.caller_concurrency_limit == 0 {
            return Err(SettingError::invalid(
                "grpc.caller_concurrency_limit",
                "must be at least 1",
            ));
        }
        if self.concurrency_limit == 0 {
            return Err(SettingError::invalid(
                "grpc.concurrency_limit",
                "must be at least 1",
            ));
        }
        self.validate_tls()?;
        if auth.required && auth.tokens_file.is_none() && self.tls.client_ca_file.is_none() {
            return Err(SettingError::invalid(
                "auth.required",
                "no way to authenticate callers: set GRPC_AUTH_TOKENS_FILE (bearer tokens) or \
                 GRPC_TLS_CLIENT_CA_FILE (client certificates)",
            ));
        }
        // TLS alone would let anyone who reaches the port be an anonymous caller with every
        // RPC (a signed-in session for any user, RevokeSessions of anyone); auth alone would
        // send tokens in clear.
        const MESH: &str = "set VALKEY_SESSIONS_GRPC__TRUSTED_NETWORK=true only where the network \
                            itself authenticates and encrypts (a service mesh)";
        if profile == Profile::Cloud && !self.trusted_network {
            if !self.tls.enabled() {
                return Err(SettingError::invalid(
                    "grpc.tls",
                    format!(
                        "the cloud profile needs TLS on the gRPC port (GRPC_TLS_CERT_FILE, \
                         GRPC_TLS_KEY_FILE) and caller authentication; {MESH}"
                    ),
                ));
            }
            if !auth.required {
                return Err(SettingError::invalid(
                    "auth.required",
                    format!(
                        "the cloud profile needs caller authentication as well as TLS \
                         (VALKEY_SESSIONS_AUTH__REQUIRED=true with GRPC_AUTH_TOKENS_FILE or \
                         GRPC_TLS_CLIENT_CA_FILE): with TLS alone anyone who reaches the port \
                         has every RPC; {MESH}"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_tls(&self) -> Result<(), SettingError> {
        let tls = &self.tls;
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => {
                readable("grpc.tls.cert_file", cert)?;
                readable("grpc.tls.key_file", key)?;
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(SettingError::invalid(
                    "grpc.tls.key_file",
                    "GRPC_TLS_CERT_FILE is set but GRPC_TLS_KEY_FILE is not",
                ));
            }
            (None, Some(_)) => {
                return Err(SettingError::invalid(
                    "grpc.tls.cert_file",
                    "GRPC_TLS_KEY_FILE is set but GRPC_TLS_CERT_FILE is not",
                ));
            }
        }
        if let Some(ca) = &tls.client_ca_file {
            if !tls.enabled() {
                return Err(SettingError::invalid(
                    "grpc.tls.client_ca_file",
                    "mutual TLS needs server TLS: set GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE",
                ));
            }
            readable("grpc.tls.client_ca_file", ca)?;
        }
        positive("grpc.tls.reload_interval", tls.reload_interval)
    }
}
