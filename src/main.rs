//! `valkey-sessions`: load configuration, start telemetry, build, serve until SIGTERM or SIGINT.

use std::process::ExitCode;

use clap::Parser;
use service_kit::shutdown;
use valkey_sessions::{
    config::{Cli, Config},
    runtime,
    server::Prepared,
    telemetry,
};

/// mimalloc: fewer cycles per request than glibc malloc (docs/benchmarks.md).
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
    let telemetry = match telemetry::init(&config.log) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("valkey-sessions: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        commit = env!("SERVICE_BUILD_COMMIT"),
        profile = ?config.profile,
        "valkey-sessions starting"
    );
    if !config.runtime.lifo_slot && !runtime::CAN_DISABLE_LIFO_SLOT {
        tracing::info!(
            "runtime.lifo_slot = false needs a build with --cfg tokio_unstable; tokio's LIFO slot stays on"
        );
    }
    // Settings the domain refuses and unusable security files stop the process like a bad
    // configuration key does (exit code 2), before anything listens.
    let prepared = match Prepared::new(config) {
        Ok(prepared) => prepared,
        Err(e) => {
            eprintln!("valkey-sessions: {e}");
            telemetry.shutdown();
            return ExitCode::from(2);
        }
    };
    let result = match prepared.build(telemetry.metrics.clone()).await {
        Ok(server) => server.serve(shutdown::signal()).await,
        Err(e) => Err(e),
    };
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
