//! Authenticating one request of the session API, for the gate layer ([`crate::layers`]).

use tonic::Status;

use super::{Authenticator, Caller};
use service_kit::tls::PeerInfo;

impl Authenticator {
    /// The [`super::Caller`] of `request`, a call of the session API's `method`, for the service
    /// to find in the request's extensions. A refused call is counted by reason and answered
    /// with the status to send.
    pub fn caller_of<B>(&self, method: &str, request: &http::Request<B>) -> Result<Caller, Status> {
        let peer = request.extensions().get::<PeerInfo>();
        let cert = peer.and_then(|p| p.cert_identity.as_ref());
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        // A certificate the CA issued without a URI or DNS SAN names nobody: its holder is not
        // an anonymous caller (who, with auth optional, would have every RPC).
        let nameless =
            authorization.is_none() && cert.is_none() && peer.is_some_and(|p| p.client_certificate);
        let decided = if nameless {
            Err(super::Rejection::UnknownIdentity)
        } else {
            self.authorize(method, authorization, cert)
        };
        decided.map_err(|rejection| {
            metrics::counter!("grpc_auth_rejected_total", "reason" => rejection.as_str())
                .increment(1);
            rejection.status(method)
        })
    }
}
