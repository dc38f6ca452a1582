//! `ferry run` (the default command): serve until a signal, then drain.

use std::process::ExitCode;

use super::{CliError, load};
use crate::app::{ConfigSource, Ferry};
use crate::config::ListenerKind;

/// Binds, serves and drains; the exit code is 0 after a clean drain.
pub(super) fn run(source: ConfigSource) -> Result<ExitCode, CliError> {
    let config = load(&source)?;
    // The blocking pool keeps tokio's default bound (512 threads): static
    // files use it for one resolve+open+stat hop per request and one read of
    // at most 256 KiB per in-flight chunk, so a download holds at most one
    // chunk and the bound caps file-read memory at 512 x 256 KiB even when
    // the disk is slow. A lower bound would queue DNS lookups (which use the
    // same pool) behind file reads.
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = config.server.workers {
        runtime.worker_threads(workers);
    }
    let runtime = runtime.enable_all().build().map_err(CliError::Runtime)?;
    let path = match source {
        ConfigSource::File(path) => Some(path),
        ConfigSource::Embedded => None,
    };
    runtime.block_on(async {
        // Before anything else: a SIGTERM during start-up must drain, not kill.
        let shutdown = crate::signal::shutdown();
        let ferry = Ferry::bind_with(config, path).await?;
        tokio::spawn(crate::signal::reload_on_hangup(ferry.reloader()));
        for (kind, addr) in ferry.local_addrs() {
            let scheme = if kind == ListenerKind::Tls {
                "https"
            } else {
                "http"
            };
            tracing::info!(url = %format!("{scheme}://{addr}"), kind = ?kind, "ready");
        }
        let pid_file = ferry.config().server.pid_file.clone();
        if let Some(path) = &pid_file {
            if let Err(e) = std::fs::write(path, format!("{}\n", std::process::id())) {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the pid file");
            }
        }
        ferry.serve(shutdown).await;
        if let Some(path) = &pid_file {
            let _ = std::fs::remove_file(path);
        }
        Ok(ExitCode::SUCCESS)
    })
}
