//! The command line's flags and commands, as clap parses them.

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
  ferry route 'wss://example.com/api/v1/ws/42' -H 'Origin: https://example.com'
  ferry probe wss://localhost:8443/ws --ca certs-dev/ca.pem --origin https://localhost:8443
  ferry cert dev --name app.localhost   a local CA (once) and a certificate browsers can trust
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
        /// `text` for people, `json` for CI.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Explain what ferry would do with a request (listener, route, upstream,
    /// headers, WebSocket origin check) without sending it.
    Route {
        /// e.g. https://example.com/api/x or wss://example.com:8000/ws
        url: String,
        /// The request method.
        #[arg(long, short = 'X', default_value = "GET")]
        method: String,
        /// A request header, 'Name: value' (repeatable), e.g. -H 'Origin: https://app.example.com'.
        #[arg(long = "header", short = 'H', value_name = "HEADER")]
        headers: Vec<String>,
        /// The client's address, as ferry would see the TCP peer, or on a
        /// `proxy_protocol` listener the PROXY header's source (decides
        /// `X-Forwarded-For` and whether `server.trusted_proxies` applies).
        #[arg(long, value_name = "IP", default_value = "192.0.2.1")]
        client: String,
        /// `text` for people, `json` for scripts.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Send a real request (or WebSocket handshake) and report each step:
    /// DNS, TCP, TLS, HTTP, upgrade, first echo — and what failed first.
    Probe {
        /// e.g. https://localhost:8443/ or wss://localhost:8443/ws
        url: String,
        /// A PEM CA certificate to verify the server with (e.g. certs-dev/ca.pem).
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// Send this Origin header (what a browser page on that origin sends).
        #[arg(long)]
        origin: Option<String>,
    },
    /// Certificates for local development.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// Tell the running ferry to reload its configuration (through the admin
    /// listener if `[admin]` is set, else by SIGHUP to `server.pid_file`).
    Reload,
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Create a local CA (once; reused) and a certificate for localhost,
    /// 127.0.0.1, ::1 and the given names; print how to trust the CA.
    Dev {
        /// Where the CA and certificate go.
        #[arg(long, default_value = "certs-dev")]
        out: PathBuf,
        /// Extra names (DNS names or IP addresses) for the certificate (repeatable).
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
        /// Replace an existing CA (browsers that trusted the old one must trust the new one).
        #[arg(long)]
        force: bool,
    },
}

/// Output format for `check` and `route`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}
