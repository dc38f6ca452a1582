//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// ferry: a TLS-terminating edge reverse proxy for HTTP/1.1, HTTP/2 and WebSockets.
#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about,
    after_help = "\
Examples:
  ferry                          serve ./proxy.toml (or the built-in default: https://127.0.0.1:8443 -> http://127.0.0.1:8000)
  ferry run -c /etc/ferry/proxy.toml
  ferry check -c proxy.toml      validate config, certificates and keys, like `nginx -t`
  ferry check --no-files -c proxy.toml.example
  ferry reload -c proxy.toml     reload the running ferry (or: kill -HUP <pid>, docker kill -s HUP <container>)
  FERRY_LOG=debug ferry          more logging (FERRY_LOG or RUST_LOG take tracing filters)

Config file: -c FILE, else $FERRY_CONFIG, else ./proxy.toml, else the built-in default."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Configuration file (default: $FERRY_CONFIG, then ./proxy.toml).
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve (the default when no command is given).
    Run,
    /// Check the configuration, certificates and keys; exit non-zero on any problem.
    Check {
        /// Check the configuration only, not the certificate and key files
        /// (for a config whose files exist only inside the container).
        #[arg(long)]
        no_files: bool,
    },
    /// Tell the running ferry to reload its configuration (through the admin
    /// listener if `[admin]` is set, else by SIGHUP to `server.pid_file`).
    Reload,
}
