//! `todo-gateway`: the REST todo demo in front of valkey-sessions.

use std::process::ExitCode;

use clap::Parser;
use valkey_sessions::{
    gateway::{self, GatewayConfig},
    shutdown, telemetry,
};

#[tokio::main]
async fn main() -> ExitCode {
    let config = GatewayConfig::parse();
    if let Err(e) = config.validate() {
        eprintln!("todo-gateway: {e}");
        return ExitCode::from(2);
    }
    let traces = match telemetry::init_traces(config.log_format, "todo-gateway") {
        Ok(traces) => traces,
        Err(e) => {
            eprintln!("todo-gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match gateway::run(config, shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "todo-gateway failed");
            ExitCode::FAILURE
        }
    };
    traces.shutdown();
    code
}
