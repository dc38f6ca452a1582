//! `ferry check`: validate a configuration and its certificates, like
//! `nginx -t`, and say what it will do.

mod static_routes;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use static_routes::{FileProblem, Location};

use super::{Format, load, out};
use crate::app::{ConfigSource, StartError};
use crate::config::{ClientAuthMode, Config, ListenerKind, RouteAction, RouteConfig};
use crate::router::HostPattern;
use crate::tls::certs::name_covers;
use crate::tls::{CertError, LoadedCert, load_certificates};

/// A certificate this close to expiry is warned about.
const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);

/// Something that makes the configuration unusable: `check` fails.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The file could not be read, or is invalid.
    #[error(transparent)]
    Load(#[from] StartError),
    #[error("{source}{}", read_help(source))]
    Certificate { source: CertError },
    #[error("{path} expired on {date}")]
    Expired { path: String, date: String },
    #[error(
        "route `{route}`: no certificate covers host `{host}`; browsers will refuse it\n      \
         help: add a [[certificate]] whose names include `{host}`"
    )]
    HostNotCovered { route: String, host: String },
    #[error(
        "{0}\n      help: if this file exists only where ferry runs (a container), use `ferry check --no-files`"
    )]
    AdminToken(#[source] crate::config::AdminTokenError),
    /// A static route's `root` or (with `spa = true`) index file is not there.
    #[error("{at}: {problem}\n      help: {help}")]
    StaticFiles {
        at: Location,
        problem: FileProblem,
        help: &'static str,
    },
}

/// For a certificate file that cannot be read: it may exist only in the container.
fn read_help(e: &CertError) -> &'static str {
    match e {
        CertError::Read { .. } => {
            "\n      help: if this file exists only where ferry runs (a container), use `ferry check --no-files`"
        }
        _ => "",
    }
}

/// Something worth a look that does not stop ferry.
#[derive(Debug, thiserror::Error)]
pub enum CheckWarning {
    #[error("{path} expires in {days} days ({date})")]
    ExpiresSoon {
        path: String,
        days: u64,
        date: String,
    },
    #[error(
        "{path}: certificate {} of the chain was not issued by certificate {} (order is leaf first, then each issuer)",
        .index + 1, .index + 2
    )]
    ChainOrder { path: String, index: usize },
    #[error(
        "upstream `{upstream}`: {server} does not resolve from here now (fine if it is a container that is not up yet; ferry resolves when connecting)"
    )]
    Unresolved { upstream: String, server: String },
    #[error("{0} upstream name(s) did not resolve within 3s")]
    ResolveTimeout(usize),
    #[error(
        "route `{later}` can never match: route `{earlier}` before it matches all its requests (routes are tried in file order)\n      \
         help: move `{later}` above `{earlier}`"
    )]
    Shadowed { later: String, earlier: String },
    #[error(
        "route `{earlier}` ({what}) comes before route `{later}` and takes all its requests (routes are tried in file order, and a static route never passes a request on)\n      \
         help: move `{later}` above `{earlier}`"
    )]
    StaticTakesAll {
        earlier: String,
        what: String,
        later: String,
    },
    #[error(
        "route `{earlier}` ({what}) comes before route `{later}` and takes its requests for {hosts} (routes are tried in file order, and a static route never passes a request on)\n      \
         help: move `{later}` above `{earlier}`"
    )]
    StaticTakesHosts {
        earlier: String,
        what: String,
        later: String,
        hosts: String,
    },
    /// A static route that serves `/` has no index file: `/` gets 404.
    #[error(
        "{at}: {problem}, so `/` gets 404 (ferry never lists a directory)\n      \
         help: build the frontend into root, or set `index` to the file `/` should serve"
    )]
    NoIndex { at: Location, problem: FileProblem },
    #[error(
        "admin.addr: {addr} is reachable from other machines and [admin] has no token: whoever reaches it can read the metrics and reload ferry\n      \
         help: add `token_file = \"/run/secrets/ferry_admin_token\"` (or `token = \"...\"`) to [admin]; clients then send `Authorization: Bearer <token>`"
    )]
    RemoteAdminWithoutToken { addr: std::net::SocketAddr },
}

/// What `check` found beyond the config's own validation.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// The summary a person reads on success.
    pub summary: String,
    pub errors: Vec<CheckError>,
    pub warnings: Vec<CheckWarning>,
}

