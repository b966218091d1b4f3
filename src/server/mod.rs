//! Wires configuration, store, service, health and reflection to a listening socket, and shuts
//! down gracefully. Three steps: [`Prepared::new`] builds the domain and reads the security files
//! (no network), [`Prepared::build`] connects Valkey and binds the port, [`Server::serve`] serves
//! until the shutdown signal and drains.

mod security;

pub use security::{Security, SecurityError};

use std::{future::Future, net::SocketAddr, sync::Arc};

use metrics_exporter_prometheus::PrometheusHandle;
use service_kit::tls::{self, ServerTls};
use session_core::{SettingError, Tenants};
use session_proto::session_service_server::SessionServiceServer;
use session_store::{SessionStore, Valkey};
use tokio::{net::TcpListener, sync::watch};
use tonic::{service::Routes, transport::Server as TonicServer};

use crate::{
    auth::Authenticator,
    config::Config,
    health::Health,
    layers::{Admission, GateLayer},
    service::SessionService,
};

/// Why the service could not start: a setting the domain refuses, or a security file.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Tenants or callers.
    #[error(transparent)]
    Setting(#[from] SettingError),
    /// TLS or token files.
    #[error(transparent)]
    Security(#[from] SecurityError),
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The Valkey client could not be built.
    #[error(transparent)]
    Client(#[from] session_store::ClientError),
    /// A listener could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
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
    Telemetry(#[from] service_kit::telemetry::TelemetryError),
}

/// The domain and the security material, built once from the configuration.
pub struct Prepared {
    config: Config,
    security: Security,
    tenants: Tenants,
    authenticator: Arc<Authenticator>,
    secrets: Vec<session_store::Secret>,
}

impl Prepared {
    /// Builds the tenants and the authenticator and reads the TLS and token files; fails with
    /// the key or file at fault.
    pub fn new(config: Config) -> Result<Self, StartError> {
        let tenants = Tenants::build(
            &config.valkey.key_prefix,
            &config.limits,
            &config.sessions,
            &config.tenants,
        )?;
        let security = Security::load(&config)?;
        let authenticator = Arc::new(Authenticator::new(
            &config.auth,
            tenants.clone(),
            security.tokens.clone(),
        )?);
        let secrets = config.secret.load()?;
        Ok(Self {
            config,
            security,
            tenants,
            authenticator,
            secrets,
        })
    }

    /// Serves metrics, connects to Valkey (or keeps trying in the background), builds the gRPC
    /// routes and binds the gRPC port.
    pub async fn build(self, metrics: PrometheusHandle) -> Result<Server, ServeError> {
        let config = &self.config;
        let metrics_addr =
            service_kit::telemetry::serve_metrics(config.metrics.listen, metrics).await?;
        tracing::info!(addr = %metrics_addr, "metrics listening");
        if config.grpc.trusted_network {
            tracing::warn!(
                "grpc.trusted_network is set: callers are trusted to be who the network says; \
                 session ids cross the network as the network carries them"
            );
        }
        self.security.watch(config);
        let (valkey, store) = connect_store(config, self.secrets).await?;
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        let health = crate::health::spawn_probe(
            store.clone(),
            health_reporter,
            config.valkey.health_interval,
        );

        let max_message = self.tenants.largest_limits().message_bytes();
        let service = SessionService::new(store, self.tenants)
            .with_durability(config.valkey.durability, config.valkey.durability_timeout);
        let sessions = SessionServiceServer::new(service)
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message);
        let mut routes = Routes::new(health_service).add_service(sessions);
        if config.grpc.reflection {
            routes = add_reflection(routes)?;
        }

        let listener = bind(config.grpc.listen).await?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: config.grpc.listen,
            source,
        })?;
        tracing::info!(
            %addr,
            tls = self.security.tls.is_some(),
            mtls = config.grpc.tls.client_ca_file.is_some(),
            auth_required = config.auth.required,
            reflection = config.grpc.reflection,
            "grpc listening"
        );
        Ok(Server {
            admission: Admission::new(
                config.grpc.concurrency_limit,
                config.grpc.caller_concurrency_limit,
                config.grpc.request_timeout,
            ),
            grace: config.grpc.shutdown_grace,
            http2: Http2Limits::from(&config.grpc),
            authenticator: self.authenticator,
            tls: self.security.tls,
            listener,
            routes,
            health,
            valkey,
        })
    }
}

/// Streams a peer may open and reset before the server has accepted them (the HTTP/2 "rapid
/// reset" flood); beyond it the connection is closed.
const MAX_PENDING_RESETS: usize = 64;

