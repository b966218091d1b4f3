//! The tower layer that authenticates session RPCs: health and reflection pass untouched.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::{BoxFuture, Either};
use tower::{Layer, Service};

use super::Authenticator;
use crate::tls::PeerInfo;

/// gRPC path prefix of the session API.
const SESSION_PATH: &str = "/session.v1.SessionService/";

/// Builds [`Auth`] services sharing one authenticator.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    /// A layer deciding with `auth`.
    pub fn new(auth: Arc<Authenticator>) -> Self {
        Self { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The authenticating service: inserts a [`super::Caller`] or answers UNAUTHENTICATED /
/// PERMISSION_DENIED itself.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Auth<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, BoxFuture<'static, Result<Self::Response, Self::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let Some(method) = request.uri().path().strip_prefix(SESSION_PATH) else {
            return Either::Left(self.inner.call(request));
        };
        let cert = request
            .extensions()
            .get::<PeerInfo>()
            .and_then(|p| p.cert_identity.as_ref());
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        match self.auth.authorize(method, authorization, cert) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Either::Left(self.inner.call(request))
            }
            Err(rejection) => {
                metrics::counter!("grpc_auth_rejected_total", "reason" => rejection.as_str())
                    .increment(1);
                let status = rejection.status(method);
                Either::Right(Box::pin(async move { Ok(status.into_http()) }))
            }
        }
    }
}