/// Loads and checks the configuration, prints the report (text or JSON),
/// and fails when it found any error.
pub(super) fn run(source: &ConfigSource, no_files: bool, format: Format) -> ExitCode {
    let name = match source {
        ConfigSource::File(path) => path.display().to_string(),
        ConfigSource::Embedded => "<embedded default>".to_owned(),
    };
    let report = match load(source) {
        Ok(config) => check(&config, no_files),
        Err(e) => CheckReport {
            errors: vec![e.into()],
            ..CheckReport::default()
        },
    };
    let ok = report.errors.is_empty();
    match format {
        Format::Json => print_json(&name, &report),
        Format::Text => print_text(&name, &report),
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_json(name: &str, report: &CheckReport) {
    let json = serde_json::json!({
        "file": name,
        "ok": report.errors.is_empty(),
        "errors": report.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "warnings": report.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "summary": report.summary,
    });
    out(&format!("{json}\n"));
}

fn print_text(name: &str, report: &CheckReport) {
    out(&report.summary);
    let color = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (yellow, red, reset) = if color {
        ("\x1b[33m", "\x1b[31m", "\x1b[0m")
    } else {
        ("", "", "")
    };
    for w in &report.warnings {
        eprintln!("{yellow}warning{reset}: {w}");
    }
    for e in &report.errors {
        eprintln!("{red}error{reset}: {e}");
    }
    if report.errors.is_empty() {
        out(&format!("{name}: configuration OK\n"));
    } else {
        eprintln!("{name}: check failed");
    }
}

/// Checks certificates and static routes' directories (unless `no_files`)
/// and describes listeners, certificates, upstreams and routes.
pub fn check(config: &Config, no_files: bool) -> CheckReport {
    let mut report = CheckReport::default();
    let certs = if no_files {
        Vec::new()
    } else {
        certificates(config, &mut report)
    };
    if !no_files {
        static_routes::files(config, &mut report);
    }
    hosts_covered(config, &certs, &mut report);
    admin(config, no_files, &mut report);
    report.warnings.extend(unresolved_upstreams(config));
    shadowed_routes(config, &mut report);
    report.summary = summary(config, &certs, no_files);
    report
}

/// A remote admin listener without a token is a warning (the network may be
/// private, as on docker-compose); an unreadable `token_file` is an error.
fn admin(config: &Config, no_files: bool, report: &mut CheckReport) {
    let Some(admin) = &config.admin else { return };
    match &admin.token {
        None if !admin.addr.ip().is_loopback() => report
            .warnings
            .push(CheckWarning::RemoteAdminWithoutToken { addr: admin.addr }),
        Some(token @ crate::config::AdminToken::File(_)) if !no_files => {
            if let Err(e) = token.resolve() {
                report.errors.push(CheckError::AdminToken(e));
            }
        }
        _ => {}
    }
}

/// Loads every certificate; reports the unreadable, the expired and the expiring.
fn certificates(config: &Config, report: &mut CheckReport) -> Vec<LoadedCert> {
    let certs = match load_certificates(&config.certificates) {
        Ok(certs) => certs,
        Err(errors) => {
            report.errors.extend(
                errors
                    .into_iter()
                    .map(|source| CheckError::Certificate { source }),
            );
            return Vec::new();
        }
    };
    for cert in &certs {
        let path = cert.config.cert.display().to_string();
        let date = date(cert.info.not_after);
        if cert.info.is_expired() {
            report.errors.push(CheckError::Expired {
                path: path.clone(),
                date,
            });
        } else if cert.info.remaining() < EXPIRY_WARNING {
            let days = cert.info.remaining().as_secs() / 86_400;
            report.warnings.push(CheckWarning::ExpiresSoon {
                path: path.clone(),
                days,
                date,
            });
        }
        if let Some(index) = cert.info.chain_out_of_order {
            report
                .warnings
                .push(CheckWarning::ChainOrder { path, index });
        }
    }
    certs
}

/// Every route host must be covered by a certificate when TLS is served.
fn hosts_covered(config: &Config, certs: &[LoadedCert], report: &mut CheckReport) {
    let serves_tls = config.listeners.iter().any(|l| l.kind == ListenerKind::Tls);
    if !serves_tls || certs.is_empty() {
        return;
    }
    for r in &config.routes {
        for host in &r.matcher.hosts {
            let covered = certs.iter().any(|c| match host {
                HostPattern::Exact(name) => c.info.names.iter().any(|n| name_covers(n, name)),
                HostPattern::Wildcard(suffix) => {
                    c.info.names.iter().any(|n| n == &format!("*{suffix}"))
                }
            });
            if !covered {
                report.errors.push(CheckError::HostNotCovered {
                    route: r.name.to_string(),
                    host: host.to_string(),
                });
            }
        }
    }
}

/// Routes an earlier route always takes (first match wins), and routes a
/// static route before them takes for some of their hosts.
fn shadowed_routes(config: &Config, report: &mut CheckReport) {
    for (j, later) in config.routes.iter().enumerate() {
        let before = &config.routes[..j];
        let warning = match before.iter().find(|e| e.matcher.covers(&later.matcher)) {
            Some(
                earlier @ RouteConfig {
                    action: RouteAction::Static(_),
                    ..
                },
            ) => Some(static_routes::takes_all(earlier, later)),
            Some(earlier) => Some(CheckWarning::Shadowed {
                later: later.name.to_string(),
                earlier: earlier.name.to_string(),
            }),
            None => static_routes::takes_some(before, later),
        };
        report.warnings.extend(warning);
    }
}

/// What ferry will do: listeners, certificates, upstreams, routes.
fn summary(config: &Config, certs: &[LoadedCert], no_files: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "listeners:");
    for l in &config.listeners {
        let what = match l.kind {
            ListenerKind::Tls if l.http2 => "TLS, HTTP/2 + HTTP/1.1".to_owned(),
            ListenerKind::Tls => "TLS, HTTP/1.1".to_owned(),
            ListenerKind::Plain => "plain HTTP/1.1".to_owned(),
            ListenerKind::RedirectHttps => format!(
                "redirects to https (port {})",
                config.https_port().unwrap_or(443)
            ),
        };
        let _ = writeln!(s, "  {:<22} {what}", l.addr);
    }
    if !config.certificates.is_empty() {
        let _ = writeln!(s, "certificates (the first is the default):");
        if no_files || certs.is_empty() {
            let why = if no_files {
                "not read: --no-files"
            } else {
                "not loaded: see errors"
            };
            for c in &config.certificates {
                let _ = writeln!(s, "  {} ({why})", c.cert.display());
                client_auth_line(&mut s, c);
            }
        }
        for cert in certs {
            let _ = writeln!(
                s,
                "  {}\n      names: {}\n      expires: {} (in {} days)",
                cert.config.cert.display(),
                cert.info.names.join(", "),
                date(cert.info.not_after),
                cert.info.remaining().as_secs() / 86_400
            );
            client_auth_line(&mut s, &cert.config);
        }
    }
    let _ = writeln!(s, "upstreams:");
    for u in &config.upstreams {
        let servers: Vec<_> = u.servers.iter().map(|a| a.as_str()).collect();
        let _ = writeln!(
            s,
            "  {:<12} {}  (connect {:?}, read {:?})",
            u.name,
            servers.join(", "),
            u.connect_timeout,
            u.read_timeout
        );
    }
    let _ = writeln!(s, "routes (first match wins):");
    for (i, r) in config.routes.iter().enumerate() {
        let action = match &r.action {
            RouteAction::Upstream(u) => match r.read_timeout {
                Some(t) => format!(
                    "-> upstream {} (read timeout {t:?})",
                    config.upstreams[*u].name
                ),
                None => format!("-> upstream {}", config.upstreams[*u].name),
            },
            RouteAction::Redirect { to, status } => format!("-> {} {to}", status.as_u16()),
            RouteAction::Static(files) if files.spa => format!(
                "-> files {} (spa: {} for missing extension-less paths)",
                files.root.display(),
                files.index
            ),
            RouteAction::Static(files) => format!("-> files {}", files.root.display()),
        };
        let compress = if r.compress { ", compressed" } else { "" };
        let _ = writeln!(
            s,
            "  {}. {:<12} {}; {} {action}{compress}",
            i + 1,
            r.name,
            r.matcher.describe_hosts(),
            r.matcher.path
        );
    }
    s
}

/// `      client certificates: required, from CA /etc/ferry/clients.pem`.
fn client_auth_line(s: &mut String, c: &crate::config::CertificateConfig) {
    if let Some(auth) = &c.client_auth {
        let mode = match auth.mode {
            ClientAuthMode::Required => "required",
            ClientAuthMode::Optional => "optional",
        };
        let _ = writeln!(
            s,
            "      client certificates: {mode}, from CA {}",
            auth.ca.display()
        );
    }
}

/// `YYYY-MM-DD` (UTC).
fn date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match time::OffsetDateTime::from_unix_timestamp(secs as i64) {
        Ok(dt) => format!(
            "{:04}-{:02}-{:02}",
            dt.year(),
            u8::from(dt.month()),
            dt.day()
        ),
        Err(_) => "?".to_owned(),
    }
}

/// Upstream names that do not resolve *now*: a warning, not an error, since
/// docker-compose services appear as their containers start.
fn unresolved_upstreams(config: &Config) -> Vec<CheckWarning> {
    use std::net::ToSocketAddrs;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut asked = 0;
    for u in &config.upstreams {
        for server in &u.servers {
            if server
                .host()
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok()
            {
                continue;
            }
            asked += 1;
            let (tx, name, server) = (tx.clone(), u.name.to_string(), server.to_string());
            std::thread::spawn(move || {
                let ok = server
                    .to_socket_addrs()
                    .is_ok_and(|mut a| a.next().is_some());
                let _ = tx.send((name, server, ok));
            });
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut warnings = Vec::new();
    let mut answered = 0;
    while answered < asked {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok((upstream, server, ok)) => {
                answered += 1;
                if !ok {
                    warnings.push(CheckWarning::Unresolved { upstream, server });
                }
            }
            Err(_) => {
                warnings.push(CheckWarning::ResolveTimeout(asked - answered));
                break;
            }
        }
    }
    warnings.sort_by_key(ToString::to_string);
    warnings
}
