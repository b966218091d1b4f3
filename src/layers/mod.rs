//! Tower layers around the gRPC routes: observation outermost, then admission.

mod admission;
mod connections;
mod observe;

pub use admission::AdmissionLayer;
pub use connections::{Counted, counted};
pub use observe::ObserveLayer;

/// gRPC path prefix of the session API; only these requests are limited and deadlined (health
/// Watch and reflection streams are long-lived by design).
const SESSION_PATH: &str = "/session.v1.SessionService/";
