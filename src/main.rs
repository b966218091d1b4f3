//! `valkey-sessions`: load configuration, start telemetry, serve until SIGTERM or SIGINT.

use std::process::ExitCode;

use clap::Parser;
use valkey_sessions::{
    config::{Cli, Config},
    server, shutdown, telemetry,
};

/// mimalloc: fewer cycles per request than glibc malloc (docs/benchmarks.md, optimisations).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("valkey-sessions: {e}");
            return ExitCode::from(2);
        }
    };
    let telemetry = match telemetry::init(&config) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("valkey-sessions: {e}");
            return ExitCode::FAILURE;
        }
    };
    let security = match server::Security::load(&config) {
        Ok(security) => security,
        Err(e) => {
            eprintln!("valkey-sessions: {e}");
            telemetry.shutdown();
            return ExitCode::from(2);
        }
    };
    let result = server::run(
        config,
        security,
        telemetry.metrics.clone(),
        shutdown::signal(),
    )
    .await;
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "valkey-sessions failed");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}
