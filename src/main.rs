//! The `ferry` binary: flags → logging → library → exit code.
//!
//! Exit codes: 0 success (or a clean drain), 1 when ferry cannot start or
//! `check` finds a problem, 2 for bad command-line usage (clap).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use ferry::app::{self, ConfigSource, Ferry, StartError};
use ferry::cli::{CertCommand, Cli, Command, Format};
use ferry::config::{Config, ListenerKind};

fn main() -> ExitCode {
    let cli = Cli::parse();
    ferry::telemetry::init();
    let env = std::env::var("FERRY_CONFIG").ok();
    let source = app::config_source(cli.config.as_deref(), env.as_deref());
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(source),
        Command::Check { no_files, format } => check(source, no_files, format),
        Command::Route {
            url,
            method,
            headers,
        } => route(source, &url, &method, &headers),
        Command::Probe { url, ca, origin } => probe(&url, ca.as_deref(), origin.as_deref()),
        Command::Cert {
            command: CertCommand::Dev { out, names, force },
        } => cert_dev(&out, &names, force),
        Command::Reload => reload(source),
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
        // Before anything else: a SIGTERM during start-up must drain, not kill.
        let shutdown = ferry::signal::shutdown();
        let ferry = match Ferry::bind_with(config, path).await {
            Ok(ferry) => ferry,
            Err(e) => {
                eprintln!("ferry: {e}");
                return ExitCode::FAILURE;
            }
        };
        tokio::spawn(ferry::signal::reload_on_hangup(ferry.reloader()));
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
        ExitCode::SUCCESS
    })
}

fn check(source: ConfigSource, no_files: bool, format: Format) -> ExitCode {
    let name = match &source {
        ConfigSource::File(path) => path.display().to_string(),
        ConfigSource::Embedded => "<embedded default>".to_owned(),
    };
    let (summary, errors, warnings) = match load(&source) {
        Ok(config) => {
            let report = ferry::check::check(&config, no_files);
            (report.summary, report.errors, report.warnings)
        }
        Err(e) => (String::new(), vec![e.to_string()], Vec::new()),
    };
    if format == Format::Json {
        let json = serde_json::json!({
            "file": name,
            "ok": errors.is_empty(),
            "errors": errors,
            "warnings": warnings,
            "summary": summary,
        });
        out(&format!("{json}\n"));
        return if errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    out(&summary);
    let color = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (yellow, red, reset) = if color {
        ("\x1b[33m", "\x1b[31m", "\x1b[0m")
    } else {
        ("", "", "")
    };
    for w in &warnings {
        eprintln!("{yellow}warning{reset}: {w}");
    }
    for e in &errors {
        eprintln!("{red}error{reset}: {e}");
    }
    if errors.is_empty() {
        out(&format!("{name}: configuration OK\n"));
        ExitCode::SUCCESS
    } else {
        eprintln!("{name}: check failed");
        ExitCode::FAILURE
    }
}

fn route(source: ConfigSource, url: &str, method: &str, headers: &[String]) -> ExitCode {
    let config = match load(&source) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::FAILURE;
        }
    };
    let probe = match ferry::explain::Probe::parse(url, method, headers) {
        Ok(probe) => probe,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::from(2);
        }
    };
    let names: Option<Vec<String>> = ferry::tls::load_certificates(&config.certificates)
        .ok()
        .map(|certs| certs.iter().flat_map(|c| c.info.names.clone()).collect());
    let explanation = ferry::explain::explain(&config, &probe, names.as_deref());
    out(&explanation.text);
    if explanation.served {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn cert_dev(dir: &Path, names: &[String], force: bool) -> ExitCode {
    if force {
        let paths = ferry::tls::dev::DevCerts::in_dir(dir);
        for p in [&paths.ca_cert, &paths.ca_key] {
            let _ = std::fs::remove_file(p);
        }
    }
    let certs = match ferry::tls::dev::ensure(dir, names, true) {
        Ok(certs) => certs,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ca = certs.ca_cert.display();
    let mut all: Vec<String> = ferry::tls::dev::LOCAL_NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    all.extend(names.iter().cloned());
    out(&format!(
        "{status} {ca}\ncertificate for {names}:\n  {cert}\n  {key} (private key, mode 0600)\n\n\
         Use them in proxy.toml:\n  [[certificate]]\n  cert = \"{cert}\"\n  key = \"{key}\"\n\n\
         Trust the CA once per machine (then browsers show no warning):\n  \
         Debian/Ubuntu:      sudo cp {ca} /usr/local/share/ca-certificates/ferry-dev.crt && sudo update-ca-certificates\n  \
         Chromium/Firefox:   certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n ferry-dev -i {ca}\n  \
         (Firefox profile):  certutil -d sql:$HOME/.mozilla/firefox/<profile> -A -t C,, -n ferry-dev -i {ca}\n  \
         macOS:              sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {ca}\n  \
         curl:               curl --cacert {ca} https://localhost:8443/\n",
        status = if certs.created_ca {
            "created the local CA"
        } else {
            "reusing the local CA (pass --force to replace it)"
        },
        names = all.join(", "),
        cert = certs.cert.display(),
        key = certs.key.display(),
    ));
    ExitCode::SUCCESS
}

fn reload(source: ConfigSource) -> ExitCode {
    let config = match load(&source) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(admin) = &config.admin {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let result = match runtime {
            Ok(rt) => rt.block_on(post_reload(admin.addr)),
            Err(e) => Err(e.to_string()),
        };
        return match result {
            Ok((200, body)) => {
                out(&body);
                ExitCode::SUCCESS
            }
            Ok((_, body)) => {
                eprint!("{body}");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!(
                    "ferry: cannot reach the admin listener at {}: {e}\n  is ferry running with this config?",
                    admin.addr
                );
                ExitCode::FAILURE
            }
        };
    }
    if let Some(pid_file) = &config.server.pid_file {
        let pid = match std::fs::read_to_string(pid_file) {
            Ok(pid) => pid.trim().to_owned(),
            Err(e) => {
                eprintln!(
                    "ferry: cannot read {}: {e}\n  is ferry running with this config?",
                    pid_file.display()
                );
                return ExitCode::FAILURE;
            }
        };
        let sent = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status();
        return match sent {
            Ok(status) if status.success() => {
                out(&format!(
                    "sent SIGHUP to ferry (pid {pid}); its log says whether the reload succeeded\n"
                ));
                ExitCode::SUCCESS
            }
            _ => {
                eprintln!(
                    "ferry: cannot signal pid {pid} (from {})",
                    pid_file.display()
                );
                ExitCode::FAILURE
            }
        };
    }
    eprintln!(
        "ferry: this config has no [admin] listener and no server.pid_file, so `ferry reload` cannot find the process.\n  \
         add `[admin] addr = \"127.0.0.1:9901\"`, or send SIGHUP yourself: kill -HUP <pid>, docker kill -s HUP <container>"
    );
    ExitCode::FAILURE
}

/// `POST /reload` on the admin listener; returns the status and body.
async fn post_reload(addr: std::net::SocketAddr) -> Result<(u16, String), String> {
    use http_body_util::{BodyExt, Empty};
    let stream = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .map_err(|_| "timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::post("/reload")
        .header("host", addr.to_string())
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn probe(url: &str, ca: Option<&Path>, origin: Option<&str>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(ferry::probe::probe(url, ca, origin));
    out(&report.text);
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
