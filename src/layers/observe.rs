//! One span and one set of metrics per RPC: the span continues the caller's W3C trace
//! (`traceparent` metadata), the metrics count requests by method and status code and time them.

use std::{
    task::{Context, Poll},
    time::Instant,
};

use futures::future::BoxFuture;
use opentelemetry::global;
use opentelemetry_http::HeaderExtractor;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Builds [`Observe`] services.
#[derive(Clone, Default)]
pub struct ObserveLayer;

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe { inner }
    }
}

/// The observing service.
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Observe<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (service, method) = labels(request.uri().path());
        // DEBUG, like the Valkey spans: the OTLP layer (when configured) takes every level, while
        // the log filter (RUST_LOG, default info) leaves them disabled, so without a trace
        // exporter a span costs nothing on the request path.
        let span = tracing::debug_span!(
            "grpc.request",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        let parent =
            global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(request.headers())));
        let _ = span.set_parent(parent);
        let start = Instant::now();
        let future = inner.call(request);
        Box::pin(
            async move {
                let result = future.await;
                // Unary errors are trailers-only responses: the status is in the headers. A
                // response without it is a success whose OK status follows in the trailers.
                let code = match &result {
                    Ok(response) => response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .unwrap_or(0),
                    Err(_) => tonic::Code::Unknown as i32,
                };
                tracing::Span::current().record("rpc.grpc.status_code", code);
                let code_name = code_name(code);
                metrics::counter!("grpc_requests_total", "method" => method, "code" => code_name)
                    .increment(1);
                metrics::histogram!("grpc_request_duration_seconds", "method" => method)
                    .record(start.elapsed().as_secs_f64());
                result
            }
            .instrument(span),
        )
    }
}

/// Bounded label values: known services keep their method names, anything else is "other", so
/// random paths cannot blow up metric cardinality.
fn labels(path: &str) -> (&'static str, &'static str) {
    const KNOWN: &[(&str, &[&str])] = &[
        (
            "session.v1.SessionService",
            &["Create", "Get", "Put", "Delete", "Rotate"],
        ),
        ("grpc.health.v1.Health", &["Check", "Watch", "List"]),
    ];
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (service, method) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    for (known_service, methods) in KNOWN {
        if service == *known_service {
            let method = methods
                .iter()
                .find(|m| **m == method)
                .copied()
                .unwrap_or("other");
            return (known_service, method);
        }
    }
    if service.starts_with("grpc.reflection.") {
        return ("grpc.reflection", "ServerReflectionInfo");
    }
    ("other", "other")
}

fn code_name(code: i32) -> &'static str {
    match tonic::Code::from_i32(code) {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(
            labels("/session.v1.SessionService/Get"),
            ("session.v1.SessionService", "Get")
        );
        assert_eq!(
            labels("/session.v1.SessionService/Nope"),
            ("session.v1.SessionService", "other")
        );
        assert_eq!(labels("/x.Y/Z"), ("other", "other"));
        assert_eq!(
            labels("/grpc.health.v1.Health/Watch"),
            ("grpc.health.v1.Health", "Watch")
        );
    }
}
