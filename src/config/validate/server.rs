//! `[server]`: process-wide settings, each defaulted when absent.

use std::path::Path;

use toml::Spanned;

use super::values::{count, duration, size};
use crate::config::error::Problems;
use crate::config::file::{FileAccessLog, FileServer};
use crate::config::{AccessLogConfig, AccessLogFormat, AccessLogTarget, IpNet, ServerConfig};

/// `server.max_header_size` bounds: below 1 KiB ordinary browser requests
/// (cookies) fail; above 1 MiB it no longer protects anything.
const HEADER_SIZES: (u64, u64) = (1 << 10, 1 << 20);

/// `[server]`, or the defaults when the table is absent.
pub(super) fn build(
    file: Option<Spanned<FileServer>>,
    base: &Path,
    p: &mut Problems<'_>,
) -> ServerConfig {
    let mut server = ServerConfig::default();
    let Some(file) = file else { return server };
    let f = file.get_ref();
    if let Some(list) = &f.trusted_proxies {
        for (i, s) in list.iter().enumerate() {
            match IpNet::parse(s.get_ref().trim()) {
                Some(net) => server.trusted_proxies.push(net),
                None => p.push(
                    Some(s.span()),
                    format!("server.trusted_proxies[{i}]"),
                    format!("`{}` is not an IP address or CIDR range", s.get_ref()),
                    Some("e.g. \"10.0.0.0/8\", \"172.16.0.0/12\" or \"192.168.1.10\"".into()),
                ),
            }
        }
    }
    let key = "server";
    if let Some(d) = duration(p, &f.shutdown_grace, key, "shutdown_grace") {
        server.shutdown_grace = d;
    }
    if let Some(d) = duration(p, &f.handshake_timeout, key, "handshake_timeout") {
        server.handshake_timeout = d;
    }
    if let Some(d) = duration(p, &f.idle_timeout, key, "idle_timeout") {
        server.idle_timeout = d;
    }
    if let Some(d) = duration(p, &f.header_read_timeout, key, "header_read_timeout") {
        server.header_read_timeout = d;
    }
    if let Some(n) = size(
        p,
        &f.max_header_size,
        "server.max_header_size",
        HEADER_SIZES,
    ) {
        server.max_header_size = n as usize;
    }
    server.forwarded_header = f.forwarded_header.as_ref().is_some_and(|b| *b.get_ref());
    if let Some(n) = count(p, &f.max_connections, "server.max_connections", false) {
        server.max_connections = n;
    }
    server.workers = count(p, &f.workers, "server.workers", false);
    server.access_log = f
        .access_log
        .as_ref()
        .and_then(|a| build_access_log(a, base, p));
    server.pid_file = f.pid_file.as_ref().map(|s| base.join(s.get_ref()));
    if let Some(v) = &f.tls_min_version {
        server.tls_min_version = super::tls::min_version(p, v).unwrap_or(server.tls_min_version);
    }
    server.hsts = f
        .hsts
        .as_ref()
        .and_then(|v| super::tls::hsts(p, v, "server.hsts"));
    server
}

fn build_access_log(
    log: &Spanned<FileAccessLog>,
    base: &Path,
    p: &mut Problems<'_>,
) -> Option<AccessLogConfig> {
    let f = log.get_ref();
    let format = match f.format.as_ref().map(|s| s.get_ref().as_str()) {
        None | Some("text") => AccessLogFormat::Text,
        Some("json") => AccessLogFormat::Json,
        Some(other) => {
            p.push(
                f.format.as_ref().map(Spanned::span),
                "server.access_log.format",
                format!("unknown format `{other}`"),
                Some("use \"json\" or \"text\"".into()),
            );
            return None;
        }
    };
    let target = match f.path.as_ref().map(|s| s.get_ref().as_str()) {
        None | Some("stdout") => AccessLogTarget::Stdout,
        Some("stderr") => AccessLogTarget::Stderr,
        Some("") => {
            p.push(
                f.path.as_ref().map(Spanned::span),
                "server.access_log.path",
                "the path is empty",
                Some("use \"stdout\", \"stderr\" or a file path".into()),
            );
            return None;
        }
        Some(path) => AccessLogTarget::File(base.join(path)),
    };
    Some(AccessLogConfig {
        format,
        target,
        query: f.query.as_ref().is_some_and(|q| *q.get_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{MINIMAL, parse_str, problems};

    #[test]
    fn semantic_checks() {
        let got = problems(&format!(
            "[server]\ntrusted_proxies = [\"10.0.0.0/99\"]\n{MINIMAL}"
        ))
        .join("\n");
        assert!(got.contains("2:20: server.trusted_proxies[0]"), "{got}");
        for bad in ["\"16 parsecs\"", "100", "\"2MiB\"", "-1"] {
            let got = problems(&format!("[server]\nmax_header_size = {bad}\n{MINIMAL}")).join("\n");
            assert!(got.contains("2:19: server.max_header_size"), "{bad}: {got}");
        }
        let c = parse_str(&format!("[server]\nmax_header_size = \"64KiB\"\n{MINIMAL}")).unwrap();
        assert_eq!(c.server.max_header_size, 64 << 10);
    }
}
