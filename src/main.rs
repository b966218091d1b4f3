//! `valkey-sessions`: load configuration, start telemetry, serve until SIGTERM or SIGINT.

use std::process::ExitCode;

use clap::Parser;
use valkey_sessions::{
    config::{Cli, Config},
    runtime, server, shutdown, telemetry,
};

/// mimalloc: fewer cycles per request than glibc malloc (docs/benchmarks.md, optimisations).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("valkey-sessions: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime::build(&config.runtime) {
        Ok(runtime) => runtime.block_on(serve(config)),
        Err(e) => {
            eprintln!("valkey-sessions: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> ExitCode {
    let telemetry = match telemetry::init(&config) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("valkey-sessions: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !config.runtime.lifo_slot && !runtime::CAN_DISABLE_LIFO_SLOT {
        tracing::info!(
            "runtime.lifo_slot = false needs a build with --cfg tokio_unstable; tokio's LIFO slot stays on"
        );
    }
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
