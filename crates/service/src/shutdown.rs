//! How both services learn that they should stop: SIGTERM (orchestrators,
//! `kill`) or Ctrl-C. Each service's `run_until_stopped` takes this as a
//! future, so tests stop a service the same way with a future of their own.

/// Resolves on SIGTERM or Ctrl-C.
pub async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the process");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
