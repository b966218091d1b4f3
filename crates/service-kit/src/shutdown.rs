//! The process-wide stop signal shared by the binaries.

use std::future::Future;

/// Installs the SIGTERM and SIGINT handlers at once and resolves on the first of them.
///
/// The handlers are installed by this call, not when the future is first polled: a signal that
/// arrives between start-up and the first poll (a supervisor stopping a process that has just
/// logged "listening") is then a graceful stop instead of the default disposition's kill.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        // Without a handler (which only fails if the runtime has no signal driver) that signal
        // keeps its default action; the other one still stops the process gracefully.
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async fn first(s: Option<Signal>) {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        async move {
            tokio::select! {
                _ = first(term) => {}
                _ = first(int) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
