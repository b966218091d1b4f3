//! `todo-gateway`: the REST todo demo, a browser's cookie session kept in valkey-sessions.
//!
//! Also the reference for a web application using the service: one reused gRPC channel,
//! deadlines on every call, trace context propagated, and optimistic concurrency with a bounded
//! retry so parallel requests of one browser never lose each other's writes.

mod api;
mod config;
mod error;
mod sessions;
mod todos;

pub use api::ApiDoc;
pub use config::GatewayConfig;
pub use sessions::Sessions;

use std::{future::Future, net::SocketAddr};

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request},
    middleware::{self, Next},
    response::{Html, Response},
    routing::{get, patch, post},
};
use opentelemetry::global;
use opentelemetry_http::HeaderExtractor;
use tokio::net::TcpListener;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Largest request body: above the largest valid todo even when every character arrives as a
/// JSON `\uXXXX` surrogate pair (2200 characters × 12 bytes), so only invalid bodies hit it.
const BODY_LIMIT: usize = 64 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    sessions: Sessions,
    cookie_secure: bool,
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

/// The gateway's routes over `sessions`.
pub fn router(sessions: Sessions, cookie_secure: bool) -> Router {
    let state = AppState {
        sessions,
        cookie_secure,
    };
    Router::new()
        .route("/", get(page))
        .route("/todos", get(api::list_todos).post(api::add_todo))
        .route(
            "/todos/{id}",
            patch(api::edit_todo).delete(api::delete_todo),
        )
        .route("/logout", post(api::logout))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/openapi.json", get(api::openapi))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(trace))
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
    tracing::info!(%addr, service = %config.session_service_url, "gateway listening");
    axum::serve(listener, router(sessions, config.cookie_secure))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| GatewayError::Listen { addr, source })
}

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
