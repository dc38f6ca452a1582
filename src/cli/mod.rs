//! The `ferry` command line: the flags ([`args`]) and one module per command,
//! each returning a typed error; [`run`] prints it and picks the exit code.
//!
//! Exit codes: 0 success (or a clean drain), 1 when ferry cannot start or a
//! command finds a problem, 2 for bad command-line usage.

mod args;
mod cert;
mod check;
mod probe;
mod reload;
mod route;
mod serve;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

pub use args::{CertCommand, Cli, Command, Format};

use crate::app::{self, ConfigSource, StartError};
use crate::config::Config;
use crate::tls::dev::DevCertError;

/// Why a command could not do its job (a problem it *found*, such as a
/// failed check, is its result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// A `ferry route` argument that is not a URL, header or address.
    #[error(transparent)]
    Query(#[from] route::QueryError),
    #[error(transparent)]
    Reload(#[from] reload::ReloadCommandError),
    #[error(transparent)]
    DevCert(#[from] DevCertError),
}

impl CliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Query(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

/// Runs the command `cli` asks for; the config comes from `-c`, else
/// `$FERRY_CONFIG`, else `./proxy.toml`, else the embedded default.
pub fn run(cli: Cli) -> ExitCode {
    let env = std::env::var("FERRY_CONFIG").ok();
    let source = app::config_source(cli.config.as_deref(), env.as_deref());
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => serve::run(source),
        Command::Check { no_files, format } => Ok(check::run(&source, no_files, format)),
        Command::Route {
            url,
            method,
            headers,
            client,
            format,
        } => route::run(&source, &url, &method, &headers, &client, format),
        Command::Probe { url, ca, origin } => probe::run(&url, ca.as_deref(), origin.as_deref()),
        Command::Cert {
            command: CertCommand::Dev { out, names, force },
        } => cert::dev(&out, &names, force),
        Command::Reload => reload::run(&source),
    };
    result.unwrap_or_else(|e| {
        eprintln!("ferry: {e}");
        e.exit_code()
    })
}

/// Prints to stdout, ignoring a closed pipe (`ferry check | head`).
fn out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Loads the configuration; the embedded default says so on stdout (and
/// creates its development certificate on first use).
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

/// A runtime for a command that makes a few network calls.
fn small_runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
}
