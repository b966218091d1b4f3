//! `session-bench`: the load generator of valkey-sessions. See `docs/benchmarks.md`.

mod args;
mod cpu;
mod report;
mod workload;

use std::{
    process::ExitCode,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use clap::Parser;
use tokio::time::Instant;

use crate::{args::Args, report::Report, report::Stats, workload::Workload};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("session-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<(), String> {
    args.validate()?;
    let clients = workload::connect(args).await?;
    let started = Instant::now();
    let workload = Arc::new(Workload::populate(args, clients).await?);
    eprintln!(
        "session-bench: {} sessions of {} x {} B created in {:.2}s",
        workload.len(),
        args.attributes,
        args.value_size,
        started.elapsed().as_secs_f64()
    );
    if args.populate_only {
        return Ok(());
    }

    let measure_from = Instant::now() + args.warmup;
    let end = measure_from + args.duration;
    // Each task gets an equal share of the rate.
    let pace = args
        .rate
        .map(|rate| Duration::from_secs_f64(args.concurrency as f64 / rate as f64));
    let budget = Arc::new(AtomicU64::new(args.requests.unwrap_or(u64::MAX)));
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|task| {
            // Spread the workers over one pace interval: N workers starting together would send
            // bursts of N requests, and the bursts' queueing would be measured as latency.
            let phase = pace
                .map(|pace| pace.mul_f64(task as f64 / args.concurrency as f64))
                .unwrap_or_default();
            tokio::spawn(workload.clone().worker(
                task,
                measure_from,
                end,
                pace,
                phase,
                budget.clone(),
            ))
        })
        .collect();
    // The CPU mark is taken when measuring starts, so population and warm-up are not counted.
    let mark = {
        let pid = args.server_pid;
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from).await;
            cpu::Mark::now(pid)
        })
    };
    let mut stats = Stats::new();
    for task in tasks {
        stats.merge(task.await.map_err(|e| format!("worker failed: {e}"))?);
    }
    let measured = Instant::now()
        .min(end)
        .saturating_duration_since(measure_from);

    let usage = mark
        .await
        .map_err(|e| format!("cpu sampler failed: {e}"))?
        .since(args.server_pid);
    let report = Report::new(args, &stats, measured, usage);
    print!("{}", report.text());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).expect("the report serialises");
        std::fs::write(path, json).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}
