//! `health-probe`: exits 0 when a grpc.health.v1 server reports SERVING, 1 otherwise.
//!
//! Container images without a shell (the runtime image is distroless) need a binary for
//! Docker's HEALTHCHECK and ECS container health checks; this asks the same question as
//! Kubernetes' native gRPC probe, so every platform sees the same truth about Valkey.

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// Command line of the probe.
#[derive(Debug, Parser)]
#[command(
    name = "health-probe",
    version,
    about = "Check a grpc.health.v1 server"
)]
struct Args {
    /// Server to ask.
    #[arg(
        long,
        env = "HEALTH_PROBE_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    addr: String,
    /// Service name to check; empty means the server as a whole.
    #[arg(long, default_value = "")]
    service: String,
    /// TLS trust and client certificate when the port speaks TLS (`https://` address).
    #[command(flatten)]
    caller: session_proto::caller::CallerOptions,
    /// Deadline for connecting and answering together.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match tokio::time::timeout(args.timeout, check(&args)).await {
        Ok(Ok(ServingStatus::Serving)) => ExitCode::SUCCESS,
        Ok(Ok(status)) => {
            eprintln!("health-probe: {} is {}", args.addr, status.as_str_name());
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("health-probe: {}: {e}", args.addr);
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!(
                "health-probe: {}: no answer within {:?}",
                args.addr, args.timeout
            );
            ExitCode::FAILURE
        }
    }
}

async fn check(args: &Args) -> Result<ServingStatus, Box<dyn std::error::Error>> {
    let channel = args.caller.endpoint(&args.addr)?.connect().await?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: args.service.clone(),
        })
        .await?;
    Ok(response.into_inner().status())
}
