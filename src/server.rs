//! Wires configuration, store, service, health and reflection to a listening socket, and shuts
//! down gracefully.

use std::future::Future;

use metrics_exporter_prometheus::PrometheusHandle;

use tokio::{net::TcpListener, sync::watch};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

use crate::{
    config::{Config, ReadFrom},
    layers::{AdmissionLayer, ObserveLayer, counted},
    proto::{self, session_service_server::SessionServiceServer},
    service::SessionService,
    store::{self, KeySpace, SessionStore},
};

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
    metrics: PrometheusHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let metrics_addr = crate::telemetry::serve_metrics(config.metrics.listen, metrics).await?;
    tracing::info!(addr = %metrics_addr, "metrics listening");
    let pool = store::build_pool(&config.valkey)?;
    let store = SessionStore::new(
        pool,
        KeySpace::new(config.valkey.key_prefix.clone()),
        config.valkey.read_from,
        config.limits.clone(),
    );
    if store::connect(store.pool(), config.valkey.connect_timeout).await {
        if let Err(e) = store.load_scripts().await {
            tracing::warn!(error = %e, "could not preload scripts; they load on first use");
        }
        tracing::info!(url = %redact_url(&config.valkey.url), "connected to valkey");
    } else {
        tracing::warn!(url = %redact_url(&config.valkey.url), "valkey not reachable yet; reconnecting in the background");
    }
    if config.valkey.read_from == ReadFrom::Replica {
        spawn_replica_sync(&store, config.valkey.replica_sync_interval);
    }

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let health = crate::health::spawn_probe(
        store.clone(),
        health_reporter,
        config.valkey.health_interval,
    );

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let max_message = config.max_message_bytes();
    let sessions = SessionServiceServer::new(SessionService::new(
        store.clone(),
        config.limits.clone(),
        config.sessions.clone(),
    ))
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
    tracing::info!(addr = %local, "grpc listening");

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

    let admission = AdmissionLayer::new(config.grpc.concurrency_limit, config.grpc.request_timeout);
    let server = Server::builder()
        .layer(ObserveLayer)
        .layer(admission.clone())
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(sessions)
        .serve_with_incoming_shutdown(counted(TcpListenerStream::new(listener)), graceful);

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
    let _ = fred::prelude::ClientLike::quit(store.pool()).await;
    tracing::info!("stopped");
    Ok(())
}

/// Re-reads replica routing periodically: a replica that was not listed yet (fresh, offset 0) or
/// that restarted gets reads again without a service restart.
fn spawn_replica_sync(store: &SessionStore, every: std::time::Duration) {
    let pool = store.pool().clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for client in pool.clients() {
                if let Err(e) = client.replicas().sync(false).await {
                    tracing::debug!(error = %e, "replica sync failed");
                }
            }
        }
    });
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
