//! The tower layer around the gRPC routes ([`GateLayer`]: observation, then for the session API
//! authentication, admission and the oversized-message status), and the connection counter.

mod admission;
mod connections;
mod gate;
mod observe;
mod oversize;

pub use admission::Admission;
pub use connections::{Counted, counted};
pub use gate::{Gate, GateLayer};

/// gRPC path prefix of the session API; only these requests are authenticated, limited and
/// deadlined (health Watch and reflection streams are long-lived by design).
const SESSION_PATH: &str = "/session.v1.SessionService/";
