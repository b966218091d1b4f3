//! One span and one set of metrics per RPC: the span continues the caller's W3C trace
//! (`traceparent` metadata), the metrics count requests by method and status code and time them.

use std::{
    sync::{LazyLock, OnceLock},
    time::Instant,
};

use opentelemetry::global;
use opentelemetry_http::HeaderExtractor;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Every (service, method) label pair a request can get. The session API's methods come from
/// its descriptor, so a new RPC gets its own label; anything else is "other", so random paths
/// cannot blow up metric cardinality.
static METHODS: LazyLock<Vec<(&'static str, &'static str)>> = LazyLock::new(|| {
    let service = session_proto::service_name();
    let mut methods: Vec<_> = session_proto::rpc_names()
        .iter()
        .map(|rpc| (service, rpc.as_str()))
        .collect();
    methods.extend([
        (service, "other"),
        ("grpc.health.v1.Health", "Check"),
        ("grpc.health.v1.Health", "Watch"),
        ("grpc.health.v1.Health", "List"),
        ("grpc.health.v1.Health", "other"),
        ("grpc.reflection", "ServerReflectionInfo"),
        ("other", "other"),
    ]);
    methods
});

/// gRPC status codes, 0 to 16.
const CODES: usize = 17;

/// The metric handles of one method, registered on first use and kept: a request then skips the
/// recorder's registry lookup (a hash of name and labels under a lock) for each of them.
struct Handles {
    requests: [OnceLock<metrics::Counter>; CODES],
    duration: OnceLock<metrics::Histogram>,
}

static HANDLES: LazyLock<Vec<Handles>> = LazyLock::new(|| {
    (0..METHODS.len())
        .map(|_| Handles {
            requests: [const { OnceLock::new() }; CODES],
            duration: OnceLock::new(),
        })
        .collect()
});

/// One request being observed: its span and when it started.
pub(super) struct Observation {
    method: usize,
    start: Instant,
    span: tracing::Span,
}

impl Observation {
    /// Starts observing `request`: a span continuing the caller's trace, and the clock.
    pub(super) fn start<B>(request: &http::Request<B>) -> Self {
        let method = method_index(request.uri().path());
        let (service, name) = METHODS[method];
        // DEBUG, like the Valkey spans: the OTLP layer (when configured) takes every level, while
        // the log filter (RUST_LOG, default info) leaves them disabled, so without a trace
        // exporter a span costs nothing on the request path.
        let span = tracing::debug_span!(
            "grpc.request",
            otel.name = %format_args!("{service}/{name}"),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = name,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        // Only a span something records (traces exported) needs the caller's context.
        if !span.is_disabled() {
            let parent =
                global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(request.headers())));
            let _ = span.set_parent(parent);
        }
        Self {
            method,
            start: Instant::now(),
            span,
        }
    }

    /// The span the request runs in.
    pub(super) fn span(&self) -> tracing::Span {
        self.span.clone()
    }

    /// Records how the request ended: the status code on the span, the count and the duration.
    pub(super) fn finish<B, E>(self, result: &Result<http::Response<B>, E>) {
        let code = match result {
            Ok(response) => response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(0),
            Err(_) => tonic::Code::Unknown as i32,
        };
        self.span.record("rpc.grpc.status_code", code);
        let code = tonic::Code::from_i32(code);
        let name = METHODS[self.method].1;
        let handles = &HANDLES[self.method];
        handles.requests[code as usize]
            .get_or_init(|| {
                metrics::counter!("grpc_requests_total", "method" => name, "code" => code_name(code))
            })
            .increment(1);
        handles
            .duration
            .get_or_init(|| metrics::histogram!("grpc_request_duration_seconds", "method" => name))
            .record(self.start.elapsed().as_secs_f64());
    }
}

/// The index in [`METHODS`] of a request path.
fn method_index(path: &str) -> usize {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (mut service, mut method) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    // Both reflection versions, one label.
    if service.starts_with("grpc.reflection.") {
        (service, method) = ("grpc.reflection", "ServerReflectionInfo");
    }
    let position = |method: &str| METHODS.iter().position(|p| *p == (service, method));
    position(method)
        .or_else(|| position("other"))
        .unwrap_or(METHODS.len() - 1)
}

/// The (service, method) labels of a request path.
#[cfg(test)]
fn labels(path: &str) -> (&'static str, &'static str) {
    METHODS[method_index(path)]
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
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
    fn every_rpc_of_the_descriptor_has_its_own_label() {
        for rpc in session_proto::rpc_names() {
            assert_eq!(
                labels(&format!("/session.v1.SessionService/{rpc}")),
                ("session.v1.SessionService", rpc.as_str())
            );
        }
    }

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
        assert_eq!(
            labels("/session.v1.SessionService/ListSessions"),
            ("session.v1.SessionService", "ListSessions")
        );
        assert_eq!(
            labels("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            ("grpc.reflection", "ServerReflectionInfo")
        );
        assert_eq!(labels("/x.Y/Z"), ("other", "other"));
        assert_eq!(
            labels("/grpc.health.v1.Health/Watch"),
            ("grpc.health.v1.Health", "Watch")
        );
    }
}
