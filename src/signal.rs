//! Process signals: SIGTERM (docker stop) and SIGINT (Ctrl-C) start a graceful
//! shutdown; a second one exits at once.

/// Resolves on the first SIGTERM or SIGINT. Afterwards, another one exits the
/// process immediately (exit code 130), for an operator who will not wait.
pub async fn shutdown() {
    wait_for_signal().await;
    tokio::spawn(async {
        wait_for_signal().await;
        tracing::warn!("second signal: exiting without waiting for the drain");
        std::process::exit(130);
    });
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C will stop ferry");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
        _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "shutdown requested"),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!(signal = "ctrl-c", "shutdown requested");
}

/// Reloads on every SIGHUP, for as long as the process runs.
#[cfg(unix)]
pub async fn reload_on_hangup(reloader: std::sync::Arc<crate::reload::Reloader>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload through the admin endpoint or file changes");
            return;
        }
    };
    while hup.recv().await.is_some() {
        let _ = reloader.reload("SIGHUP").await;
    }
}

#[cfg(not(unix))]
pub async fn reload_on_hangup(_reloader: std::sync::Arc<crate::reload::Reloader>) {}
