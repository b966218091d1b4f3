//! `todo-gateway`: the REST todo demo, a browser's cookie session kept in valkey-sessions.
//!
//! Also the reference for a web application using the service: one reused gRPC channel,
//! deadlines on every call, trace context propagated, and optimistic concurrency with a bounded
//! retry so parallel requests of one browser never lose each other's writes.

mod accounts;
mod api;
mod config;
mod error;
mod security;
mod sessions;
mod todos;

pub use api::ApiDoc;
pub use config::GatewayConfig;
pub use security::BrowserPolicy;
pub use sessions::Sessions;

use std::{future::Future, io, net::SocketAddr, pin::Pin};

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request},
    middleware::{self, Next},
    response::{Html, Response},
    routing::{delete, get, patch, post},
};
use futures::{Stream, StreamExt};
use opentelemetry::global;
use opentelemetry_http::HeaderExtractor;
use tokio::net::TcpListener;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use service_kit::{
    Profile,
    tls::{self, Conn, ServerTls, ServerTlsConfig},
};

/// Largest request body: above the largest valid todo even when every character arrives as a
/// JSON `\uXXXX` surrogate pair (2200 characters × 12 bytes), so only invalid bodies hit it.
const BODY_LIMIT: usize = 64 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    sessions: Sessions,
    policy: std::sync::Arc<BrowserPolicy>,
}

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A setting is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The listener could not be bound or failed.
    #[error("listener {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// The gateway's routes over `sessions`, guarded by `policy`.
pub fn router(sessions: Sessions, policy: BrowserPolicy) -> Router {
    let state = AppState {
        sessions,
        policy: std::sync::Arc::new(policy),
    };
    Router::new()
        .route("/", get(page))
        .route("/todos", get(api::list_todos).post(api::add_todo))
        .route(
            "/todos/{id}",
            patch(api::edit_todo).delete(api::delete_todo),
        )
        .route("/login", post(api::login))
        .route("/logout", post(api::logout))
        .route("/sessions", get(api::list_sessions))
        .route("/sessions/logout-others", post(api::logout_other_sessions))
        .route("/sessions/{handle}", delete(api::revoke_session))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/openapi.json", get(api::openapi))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security::csrf,
        ))
        .layer(middleware::from_fn(trace))
        .layer(middleware::from_fn(security::headers))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
pub async fn run(
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    config.validate().map_err(GatewayError::Config)?;
    let sessions = Sessions::connect_lazy(
        &config.session_service_url,
        &config.caller,
        config.call_timeout,
    )
    .map_err(GatewayError::Config)?;
    let listen = config.listen;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| GatewayError::Listen {
            addr: listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| GatewayError::Listen {
            addr: listen,
            source,
        })?;
    let tls = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => {
            let files = ServerTlsConfig {
                cert_file: Some(cert.clone()),
                key_file: Some(key.clone()),
                client_ca_file: None,
                reload_interval: std::time::Duration::from_secs(5),
            };
            let tls = ServerTls::load_with_alpn(&files, &[b"h2", b"http/1.1"])
                .map_err(|e| GatewayError::Config(e.to_string()))?;
            tls.watch(&files);
            Some(tls)
        }
        _ => None,
    };
    let policy = BrowserPolicy {
        always_https: tls.is_some() || config.cookie_secure || config.profile == Profile::Cloud,
        trusted_proxies: config.trusted_proxies.clone(),
        allowed_origins: config.allowed_origins.clone(),
    };
    tracing::info!(
        %addr,
        https = tls.is_some(),
        service = %config.session_service_url,
        "gateway listening"
    );
    let app = router(sessions, policy);
    serve(
        tls::incoming(listener, tls),
        app,
        config.header_read_timeout,
        shutdown,
    )
    .await;
    Ok(())
}

/// Serves HTTP/1.1 and HTTP/2 on `conns` until `shutdown`, then waits for the connections in
/// flight. axum's own `serve` is not used because it has no header-read timeout: a client that
/// sends its headers a byte at a time (slowloris) would hold a connection for ever.
async fn serve(
    mut conns: Pin<Box<dyn Stream<Item = io::Result<Conn>> + Send>>,
    app: Router,
    header_read_timeout: std::time::Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    use hyper_util::{
        rt::{TokioExecutor, TokioIo, TokioTimer},
        server::{conn::auto::Builder, graceful::GracefulShutdown},
        service::TowerToHyperService,
    };
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let conn = tokio::select! {
            conn = conns.next() => conn,
            () = &mut shutdown => break,
        };
        let conn = match conn {
            Some(Ok(conn)) => conn,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "accept failed");
                continue;
            }
            // The accept loop only ends with the listener.
            None => break,
        };
        let peer = conn.peer();
        let app = app
            .clone()
            .layer(axum::Extension(axum::extract::ConnectInfo(PeerAddr(
                peer.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
            ))));
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(conn), TowerToHyperService::new(app))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
}

/// The address of the peer of a request (a request extension, as `ConnectInfo<PeerAddr>`).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The one-page UI: plain HTML and JavaScript, no build step, no CDN.
async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

/// A span per request, child of the caller's W3C `traceparent` if it sent one; the span is the
/// parent of the gRPC calls the request makes.
async fn trace(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format_args!("{} {route}", request.method()),
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    let parent =
        global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(request.headers())));
    let _ = span.set_parent(parent);
    async move {
        let response = next.run(request).await;
        let status = response.status().as_u16();
        tracing::Span::current().record("http.response.status_code", status);
        tracing::debug!(status, "request served");
        response
    }
    .instrument(span)
    .await
}
