//! `ferry check`: validate a configuration and its certificates, and say what it will do.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::config::{Config, ListenerKind, RouteAction};
use crate::router::{HostPattern, PathMatch};
use crate::tls::certs::name_covers;
use crate::tls::{CertError, LoadedCert, load_certificates};

/// What `check` found beyond the config's own validation.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// The summary a person reads on success.
    pub summary: String,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);

/// Checks certificates (unless `no_files`) and describes listeners, certificates, upstreams and routes.
pub fn check(config: &Config, no_files: bool) -> CheckReport {
    let mut report = CheckReport::default();
    let certs: Vec<LoadedCert> = if no_files {
        Vec::new()
    } else {
        match load_certificates(&config.certificates) {
            Ok(certs) => certs,
            Err(errors) => {
                for e in &errors {
                    let mut msg = e.to_string();
                    if matches!(e, CertError::Read { .. }) {
                        msg.push_str(
                            "\n      help: if this file exists only where ferry runs (a container), \
                             use `ferry check --no-files`",
                        );
                    }
                    report.errors.push(msg);
                }
                Vec::new()
            }
        }
    };
    for cert in &certs {
        let path = cert.config.cert.display();
        if cert.info.is_expired() {
            report
                .errors
                .push(format!("{path} expired on {}", date(cert.info.not_after)));
        } else if cert.info.remaining() < EXPIRY_WARNING {
            report.warnings.push(format!(
                "{path} expires in {} days ({})",
                cert.info.remaining().as_secs() / 86_400,
                date(cert.info.not_after)
            ));
        }
        if let Some(i) = cert.info.chain_out_of_order {
            report.warnings.push(format!(
                "{path}: certificate {} of the chain was not issued by certificate {} (order is leaf first, then each issuer)",
                i + 1,
                i + 2
            ));
        }
    }

    // Every route host must be covered by a certificate when TLS is served.
    let serves_tls = config.listeners.iter().any(|l| l.kind == ListenerKind::Tls);
    if serves_tls && !certs.is_empty() {
        for r in &config.routes {
            for host in &r.matcher.hosts {
                let covered = certs.iter().any(|c| match host {
                    HostPattern::Exact(name) => c.info.names.iter().any(|n| name_covers(n, name)),
                    HostPattern::Wildcard(suffix) => {
                        c.info.names.iter().any(|n| n == &format!("*{suffix}"))
                    }
                });
                if !covered {
                    report.errors.push(format!(
                        "route `{}`: no certificate covers host `{host}`; browsers will refuse it\n      \
                         help: add a [[certificate]] whose names include `{host}`",
                        r.name
                    ));
                }
            }
        }
    }

    report.warnings.extend(unresolved_upstreams(config));

    // Routes an earlier route always takes (first match wins).
    for (j, later) in config.routes.iter().enumerate() {
        if let Some(i) = config.routes[..j]
            .iter()
            .position(|earlier| earlier.matcher.covers(&later.matcher))
        {
            report.warnings.push(format!(
                "route `{}` can never match: route `{}` before it matches all its requests (routes are tried in file order)\n      \
                 help: move `{}` above `{}`",
                config.routes[j].name, config.routes[i].name, config.routes[j].name, config.routes[i].name
            ));
        }
    }

    let s = &mut report.summary;
    let _ = writeln!(s, "listeners:");
    for l in &config.listeners {
        let what = match l.kind {
            ListenerKind::Tls if l.http2 => "TLS, HTTP/2 + HTTP/1.1".to_owned(),
            ListenerKind::Tls => "TLS, HTTP/1.1".to_owned(),
            ListenerKind::Plain => "plain HTTP/1.1".to_owned(),
            ListenerKind::RedirectHttps => match config.https_port() {
                Some(port) => format!("redirects to https (port {port})"),
                None => "redirects to https (port 443)".to_owned(),
            },
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
            }
        }
        for cert in &certs {
            let _ = writeln!(
                s,
                "  {}\n      names: {}\n      expires: {} (in {} days)",
                cert.config.cert.display(),
                cert.info.names.join(", "),
                date(cert.info.not_after),
                cert.info.remaining().as_secs() / 86_400
            );
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
        let hosts = if r.matcher.hosts.is_empty() {
            "any host".to_owned()
        } else {
            r.matcher
                .hosts
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let path = match &r.matcher.path {
            PathMatch::Any => "any path".to_owned(),
            PathMatch::Prefix(p) => format!("prefix {}", p.join(", ")),
            PathMatch::Exact(p) => format!("exactly {}", p.join(", ")),
            PathMatch::Regex(re) => format!("regex {}", re.as_str()),
        };
        let action = match &r.action {
            RouteAction::Upstream(u) => match r.read_timeout {
                Some(t) => format!(
                    "-> upstream {} (read timeout {t:?})",
                    config.upstreams[*u].name
                ),
                None => format!("-> upstream {}", config.upstreams[*u].name),
            },
            RouteAction::Redirect { to, status } => format!("-> {} {to}", status.as_u16()),
        };
        let _ = writeln!(s, "  {}. {:<12} {hosts}; {path} {action}", i + 1, r.name);
    }
    report
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
fn unresolved_upstreams(config: &Config) -> Vec<String> {
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
            Ok((name, server, ok)) => {
                answered += 1;
                if !ok {
                    warnings.push(format!(
                        "upstream `{name}`: {server} does not resolve from here now (fine if it is a container that is not up yet; ferry resolves when connecting)"
                    ));
                }
            }
            Err(_) => {
                warnings.push(format!(
                    "{} upstream name(s) did not resolve within 3s",
                    asked - answered
                ));
                break;
            }
        }
    }
    warnings.sort();
    warnings
}
