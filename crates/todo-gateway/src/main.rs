//! `todo-gateway`: the REST todo demo in front of valkey-sessions.

use std::process::ExitCode;

use clap::Parser;
use service_kit::{shutdown, telemetry};
use todo_gateway::{self as gateway, GatewayConfig, GatewayError};

#[tokio::main]
async fn main() -> ExitCode {
    let config = GatewayConfig::parse();
    let traces = match telemetry::init_traces(config.log_format, "todo-gateway") {
        Ok(traces) => traces,
        Err(e) => {
            eprintln!("todo-gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match gateway::run(config, shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ GatewayError::Config(_)) => {
            eprintln!("todo-gateway: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!(error = %e, "todo-gateway failed");
            ExitCode::FAILURE
        }
    };
    traces.shutdown();
    code
}
