//! Logs, traces and metrics set-up. Logs: text or JSON on stdout, level from `RUST_LOG`. Traces:
//! OTLP over gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, W3C trace context propagation.
//! Metrics: a Prometheus recorder served on its own listener.

use std::{net::SocketAddr, time::Duration};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::{global, trace::TracerProvider as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tokio::net::TcpListener;
use tracing_subscriber::{
    EnvFilter, Layer, filter::filter_fn, layer::SubscriberExt, util::SubscriberInitExt,
};

use crate::LogFormat;

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built.
    #[error("OTLP exporter: {0}")]
    Otlp(#[from] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber or recorder was already installed.
    #[error("telemetry already initialised: {0}")]
    AlreadyInstalled(String),
    /// The metrics listener could not be bound.
    #[error("binding metrics listener {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// The workspace's crates, whose spans are exported (tracing targets start with the crate name).
const OWN_CRATES: &[&str] = &[
    "valkey_sessions",
    "todo_gateway",
    "session_store",
    "valkey_router",
    "session_core",
    "service_kit",
];

/// Keeps the trace exporter alive; `shutdown` flushes pending spans.
pub struct Traces(Option<SdkTracerProvider>);

impl Traces {
    /// Flushes and stops the trace exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.0 {
            let _ = provider.shutdown_with_timeout(Duration::from_secs(3));
        }
    }
}

/// Keeps the exporters alive; `shutdown` flushes pending spans.
pub struct Telemetry {
    traces: Traces,
    /// Renders the Prometheus exposition.
    pub metrics: PrometheusHandle,
}

impl Telemetry {
    /// Flushes and stops the trace exporter.
    pub fn shutdown(self) {
        self.traces.shutdown();
    }
}

/// Installs the global subscriber, propagator and metrics recorder of a service; `service_name`
/// is the default `service.name` of its traces.
pub fn init(format: LogFormat, service_name: &'static str) -> Result<Telemetry, TelemetryError> {
    let traces = init_traces(format, service_name)?;
    let metrics = PrometheusBuilder::new()
        .set_buckets(&[
            0.000_25, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ])
        .expect("non-empty buckets")
        .install_recorder()
        .map_err(|e| TelemetryError::AlreadyInstalled(e.to_string()))?;
    Ok(Telemetry { traces, metrics })
}

/// Installs the global log subscriber and W3C propagator, and the OTLP exporter when the
/// standard `OTEL_EXPORTER_OTLP_*` variables ask for it; `service_name` is the default
/// `service.name` (`OTEL_SERVICE_NAME` wins).
pub fn init_traces(
    format: LogFormat,
    service_name: &'static str,
) -> Result<Traces, TelemetryError> {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer_provider = otlp_provider(service_name)?;
    // Only our own spans are exported: the exporter's transport must not trace itself.
    let otel = tracer_provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(service_name))
            .with_filter(filter_fn(|meta| {
                OWN_CRATES.iter().any(|own| meta.target().starts_with(own))
            }))
    });
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(false)
            .flatten_event(true)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().boxed(),
    };
    tracing_subscriber::registry()
        .with(otel)
        .with(fmt.with_filter(filter))
        .try_init()
        .map_err(|e| TelemetryError::AlreadyInstalled(e.to_string()))?;
    Ok(Traces(tracer_provider))
}

fn otlp_provider(service_name: &'static str) -> Result<Option<SdkTracerProvider>, TelemetryError> {
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|var| std::env::var(var).is_ok_and(|v| !v.is_empty()));
    if !configured {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service_name);
    }
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    ))
}

/// Serves `GET /metrics` until the process ends; returns the bound address.
pub async fn serve_metrics(
    addr: SocketAddr,
    handle: PrometheusHandle,
) -> Result<SocketAddr, TelemetryError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| TelemetryError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| TelemetryError::Bind { addr, source })?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move { handle.render() }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener failed");
        }
    });
    Ok(local)
}
