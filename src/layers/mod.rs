//! Tower layers around the gRPC routes: observation outermost, then the oversized-message
//! status, authentication and admission.

mod admission;
mod connections;
mod observe;
mod oversize;

pub use admission::AdmissionLayer;
pub use connections::{Counted, counted};
pub use observe::ObserveLayer;
pub use oversize::OversizeLayer;

/// gRPC path prefix of the session API; only these requests are limited and deadlined (health
/// Watch and reflection streams are long-lived by design).
const SESSION_PATH: &str = "/session.v1.SessionService/";
