//! The one tower layer around the gRPC routes. Every request is observed ([`observe`]); a call of
//! the session API is also authenticated, admitted under the concurrency limit and its deadline
//! ([`admission`]), and its oversized-message status rewritten ([`oversize`]).
//!
//! One layer rather than four: each layer boxed its future, and a hot Get paid for four boxes and
//! for moving four nested futures (docs/benchmarks.md). The order is the one the four
//! layers had: authentication before admission, so a refused caller never takes a slot.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use tower::{Layer, Service};
use tracing::Instrument;

use super::{SESSION_PATH, admission, admission::Admission, observe::Observation, oversize};
use crate::auth::Authenticator;

/// Builds [`Gate`] services.
#[derive(Clone)]
pub struct GateLayer {
    auth: Arc<Authenticator>,
    admission: Admission,
}

impl GateLayer {
    /// A gate authenticating with `auth` and admitting with `admission`.
    pub fn new(auth: Arc<Authenticator>, admission: Admission) -> Self {
        Self { auth, admission }
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Gate {
            inner,
            layer: self.clone(),
        }
    }
}

/// The gate in front of the routes.
#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    layer: GateLayer,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Gate<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        // The service that was polled ready serves this request; a clone serves the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let observation = Observation::start(&request);
        let span = observation.span();
        let Some(method) = request.uri().path().strip_prefix(SESSION_PATH) else {
            // Health and reflection: observed only (Watch and reflection streams are long-lived).
            let future = inner.call(request);
            return Box::pin(
                async move {
                    let result = future.await;
                    observation.finish(&result);
                    result
                }
                .instrument(span),
            );
        };
        let admitted = match self.layer.auth.caller_of(method, &request) {
            Ok(caller) => {
                let admitted = self
                    .layer
                    .admission
                    .admit(request.headers(), caller.identity.as_ref());
                request.extensions_mut().insert(caller);
                admitted
            }
            Err(status) => Err(status),
        };
        Box::pin(
            async move {
                let result = match admitted {
                    Err(status) => Ok(status.into_http()),
                    Ok((permit, deadline)) => {
                        // The Valkey work inside has a budget of its own from here
                        // (valkey-router's deadline.rs: UNAVAILABLE); this is the caller's.
                        let call = valkey_router::deadline::scope(inner.call(request));
                        let result = tokio::time::timeout(deadline, call).await;
                        drop(permit);
                        match result {
                            Ok(Ok(response)) => Ok(oversize::rewrite(response)),
                            Ok(Err(e)) => Err(e),
                            Err(_) => Ok(admission::deadline_exceeded(deadline).into_http()),
                        }
                    }
                };
                observation.finish(&result);
                result
            }
            .instrument(span),
        )
    }
}
