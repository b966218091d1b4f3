//! The tokio runtime the service runs on, built from the `runtime` configuration.

use crate::config::RuntimeConfig;

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
