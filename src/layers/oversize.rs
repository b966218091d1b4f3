//! Oversized messages are RESOURCE_EXHAUSTED, as the gRPC status-code specification says; tonic
//! answers OUT_OF_RANGE ("decoded message length too large"), a code the specification lists
//! among those a library never generates, so callers that retry by code would misread it. The
//! session API itself never answers OUT_OF_RANGE (service.rs), so every OUT_OF_RANGE a session
//! RPC ends with is tonic's message-size limit, and is answered as RESOURCE_EXHAUSTED.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::{Code, Status};
use tower::{Layer, Service};

use super::SESSION_PATH;

/// Builds [`Oversize`] services.
#[derive(Clone, Default)]
pub struct OversizeLayer;

impl<S> Layer<S> for OversizeLayer {
    type Service = Oversize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Oversize { inner }
    }
}

/// The service rewriting tonic's OUT_OF_RANGE.
#[derive(Clone)]
pub struct Oversize<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Oversize<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
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
        if !request.uri().path().starts_with(SESSION_PATH) {
            return Box::pin(inner.call(request));
        }
        Box::pin(async move {
            let response = inner.call(request).await?;
            // Unary errors are trailers-only: the status is in the headers.
            match Status::from_header_map(response.headers()) {
                Some(status) if status.code() == Code::OutOfRange => {
                    Ok(Status::resource_exhausted(format!(
                        "message too large for this server: {}; sessions are limited to \
                         limits.max_session_bytes",
                        status.message()
                    ))
                    .into_http())
                }
                _ => Ok(response),
            }
        })
    }
}
