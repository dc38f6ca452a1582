//! Process signals: SIGTERM (docker stop) and SIGINT (Ctrl-C) start a graceful
//! shutdown, a second one exits at once; SIGHUP reloads.
//!
//! Handlers are installed when these functions are *called*, not when their
//! futures are first polled: a signal that arrives while ferry is still
//! starting must not kill it with the default action.

use std::future::Future;
use std::sync::Arc;

use crate::reload::Reloader;

/// Installs SIGTERM and SIGINT handlers now; the future resolves on the first
/// signal. Afterwards, another one exits the process immediately (code 130),
/// for an operator who will not wait for the drain.
#[cfg(unix)]
pub fn shutdown() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())
        .inspect_err(|e| tracing::error!(error = %e, "cannot listen for SIGTERM"))
        .ok();
    let mut int = signal(SignalKind::interrupt())
        .inspect_err(|e| tracing::error!(error = %e, "cannot listen for SIGINT"))
        .ok();
    async move {
        let name = next(&mut term, &mut int).await;
        tracing::info!(signal = name, "shutdown requested");
        tokio::spawn(async move {
            let name = next(&mut term, &mut int).await;
            tracing::warn!(
                signal = name,
                "second signal: exiting without waiting for the drain"
            );
            std::process::exit(130);
        });
    }
}

#[cfg(unix)]
async fn next(
    term: &mut Option<tokio::signal::unix::Signal>,
    int: &mut Option<tokio::signal::unix::Signal>,
) -> &'static str {
    async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
        match s {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    tokio::select! {
        () = recv(term) => "SIGTERM",
        () = recv(int) => "SIGINT",
    }
}

#[cfg(not(unix))]
pub fn shutdown() -> impl Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!(signal = "ctrl-c", "shutdown requested");
    }
}

/// Installs a SIGHUP handler now; the future reloads on every SIGHUP.
#[cfg(unix)]
pub fn reload_on_hangup(reloader: Arc<Reloader>) -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let hup = signal(SignalKind::hangup())
        .inspect_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP; reload through the admin endpoint or file changes"))
        .ok();
    async move {
        let Some(mut hup) = hup else { return };
        while hup.recv().await.is_some() {
            let _ = reloader.reload("SIGHUP").await;
        }
    }
}

#[cfg(not(unix))]
pub fn reload_on_hangup(_reloader: Arc<Reloader>) -> impl Future<Output = ()> + Send + 'static {
    async {}
}
