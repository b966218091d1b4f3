//! Records which source the service binary was built from, for its `--version` and its start-up
//! log line: `SOURCE_COMMIT` when the build sets it (the container build passes it as a build
//! argument, having no `.git`), else `git rev-parse`, else "unknown". The proto is compiled once,
//! by crates/session-proto.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_COMMIT");
    let commit = std::env::var("SOURCE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // A new commit or checkout rebuilds this; nothing else about .git matters.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{head}");
        }
    }
    // Not under VALKEY_SESSIONS_: cargo also sets this variable for `cargo run` and `cargo test`,
    // where the configuration would read it as a key.
    println!("cargo:rustc-env=SERVICE_BUILD_COMMIT={commit}");
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}
