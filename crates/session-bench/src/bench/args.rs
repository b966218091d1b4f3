//! Command-line options of session-bench.

use std::{path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};

/// Load generator for valkey-sessions: closed-loop (or fixed-rate) unary RPCs, HDR latency.
#[derive(Debug, Clone, Parser)]
#[command(name = "session-bench", version, about)]
pub struct Args {
    /// The service's gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub addr: String,

    /// TLS trust, client certificate and bearer token for the service (as any caller).
    #[command(flatten)]
    pub caller: session_proto::caller::CallerOptions,

    /// What to send: one RPC kind, or `mixed` (80% Get, 15% Put, 5% Create + Delete).
    /// `delete` removes each working-set session once, so it measures at most `--sessions` requests.
    #[arg(long, value_enum, default_value = "get")]
    pub op: Op,

    /// Requests in flight: one task per slot, each sending its next request when the last returns.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,

    /// HTTP/2 connections the requests are spread over (round robin per task).
    #[arg(long, default_value_t = 4)]
    pub connections: usize,

    /// How long to measure (after the warm-up).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Load before measuring, not recorded.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,

    /// Bytes per attribute value.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,

    /// Attributes per session.
    #[arg(long, default_value_t = 5)]
    pub attributes: usize,

    /// Sessions created before measuring (the working set Gets and Puts pick from).
    #[arg(long, default_value_t = 10_000)]
    pub sessions: usize,

    /// Spread the working set over this many principals (`bench-<n>`), sessions/principals
    /// each; 0 creates anonymous sessions. `list` and `revoke-all` need it.
    #[arg(long, default_value_t = 0)]
    pub principals: usize,

    /// A second instance of the service (`--op coherence`): Puts go there, Gets here.
    #[arg(long)]
    pub peer: Option<String>,

    /// Sessions per ListSessions page (`--op list`).
    #[arg(long, default_value_t = 20)]
    pub page_size: u32,

    /// Fixed total rate in requests per second instead of closed loop; latency is then measured
    /// from each request's scheduled time, so a stall is not hidden (coordinated omission).
    #[arg(long)]
    pub rate: Option<u64>,

    /// Gets ask for CONSISTENCY_STRONG (the primary) instead of eventual.
    #[arg(long)]
    pub strong: bool,

    /// Create the working set, print nothing but its size, and exit (for memory measurements).
    #[arg(long)]
    pub populate_only: bool,

    /// Stop after this many measured requests (for exact command counts), even before `duration`.
    #[arg(long)]
    pub requests: Option<u64>,

    /// The service's process id: its CPU time during the measurement is reported per 1000 RPCs
    /// (Linux /proc), next to the load generator's own.
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The request mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Only Create (the sessions are left to expire).
    Create,
    /// Only Get.
    Get,
    /// Only Put of one attribute.
    Put,
    /// Delete of each working-set session once, in order; the run ends when all are gone.
    Delete,
    /// 80% Get, 15% Put, 5% Create followed by Delete of the new session.
    Mixed,
    /// ListSessions (first page) of a random principal of the working set.
    List,
    /// RevokeSessions of each principal once, in order; the run ends when all are revoked.
    RevokeAll,
    /// A Put on `--peer`, then eventual Gets here until they return the new version: the time
    /// from the Put's acknowledgement to this instance no longer serving the old version.
    Coherence,
}

impl Args {
    /// Rejects combinations that would measure nothing.
    pub fn validate(&self) -> Result<(), String> {
        if self.concurrency == 0 || self.connections == 0 {
            return Err("--concurrency and --connections must be at least 1".into());
        }
        if self.sessions == 0 && matches!(self.op, Op::Get | Op::Put | Op::Delete | Op::Mixed) {
            return Err("--sessions must be at least 1 for get, put, delete and mixed".into());
        }
        if self.principals == 0 && matches!(self.op, Op::List | Op::RevokeAll) {
            return Err("--principals must be at least 1 for list and revoke-all".into());
        }
        if self.principals > self.sessions.max(1) {
            return Err("--principals must not exceed --sessions".into());
        }
        if self.op == Op::Coherence && (self.peer.is_none() || self.sessions == 0) {
            return Err("--op coherence needs --peer and --sessions >= 1".into());
        }
        if self.rate == Some(0) {
            return Err("--rate must be positive".into());
        }
        Ok(())
    }
}
