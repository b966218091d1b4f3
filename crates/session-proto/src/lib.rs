//! The `session.v1` API of valkey-sessions: the generated messages, client and server, the
//! descriptor set reflection serves, and what is derived from it (RPC names, error reasons), so
//! that no list in the workspace can drift from the proto.

#[allow(
    missing_docs,
    clippy::doc_lazy_continuation,
    clippy::large_enum_variant
)]
mod generated {
    tonic::include_proto!("session.v1");
}

#[cfg(feature = "caller")]
pub mod caller;
mod descriptor;

pub use descriptor::{rpc_names, service_name};
pub use generated::*;

/// Encoded `FileDescriptorSet` of the API, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("session_descriptor");

/// The `domain` of every google.rpc.ErrorInfo detail the service sends (see [`ErrorReason`]).
pub const ERROR_DOMAIN: &str = "valkey-sessions";

impl ErrorReason {
    /// The ErrorInfo `reason` string: the enum value's name in the proto.
    pub fn reason(self) -> &'static str {
        self.as_str_name()
    }
}
