//! `valkey-sessions`: load configuration, start telemetry, serve until SIGTERM or SIGINT.

use std::process::ExitCode;

use clap::Parser;
use valkey_sessions::{
    config::{Cli, Config},
    server, telemetry,
};

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
    let result = server::run(config, telemetry.metrics.clone(), shutdown_signal()).await;
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

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
