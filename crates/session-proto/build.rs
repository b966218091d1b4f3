//! Generates the gRPC code for the repository's `proto/session/v1/session.proto` (the proto's
//! one home) and the file descriptor set that server reflection serves and RPC names come from.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("session_descriptor.bin"))
        .compile_protos(&["../../proto/session/v1/session.proto"], &["../../proto"])?;
    println!("cargo:rerun-if-changed=../../proto");
    Ok(())
}
