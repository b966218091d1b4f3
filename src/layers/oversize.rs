//! Oversized messages are RESOURCE_EXHAUSTED, as the gRPC status-code specification says; tonic
//! answers OUT_OF_RANGE ("decoded message length too large"), a code the specification lists
//! among those a library never generates, so callers that retry by code would misread it. The
//! session API itself never answers OUT_OF_RANGE (service.rs), so every OUT_OF_RANGE a session
//! RPC ends with is tonic's message-size limit, and is answered as RESOURCE_EXHAUSTED.

use tonic::{Code, Status};

/// The response of a session RPC, with tonic's OUT_OF_RANGE for an oversized message answered as
/// RESOURCE_EXHAUSTED instead.
pub(super) fn rewrite<B: Default>(response: http::Response<B>) -> http::Response<B> {
    // Unary errors are trailers-only: the status is in the headers.
    match Status::from_header_map(response.headers()) {
        Some(status) if status.code() == Code::OutOfRange => Status::resource_exhausted(format!(
            "message too large for this server: {}; sessions are limited to \
             limits.max_session_bytes",
            status.message()
        ))
        .into_http(),
        _ => response,
    }
}
