//! What the project's servers (the gRPC service and the todo gateway) share: TLS on accepted
//! sockets with certificate reload and handshakes off the accept loop, connection counting, file
//! reloading, logs, traces and metrics set-up, and shutdown signals.

pub mod connections;
mod profile;
pub mod reload;
pub mod shutdown;
pub mod telemetry;
pub mod tls;

pub use profile::{LogFormat, Profile};
