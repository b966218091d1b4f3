//! The tokio runtime the service runs on, built from the `runtime` configuration section.

use serde::{Deserialize, Serialize};

/// The tokio runtime.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Worker threads; 0 means one per CPU.
    pub worker_threads: usize,
    /// tokio's LIFO slot: a task woken by the running task runs next on the same worker. Off by
    /// default: with it, fred's connection task ran right after each request queued its command
    /// and flushed one command per write; without it, the commands of concurrent requests share a
    /// write (docs/benchmarks.md). Only a build with `--cfg tokio_unstable` (the
    /// repository's `.cargo/config.toml`) can turn the slot off; other builds keep it.
    pub lifo_slot: bool,
}

impl Default for RuntimeConfig {
    /// One worker per CPU, the LIFO slot off (in both profiles).
    fn default() -> Self {
        Self {
            worker_threads: 0,
            lifo_slot: false,
        }
    }
}

/// A multi-threaded runtime with I/O and timers, as `config` asks.
pub fn build(config: &RuntimeConfig) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if config.worker_threads > 0 {
        builder.worker_threads(config.worker_threads);
    }
    #[cfg(tokio_unstable)]
    if !config.lifo_slot {
        builder.disable_lifo_slot();
    }
    builder.build()
}

/// Whether this build can turn tokio's LIFO slot off (see [`RuntimeConfig::lifo_slot`]).
pub const CAN_DISABLE_LIFO_SLOT: bool = cfg!(tokio_unstable);
