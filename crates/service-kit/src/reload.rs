//! Re-reads files that may be rotated on disk (certificates, token hashes): polls their content,
//! and on a change loads them again; a load that fails keeps what was loaded before.
//!
//! Polling the content, not inotify, because Kubernetes and cert-manager rotate mounted secrets by
//! swapping symlinks, which file watches miss or report on the wrong path.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    path::PathBuf,
    time::Duration,
};

/// Calls `load` whenever the content of `paths` changes, checking every `every`; `what` names
/// the material in logs and in the `reloads_total` metric given.
pub fn spawn<F>(
    what: &'static str,
    metric: &'static str,
    paths: Vec<PathBuf>,
    every: Duration,
    mut load: F,
) where
    F: FnMut() -> Result<(), String> + Send + 'static,
{
    let mut last = fingerprint(&paths);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = fingerprint(&paths);
            if now == last {
                continue;
            }
            // Remember the new content even when it fails to load: the error is logged once per
            // change, not on every tick, and the next change is tried again.
            last = now;
            match load() {
                Ok(()) => {
                    metrics::counter!(metric, "outcome" => "ok").increment(1);
                    tracing::info!(what, "reloaded");
                }
                Err(e) => {
                    metrics::counter!(metric, "outcome" => "error").increment(1);
                    tracing::error!(what, error = %e, "reload failed; keeping the previous version");
                }
            }
        }
    });
}

/// A hash of the files' contents; an unreadable file hashes as absent.
fn fingerprint(paths: &[PathBuf]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for path in paths {
        std::fs::read(path).ok().hash(&mut hasher);
    }
    hasher.finish()
}
