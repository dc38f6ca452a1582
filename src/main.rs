//! The `ferry` binary: flags → logging → library → exit code.
//!
//! Exit codes: 0 success (or a clean drain), 1 when ferry cannot start or
//! `check` finds a problem, 2 for bad command-line usage (clap).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use ferry::app::{self, ConfigSource, Ferry, StartError};
use ferry::cli::{Cli, Command};
use ferry::config::{Config, ListenerKind};

fn main() -> ExitCode {
    let cli = Cli::parse();
    ferry::telemetry::init();
    let env = std::env::var("FERRY_CONFIG").ok();
    let source = app::config_source(cli.config.as_deref(), env.as_deref());
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(source),
        Command::Check { no_files } => check(source, no_files),
    }
}

/// Prints to stdout, ignoring a closed pipe (`ferry check | head`).
fn out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn load(source: &ConfigSource) -> Result<Config, StartError> {
    match source {
        ConfigSource::File(path) => Ok(Config::load(path)?),
        ConfigSource::Embedded => {
            let (config, certs) = app::embedded_config(Path::new("certs-dev"))?;
            out(&format!(
                "ferry: no proxy.toml found (and no -c or FERRY_CONFIG): using the built-in default\n  \
                 https://{} -> http://{}\n  certificate: {} (signed by the development CA {}{})\n  \
                 write a proxy.toml (see proxy.toml.example) to configure routes\n",
                app::EMBEDDED_LISTEN,
                app::EMBEDDED_UPSTREAM,
                certs.cert.display(),
                certs.ca_cert.display(),
                if certs.created_ca {
                    ", created now: trust it to avoid browser warnings"
                } else {
                    ""
                },
            ));
            Ok(config)
        }
    }
}

fn run(source: ConfigSource) -> ExitCode {
    let config = match load(&source) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = config.server.workers {
        runtime.worker_threads(workers);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let path = match &source {
        ConfigSource::File(path) => Some(path.clone()),
        ConfigSource::Embedded => None,
    };
    runtime.block_on(async {
        let ferry = match Ferry::bind_with(config, path).await {
            Ok(ferry) => ferry,
            Err(e) => {
                eprintln!("ferry: {e}");
                return ExitCode::FAILURE;
            }
        };
        for (kind, addr) in ferry.local_addrs() {
            let scheme = if kind == ListenerKind::Tls {
                "https"
            } else {
                "http"
            };
            tracing::info!(url = %format!("{scheme}://{addr}"), kind = ?kind, "ready");
        }
        tokio::spawn(ferry::signal::reload_on_hangup(ferry.reloader()));
        ferry.serve(ferry::signal::shutdown()).await;
        ExitCode::SUCCESS
    })
}

fn check(source: ConfigSource, no_files: bool) -> ExitCode {
    let name = match &source {
        ConfigSource::File(path) => path.display().to_string(),
        ConfigSource::Embedded => "<embedded default>".to_owned(),
    };
    let config = match load(&source) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}\n\n{name}: check failed");
            return ExitCode::FAILURE;
        }
    };
    let report = ferry::check::check(&config, no_files);
    out(&report.summary);
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    if report.errors.is_empty() {
        out(&format!("{name}: configuration OK\n"));
        ExitCode::SUCCESS
    } else {
        eprintln!("{name}: check failed with {} error(s)", report.errors.len());
        ExitCode::FAILURE
    }
}
