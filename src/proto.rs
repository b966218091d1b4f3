//! Generated protobuf and gRPC code for the `session.v1` API.

#![allow(
    missing_docs,
    clippy::doc_lazy_continuation,
    clippy::large_enum_variant
)]

tonic::include_proto!("session.v1");

/// Encoded `FileDescriptorSet` of the API, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("session_descriptor");
