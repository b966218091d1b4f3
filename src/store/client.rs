//! Builds the fred connection pool: cluster or standalone, rustls TLS, replicas, timeouts and a
//! reconnect policy (without timeouts and reconnects, fred reads can hang forever on a dead node).

use std::{sync::Arc, time::Duration};

use fred::{
    prelude::{Builder, ClientLike, Pool, ReconnectPolicy},
    rustls::{ClientConfig, RootCertStore, pki_types::CertificateDer},
    types::config::{
        ClusterDiscoveryPolicy, Config as FredConfig, ReplicaConfig, TlsConfig, TlsConnector,
        TlsHostMapping as FredHostMapping,
    },
};
use rustls_pki_types::pem::PemObject;

use super::{
    credentials::PasswordFile,
    iam::{IamCredentials, TokenRequest},
};
use crate::config::{ReadFrom, TlsHostMapping, ValkeyAuth, ValkeyConfig};

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

/// Builds an unconnected pool from the configuration.
pub async fn build_pool(cfg: &ValkeyConfig) -> Result<Pool, ClientError> {
    let config = fred_config(cfg).await?;
    Ok(builder(config, cfg).build_pool(cfg.pool_size)?)
}

/// A RESP3 client of one node (for its invalidation messages), with the pool's TLS, credentials,
/// timeouts and reconnect policy.
pub async fn build_node_client(
    cfg: &ValkeyConfig,
    server: &fred::types::config::Server,
) -> Result<fred::prelude::Client, ClientError> {
    let mut config = fred_config(cfg).await?;
    config.server = fred::types::config::ServerConfig::Centralized {
        server: server.clone(),
    };
    config.version = fred::types::RespVersion::RESP3;
    let mut node = cfg.clone();
    node.read_from = ReadFrom::Primary;
    Ok(builder(config, &node).build()?)
}

async fn fred_config(cfg: &ValkeyConfig) -> Result<FredConfig, ClientError> {
    let mut config = FredConfig::from_url(&cfg.url)?;
    set_credentials(&mut config, cfg).await?;
    if config.tls.is_some() {
        config.tls = Some(TlsConfig {
            connector: TlsConnector::from(rustls_config(cfg)?),
            hostnames: match cfg.tls_host_mapping {
                TlsHostMapping::None => FredHostMapping::None,
                TlsHostMapping::DefaultHost => FredHostMapping::DefaultHost,
            },
        });
    }
    // Fail commands at once while disconnected instead of queueing them behind a reconnect.
    config.fail_fast = true;
    if config.server.is_clustered() {
        // Rediscover the topology from any node the client knows, not only the one the URL names:
        // with fred's default (`ConfigEndpoint`), killing that node left its shard unreachable
        // until it came back (shared/valkey-notes.md, fact 14; tests/faults.rs).
        config
            .server
            .set_cluster_discovery_policy(ClusterDiscoveryPolicy::UseCache)?;
    }
    Ok(config)
}

fn builder(config: FredConfig, cfg: &ValkeyConfig) -> Builder {
    let command_timeout = cfg.command_timeout;
    let connect_timeout = cfg.connect_timeout;
    let replicas = cfg.read_from == ReadFrom::Replica;
    let mut builder = Builder::from_config(config);
    builder
        .with_performance_config(|perf| {
            perf.default_command_timeout = command_timeout;
        })
        .with_connection_config(|conn| {
            conn.connection_timeout = connect_timeout;
            conn.internal_command_timeout = connect_timeout;
            conn.max_command_attempts = 2;
            conn.max_redirections = 5;
            conn.tcp.nodelay = Some(true);
            if replicas {
                // Eager replica connections: with lazy ones, a dead replica stalled the whole
                // client in our measurements (shared/valkey-notes.md, fact 8).
                conn.replica = ReplicaConfig {
                    lazy_connections: false,
                    primary_fallback: true,
                    ignore_reconnection_errors: true,
                    ..ReplicaConfig::default()
                };
            }
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2));
    builder
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

/// Connects in the background; returns once connected or after `wait`, whichever is first, so a
/// service can start (and report NOT_SERVING) while Valkey is still down.
///
/// fred's reconnect policy covers connections that once succeeded; a failed *initial* connection
/// ends the client's connection task with an error. So each client's task is restarted after such
/// an error until one succeeds; from then on it runs (and reconnects) until `quit`.
pub async fn connect(pool: &Pool, wait: Duration) -> bool {
    for client in pool.clients() {
        let client = client.clone();
        tokio::spawn(async move {
            let mut last = String::new();
            while let Ok(Err(e)) = client.connect().await {
                // Once per distinct cause: a wrong password says so, not "timed out", and a
                // long outage does not flood the log.
                let now = e.to_string();
                if now != last {
                    tracing::warn!(error = %super::map_err(e), "valkey connection failed; retrying");
                    last = now;
                }
                tokio::time::sleep(INITIAL_RETRY).await;
            }
        });
    }
    matches!(
        tokio::time::timeout(wait, pool.wait_for_connect()).await,
        Ok(Ok(()))
    )
}

/// Pause between attempts of the initial connection.
const INITIAL_RETRY: Duration = Duration::from_millis(500);