/// What bounds one caller's HTTP/2 connection (docs/security.md).
#[derive(Clone, Copy)]
struct Http2Limits {
    keepalive_interval: std::time::Duration,
    keepalive_timeout: std::time::Duration,
    max_concurrent_streams: u32,
    max_connection_age: std::time::Duration,
    max_connection_age_grace: std::time::Duration,
}

impl From<&crate::config::GrpcConfig> for Http2Limits {
    fn from(grpc: &crate::config::GrpcConfig) -> Self {
        Self {
            keepalive_interval: grpc.keepalive_interval,
            keepalive_timeout: grpc.keepalive_timeout,
            max_concurrent_streams: grpc.max_concurrent_streams,
            max_connection_age: grpc.max_connection_age,
            max_connection_age_grace: grpc.max_connection_age_grace,
        }
    }
}

/// A built service, listening, ready to serve.
pub struct Server {
    admission: Admission,
    grace: std::time::Duration,
    http2: Http2Limits,
    authenticator: Arc<Authenticator>,
    tls: Option<ServerTls>,
    listener: TcpListener,
    routes: Routes,
    health: Health,
    valkey: Arc<Valkey>,
}

impl Server {
    /// Serves until `shutdown` resolves: health turns NOT_SERVING, in-flight requests drain
    /// within `grpc.shutdown_grace`, then Valkey connections close.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let mut draining = stop_rx.clone();
        let health = self.health;
        let graceful = async move {
            let _ = draining.wait_for(|stop| *stop).await;
            tracing::info!("shutting down: health NOT_SERVING, draining in-flight requests");
            health.stop_serving().await;
        };
        let admission = self.admission;
        let h2 = self.http2;
        let server = TonicServer::builder()
            .http2_keepalive_interval(Some(h2.keepalive_interval))
            .http2_keepalive_timeout(Some(h2.keepalive_timeout))
            .max_concurrent_streams(h2.max_concurrent_streams)
            .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_RESETS))
            .max_connection_age(h2.max_connection_age)
            .max_connection_age_grace(h2.max_connection_age_grace)
            .layer(GateLayer::new(self.authenticator, admission.clone()))
            .add_routes(self.routes)
            .serve_with_incoming_shutdown(tls::incoming(self.listener, self.tls), graceful);

        let grace = self.grace;
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
        self.valkey.quit().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The Valkey connection and the session store over it (with the near cache where configured);
/// returns before Valkey answers when it does not within `valkey.connect_timeout`.
async fn connect_store(
    config: &Config,
    secrets: Vec<session_store::Secret>,
) -> Result<(Arc<Valkey>, SessionStore), ServeError> {
    let valkey = session_store::build(&config.valkey).await?;
    if secrets.is_empty() && config.profile == crate::config::Profile::Cloud {
        tracing::warn!(
            "secret.file is not set: the deployment secret is kept in valkey only; configure \
             one shared by every instance (docs/security.md)"
        );
    }
    let mut store = SessionStore::new(
        valkey.clone(),
        config.valkey.read_from,
        &config.valkey.key_prefix,
    )
    .with_secrets(secrets, config.secret.agreement_interval);
    let near = &config.near_cache;
    if near.enabled {
        let cache = session_store::near_cache::NearCache::new(near.max_entries, near.max_bytes);
        session_store::tracking::spawn(
            valkey.clone(),
            cache.clone(),
            config.valkey.key_prefix.clone(),
        );
        store = store.with_near_cache(cache);
        tracing::info!(
            max_entries = near.max_entries,
            max_bytes = near.max_bytes,
            "near cache on (serves once every tracking connection is up)"
        );
    }
    let url = redact_url(&config.valkey.url);
    if valkey.connect(config.valkey.connect_timeout).await {
        if let Err(e) = store.load_scripts().await {
            tracing::warn!(error = %e, "could not preload scripts; they load on first use");
        }
        tracing::info!(%url, "connected to valkey");
    } else {
        tracing::warn!(%url, "valkey not reachable yet; reconnecting in the background");
    }
    valkey.spawn_refresh(config.valkey.replica_sync_interval);
    // Configured secrets are checked from the start, so a wrong one is refused before it is
    // used; one kept in Valkey is made and checked from its first use (agreement.rs).
    if store.secrets_configured() {
        store.spawn_secret_agreement();
    }
    Ok((valkey, store))
}

/// gRPC server reflection (v1 and v1alpha) of the session API and health.
fn add_reflection(routes: Routes) -> Result<Routes, ServeError> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(session_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    Ok(routes
        .add_service(builder().build_v1()?)
        .add_service(builder().build_v1alpha()?))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
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
