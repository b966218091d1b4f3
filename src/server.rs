//! Wires configuration, store, service, health and reflection to a listening socket, and shuts
//! down gracefully.

use std::{future::Future, sync::Arc};

use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;

use tokio::{net::TcpListener, sync::watch};
use tonic::transport::Server;

use crate::{
    auth::{Authenticator, tokens::TokenTable},
    config::Config,
    layers::{Admission, GateLayer},
    proto::{self, session_service_server::SessionServiceServer},
    service::SessionService,
    store::{self, SessionStore},
    tenant::Tenants,
    tls::{self, ServerTls},
};

/// The security material read at start-up: the gRPC TLS configuration and the token hashes.
/// Loading it fails on a missing or bad file, naming it, before anything listens.
pub struct Security {
    tls: Option<ServerTls>,
    tokens: Arc<ArcSwap<TokenTable>>,
}

impl Security {
    /// Reads the files the configuration names.
    pub fn load(config: &Config) -> Result<Self, SecurityError> {
        let tls = if config.grpc.tls.enabled() {
            Some(ServerTls::load(&config.grpc.tls)?)
        } else {
            None
        };
        let tokens = match &config.auth.tokens_file {
            Some(path) => TokenTable::load(path).map_err(SecurityError::Tokens)?,
            None => TokenTable::default(),
        };
        Ok(Self {
            tls,
            tokens: Arc::new(ArcSwap::from_pointee(tokens)),
        })
    }

    /// Starts re-reading the files when they change on disk.
    fn watch(&self, config: &Config) {
        if let Some(tls) = &self.tls {
            tls.watch(&config.grpc.tls);
        }
        if let Some(path) = config.auth.tokens_file.clone() {
            let tokens = self.tokens.clone();
            crate::reload::spawn(
                "auth tokens",
                "grpc_auth_token_reloads_total",
                vec![path.clone()],
                config.auth.reload_interval,
                move || {
                    tokens.store(Arc::new(TokenTable::load(&path)?));
                    Ok(())
                },
            );
        }
    }
}

/// A security file that could not be used at start-up.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A TLS certificate, key or CA file.
    #[error("grpc tls: {0}")]
    Tls(#[from] tls::TlsError),
    /// The tokens file.
    #[error("auth tokens: {0}")]
    Tokens(String),
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The Valkey client could not be built.
    #[error(transparent)]
    Client(#[from] store::ClientError),
    /// A listener could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The gRPC transport failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be built.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The metrics listener could not start.
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
}

/// Runs the service until `shutdown` resolves, then drains within `grpc.shutdown_grace`.
pub async fn run(
    config: Config,
    security: Security,
    metrics: PrometheusHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let metrics_addr = crate::telemetry::serve_metrics(config.metrics.listen, metrics).await?;
    tracing::info!(addr = %metrics_addr, "metrics listening");
    if config.grpc.trusted_network {
        tracing::warn!(
            "grpc.trusted_network is set: callers are trusted to be who the network says; \
             session ids cross the network as the network carries them"
        );
    }
    security.watch(&config);
    let tenants = Tenants::from_config(&config).expect("validated at start-up");
    let valkey = store::build(&config.valkey).await?;
    let mut store = SessionStore::new(
        valkey.clone(),
        config.valkey.read_from,
        &config.valkey.key_prefix,
    );
    if config.near_cache.enabled {
        let cache = store::near_cache::NearCache::new(
            config.near_cache.max_entries,
            config.near_cache.max_bytes,
        );
        store::tracking::spawn(
            valkey.clone(),
            cache.clone(),
            config.valkey.key_prefix.clone(),
        );
        store = store.with_near_cache(cache);
        tracing::info!(
            max_entries = config.near_cache.max_entries,
            max_bytes = config.near_cache.max_bytes,
            "near cache on (serves once every tracking connection is up)"
        );
    }
    if valkey.connect(config.valkey.connect_timeout).await {
        if let Err(e) = store.load_scripts().await {
            tracing::warn!(error = %e, "could not preload scripts; they load on first use");
        }
        tracing::info!(url = %redact_url(&config.valkey.url), "connected to valkey");
    } else {
        tracing::warn!(url = %redact_url(&config.valkey.url), "valkey not reachable yet; reconnecting in the background");
    }
    valkey.spawn_refresh(config.valkey.replica_sync_interval);

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let health = crate::health::spawn_probe(
        store.clone(),
        health_reporter,
        config.valkey.health_interval,
    );

    let (reflection_v1, reflection_v1alpha) = if config.grpc.reflection {
        (
            Some(
                tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
                    .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                    .build_v1()?,
            ),
            Some(
                tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
                    .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                    .build_v1alpha()?,
            ),
        )
    } else {
        (None, None)
    };

    let max_message = config.max_message_bytes();
    let authenticator = Arc::new(Authenticator::new(
        &config.auth,
        tenants.clone(),
        security.tokens.clone(),
    ));
    let service = SessionService::new(store.clone(), tenants)
        .with_durability(config.valkey.durability, config.valkey.durability_timeout);
    let sessions = SessionServiceServer::new(service)
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);

    let listener = TcpListener::bind(config.grpc.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.grpc.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.grpc.listen,
        source,
    })?;
    tracing::info!(
        addr = %local,
        tls = security.tls.is_some(),
        mtls = config.grpc.tls.client_ca_file.is_some(),
        auth_required = config.auth.required,
        reflection = config.grpc.reflection,
        "grpc listening"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut draining = stop_rx.clone();
    let graceful = async move {
        let _ = draining.wait_for(|stop| *stop).await;
        tracing::info!("shutting down: health NOT_SERVING, draining in-flight requests");
        health.stop_serving().await;
    };

    let admission = Admission::new(config.grpc.concurrency_limit, config.grpc.request_timeout);
    let server = Server::builder()
        .layer(GateLayer::new(authenticator, admission.clone()))
        .add_service(health_service)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .add_service(sessions)
        .serve_with_incoming_shutdown(tls::incoming(listener, security.tls.clone()), graceful);

    let grace = config.grpc.shutdown_grace;
    let mut stopping = stop_rx;
    tokio::select! {
        result = server => result?,
        drained = async move {
            let _ = stopping.wait_for(|stop| *stop).await;
            tokio::time::timeout(grace, admission.drained()).await
        } => match drained {
            Ok(()) => tracing::info!("in-flight requests drained"),
            Err(_) => tracing::warn!(grace = ?grace, "drain took longer than the grace period; exiting"),
        },
    }
    valkey.quit().await;
    tracing::info!("stopped");
    Ok(())
}

/// The URL without its password, for logs.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
