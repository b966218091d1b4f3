//! Settings every binary of the project shares: the deployment profile and the log format.

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// Deployment profile: decides the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// One local Valkey without TLS; listens on loopback.
    #[default]
    Local,
    /// A TLS cluster (e.g. ElastiCache Serverless); listens on all interfaces, JSON logs.
    Cloud,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}
