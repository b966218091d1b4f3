//! Builds the Valkey connection from the configuration: rustls TLS, credentials, timeouts and a
//! reconnect policy (without timeouts and reconnects, fred reads can hang forever on a dead node).

use std::sync::Arc;

use fred::{
    prelude::ReconnectPolicy,
    rustls::{ClientConfig, RootCertStore, pki_types::CertificateDer},
    types::config::{
        Config as FredConfig, ConnectionConfig, PerformanceConfig, TcpConfig, TlsConfig,
        TlsConnector, TlsHostMapping as FredHostMapping,
    },
};
use rustls_pki_types::pem::PemObject;

use valkey_router::{Template, Valkey};

use crate::{
    config::{ReadFrom, TlsHostMapping, ValkeyAuth, ValkeyConfig},
    credentials::PasswordFile,
    iam::{IamCredentials, TokenRequest},
};

/// Idle time before the kernel probes a Valkey connection.
const KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(5);
/// Time between keepalive probes.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Unanswered probes after which the connection is closed.
const KEEPALIVE_RETRIES: u32 = 3;

/// Why the Valkey client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL or options were rejected by fred.
    #[error("valkey client: {0}")]
    Fred(#[from] fred::error::Error),
    /// TLS could not be set up.
    #[error("valkey TLS: {0}")]
    Tls(String),
    /// Credentials could not be set up.
    #[error("valkey credentials: {0}")]
    Credentials(String),
}

/// Builds an unconnected [`Valkey`] from the configuration: one plain fred client per node
/// (valkey-router), all configured alike (TLS, credentials, timeouts, reconnect policy).
pub async fn build(cfg: &ValkeyConfig) -> Result<Arc<Valkey>, ClientError> {
    let mut config = FredConfig::from_url(&cfg.url)?;
    set_credentials(&mut config, cfg).await?;
    let seeds = config.server.hosts();
    let clustered = config.server.is_clustered();
    let mut tls_name = None;
    if config.tls.is_some() {
        config.tls = Some(TlsConfig {
            connector: TlsConnector::from(rustls_config(cfg)?),
            hostnames: FredHostMapping::None,
        });
        // Nodes announced by IP are verified against the URL's host name where so configured;
        // the router applies it to every node it connects to (valkey-router).
        if cfg.tls_host_mapping == TlsHostMapping::DefaultHost {
            tls_name = seeds.first().map(|s| s.host.to_string());
        }
    }
    // Fail commands at once while a node is disconnected instead of queueing them behind its
    // reconnect: that node's commands fail fast, the other nodes' are not concerned.
    config.fail_fast = true;
    let connection = ConnectionConfig {
        connection_timeout: cfg.connect_timeout,
        internal_command_timeout: cfg.connect_timeout,
        max_command_attempts: 2,
        // Redirections come back to valkey-router, which follows them (fred 10.1.0 cannot
        // follow ASK: valkey-router's `fred_follows_ask` test).
        max_redirections: 0,
        tcp: TcpConfig {
            nodelay: Some(true),
            // A peer that stops answering without closing (a flow dropped by a firewall, a
            // node gone from behind a DNS name) sends no RST: without these the kernel keeps
            // the connection for about 15 minutes. Data unacknowledged for a command timeout
            // ends the connection (fred then reconnects, resolving the name again); an idle
            // connection is probed from KEEPALIVE_IDLE on.
            user_timeout: Some(cfg.command_timeout),
            keepalive: Some(
                socket2::TcpKeepalive::new()
                    .with_time(KEEPALIVE_IDLE)
                    .with_interval(KEEPALIVE_INTERVAL)
                    .with_retries(KEEPALIVE_RETRIES),
            ),
            ..TcpConfig::default()
        },
        ..ConnectionConfig::default()
    };
    let performance = PerformanceConfig {
        default_command_timeout: cfg.command_timeout,
        ..PerformanceConfig::default()
    };
    let template = Template {
        config,
        connection,
        performance,
        policy: ReconnectPolicy::new_exponential(0, 50, 2_000, 2),
        per_node: cfg.pool_size,
    };
    Ok(Arc::new(Valkey::new(
        template,
        seeds,
        clustered,
        cfg.read_from == ReadFrom::Replica,
        tls_name,
        cfg.command_timeout,
        cfg.health_interval,
    )))
}

/// Puts the configured credentials on every connection fred opens, including replica connections
/// and reconnects.
async fn set_credentials(config: &mut FredConfig, cfg: &ValkeyConfig) -> Result<(), ClientError> {
    if let Some(user) = &cfg.username {
        config.username = Some(user.clone());
    }
    match cfg.auth {
        ValkeyAuth::Iam => {
            let region = cfg
                .iam
                .region
                .clone()
                .or_else(|| std::env::var("AWS_REGION").ok())
                .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
                .ok_or_else(|| {
                    ClientError::Credentials(
                        "IAM authentication needs a region: set valkey.iam.region or AWS_REGION"
                            .into(),
                    )
                })?;
            let request = TokenRequest {
                user: cfg.username.clone().unwrap_or_default(),
                cache_name: cfg.iam.cache_name.clone(),
                region: region.clone(),
                serverless: cfg.iam.serverless,
            };
            let aws = IamCredentials::default_chain(region).await;
            config.credential_provider = Some(Arc::new(IamCredentials::new(
                request,
                aws,
                cfg.iam.refresh_interval,
            )));
        }
        ValkeyAuth::Password => {
            if let Some(path) = &cfg.password_file {
                config.credential_provider = Some(Arc::new(PasswordFile {
                    username: config.username.clone(),
                    path: path.clone(),
                }));
            }
        }
    }
    Ok(())
}

/// rustls with the system roots plus the PEM roots of `ca_file`.
fn rustls_config(cfg: &ValkeyConfig) -> Result<ClientConfig, ClientError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = &cfg.ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect())
            .map_err(|e| ClientError::Tls(format!("reading {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(ClientError::Tls(format!(
                "{} holds no PEM certificate",
                path.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| ClientError::Tls(format!("{}: {e}", path.display())))?;
        }
    }
    if roots.is_empty() {
        return Err(ClientError::Tls(
            "no trusted roots: the system has none and VALKEY_CA_FILE is unset".into(),
        ));
    }
    // An explicit provider: two providers in one build make the implicit choice panic.
    let provider = Arc::new(fred::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}
