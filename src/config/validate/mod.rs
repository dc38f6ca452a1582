//! `FileConfig` → `Config`, collecting every problem before giving up.
//!
//! [`parse`] runs four passes — syntax, unknown keys, types, meaning. A syntax
//! error stops it; unknown keys are reported with the first type error; the
//! meaning is checked only in a well-typed file, so one mistake is not
//! reported three ways. The meaning pass is split by concern: each turns a
//! `File*` type into its validated type, pushing into one [`Problems`].

mod admin;
mod certificate;
mod keys;
mod listen;
mod route;
mod server;
mod static_files;
mod tls;
mod upstream;
mod values;

use std::path::Path;

use toml::de::DeTable;

use super::error::Problems;
use super::file::FileConfig;
use super::{Config, ConfigError};

/// Validates config text; `name` is used in messages, relative paths resolve against `base`.
pub(super) fn parse(src: &str, name: &str, base: &Path) -> Result<Config, ConfigError> {
    let mut problems = Problems::new(src);

    // 1. Syntax: every error the parser can recover from.
    let (doc, syntax_errors) = DeTable::parse_recoverable(src);
    for e in &syntax_errors {
        problems.push(e.span(), "", first_line(e.message()), None);
    }
    if !problems.is_empty() {
        return Err(problems.into_error(name));
    }

    // 2. Unknown keys, all of them, with suggestions.
    keys::check(doc.get_ref(), &mut problems);

    // 3. Types (serde stops at the first one; unknown keys were reported above).
    let file: FileConfig = match toml::from_str(src) {
        Ok(file) => file,
        Err(e) => {
            if !e.message().starts_with("unknown field") || problems.is_empty() {
                problems.push(e.span(), "", first_line(e.message()), None);
            }
            return Err(problems.into_error(name));
        }
    };
    if !problems.is_empty() {
        return Err(problems.into_error(name));
    }

    // 4. Meaning.
    let config = build(file, name, base, &mut problems);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems.into_error(name))
    }
}

fn first_line(msg: &str) -> String {
    msg.lines().next().unwrap_or(msg).trim().to_owned()
}

/// The concerns, in a fixed order: certificates need the listeners, routes
/// the upstreams. Problems are sorted by position afterwards, so the order
/// otherwise only breaks ties between problems at one position.
fn build(file: FileConfig, name: &str, base: &Path, p: &mut Problems<'_>) -> Config {
    let server = server::build(file.server, base, p);
    let admin = file.admin.as_ref().and_then(|a| admin::build(a, base, p));
    let listeners = listen::build(&file.listen, p);
    listen::check_proxy_protocol(&file.listen, &server, p);
    let certificates = certificate::build(&file.certificate, &file.listen, &listeners, base, p);
    let upstreams = upstream::build(&file.upstream, p);
    let routes = route::build(&file.route, &upstreams, base, p);
    Config {
        source: name.to_owned(),
        server,
        listeners,
        certificates,
        upstreams,
        routes,
        admin,
    }
}

/// What the concerns' tests share: a minimal valid file and its problems as text.
#[cfg(test)]
mod testing {
    use std::path::Path;

    use crate::config::{Config, ConfigError};

    pub(super) fn parse_str(src: &str) -> Result<Config, ConfigError> {
        super::parse(src, "proxy.toml", Path::new("/etc/ferry"))
    }

    /// Each problem as `line:col: key: message | help`.
    pub(super) fn problems(src: &str) -> Vec<String> {
        let err = parse_str(src).expect_err("config should be invalid");
        err.problems()
            .iter()
            .map(|p| {
                format!(
                    "{}:{}: {}: {} | {}",
                    p.line.unwrap_or(0),
                    p.col.unwrap_or(0),
                    p.key,
                    p.message,
                    p.help.clone().unwrap_or_default()
                )
            })
            .collect()
    }

    pub(super) const MINIMAL: &str = r#"
[[listen]]
addr = "127.0.0.1:8080"

[upstream.backend]
servers = ["backend:8000"]

[[route]]
path_prefix = "/"
upstream = "backend"
"#;

    /// The keys [`EVERY_KEY`] cannot use alongside others (one excludes the other).
    pub(super) const ALTERNATIVE_KEYS: &str = r#"
[admin]
addr = "127.0.0.1:9901"
token_file = "admin.token"
"#;

    /// A file using every key (`keys.rs` checks it still does, with [`ALTERNATIVE_KEYS`]): serde must accept them all.
    pub(super) const EVERY_KEY: &str = r#"
[admin]
addr = "127.0.0.1:9901"
allow_remote = false
hosts = ["ferry"]
token = "t0ken"

[server]
trusted_proxies = ["10.0.0.0/8"]
shutdown_grace = "30s"
access_log = { format = "json", path = "access.log", query = true }
pid_file = "ferry.pid"
tls_min_version = "1.2"
hsts = "max-age=63072000; includeSubDomains"
handshake_timeout = "10s"
header_read_timeout = "30s"
idle_timeout = "3m"
max_header_size = "16KiB"
forwarded_header = true
max_connections = 100
workers = 1

[[listen]]
addr = "127.0.0.1:8443"
tls = true
http2 = true
websocket_over_http2 = true
proxy_protocol = true
[[listen]]
addr = "127.0.0.1:8080"
redirect_https = true

[[certificate]]
cert = "c.pem"
key = "k.pem"
client_ca = "client-ca.pem"
client_auth = "optional"

[upstream.backend]
servers = ["http://backend:8000", { addr = "backend2:8000", weight = 3 }]
connect_timeout = "5s"
read_timeout = "60s"
pool_idle_timeout = "4s"
pool_max_idle = 8
balance = "least_requests"
retries = 1
max_fails = 2
fail_timeout = "30s"
resolve_every = "10s"
health = { path = "/health", interval = "5s", timeout = "2s", healthy = 2, unhealthy = 3 }
send_proxy_protocol = "v2"

[[route]]
name = "old"
hosts = ["old.example.com"]
path_exact = ["/old"]
redirect = { to = "https://example.com{uri}", status = 301 }

[[route]]
name = "api"
hosts = "*.example.com"
path_regex = "^/api"
upstream = "backend"
read_timeout = "2m"
request_headers = { set = { "X-A" = "1" }, add = { "X-B" = "2" }, remove = ["X-C"] }
response_headers = { set = { "X-D" = "1" }, add = {}, remove = [] }
hsts = "max-age=31536000"
websocket = { idle_timeout = "1h", max_lifetime = "12h", ping_interval = "30s", allowed_origins = ["https://*.example.com", "http://localhost:5173"], require_origin = true }

[[route]]
path_prefix = ["/upload"]
upstream = "backend"
max_body_size = "10MB"
compress = true

[[route]]
name = "app"
path_prefix = "/"
static = { root = "dist", spa = true, index = "index.html", immutable = "^/assets/", precompressed = ["br", "gzip"], hidden = false, follow_symlinks = "within_root" }
"#;

    /// For each `(from, to, expect)`: [`MINIMAL`] with `from` replaced by `to`
    /// has a problem containing `expect`.
    pub(super) fn assert_semantic(cases: &[(&str, &str, &str)]) {
        for (from, to, expect) in cases {
            let src = MINIMAL.replace(from, to);
            let got = problems(&src).join("\n");
            assert!(
                got.contains(expect),
                "{to:?}: expected {expect:?} in\n{got}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::testing::{EVERY_KEY, MINIMAL, parse_str, problems};
    use super::upstream::DEFAULT_READ_TIMEOUT;
    use crate::config::{AccessLogFormat, AccessLogTarget, ListenerKind, RouteAction};

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse_str(MINIMAL).unwrap();
        assert_eq!(c.listeners[0].kind, ListenerKind::Plain);
        assert_eq!(c.upstreams[0].servers[0].as_str(), "backend:8000");
        assert_eq!(c.upstreams[0].read_timeout, DEFAULT_READ_TIMEOUT);
        assert_eq!(&*c.routes[0].name, "route0");
        assert_eq!(c.server.shutdown_grace, Duration::from_secs(30));
    }

    #[test]
    fn every_schema_key_is_understood_by_serde() {
        let src = EVERY_KEY;
        let c = parse_str(src).unwrap();
        assert_eq!(c.certificates[0].cert, Path::new("/etc/ferry/c.pem"));
        assert_eq!(c.admin.as_ref().unwrap().addr.port(), 9901);
        let log = c.server.access_log.as_ref().unwrap();
        assert_eq!(log.format, AccessLogFormat::Json);
        assert_eq!(
            log.target,
            AccessLogTarget::File("/etc/ferry/access.log".into())
        );
        assert_eq!(
            c.server.pid_file.as_deref(),
            Some(Path::new("/etc/ferry/ferry.pid"))
        );
        assert_eq!(c.https_port(), Some(8443));
        assert_eq!(c.listeners[1].kind, ListenerKind::RedirectHttps);
        assert!(
            matches!(c.routes[0].action, RouteAction::Redirect { status, .. } if status == 301)
        );
        assert_eq!(c.routes[1].read_timeout, Some(Duration::from_secs(120)));
        assert_eq!(c.routes[1].request_headers.set.len(), 1);
        assert_eq!(
            c.routes[1].websocket.idle_timeout,
            Duration::from_secs(3600)
        );
        assert_eq!(c.routes[1].websocket.allowed_origins.len(), 2);
        assert!(c.routes[1].websocket.require_origin);
        assert!(c.listeners[0].websocket_over_http2);
        assert!(!c.listeners[1].websocket_over_http2);
        assert!(c.listeners[0].proxy_protocol);
        assert!(!c.listeners[1].proxy_protocol);
        assert_eq!(
            c.upstreams[0].send_proxy_protocol,
            Some(crate::config::ProxyProtocolVersion::V2)
        );
    }

    #[test]
    fn every_problem_at_once_with_line_key_and_help() {
        let src = r#"
[[listen]]
addr = "127.0.0.1:8080"

[upstream.backend]
servers = ["backend:8000"]
conect_timeout = "5s"

[[route]]
name = "api"
path_prefix = "/api"
upstream = "backnd"

[[route]]
path_prefix = "/"
upstrem = "backend"
"#;
        let got = problems(src);
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(got[0].starts_with("7:1: upstream.backend.conect_timeout: unknown key `conect_timeout` | did you mean `connect_timeout`?"), "{got:#?}");
        assert!(
            got[1].starts_with(
                "16:1: route[1].upstrem: unknown key `upstrem` | did you mean `upstream`?"
            ),
            "{got:#?}"
        );

        // Once keys are right, the meaning is checked: again, all at once.
        let src = src
            .replace("conect_timeout = \"5s\"", "connect_timeout = \"5\"")
            .replace("upstrem", "upstream");
        let got = problems(&src);
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(
            got[0].starts_with("7:19: upstream.backend.connect_timeout: `5` is not a duration"),
            "{got:#?}"
        );
        assert!(
            got[1].starts_with(
                "12:12: route[0].upstream: unknown upstream `backnd` | did you mean `backend`?"
            ),
            "{got:#?}"
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let got = problems("[[listen]\naddr = 1\n");
        assert!(got[0].starts_with("1:"), "{got:#?}");
    }

    #[test]
    fn type_errors_have_positions() {
        let got = problems(&MINIMAL.replace(
            "addr = \"127.0.0.1:8080\"",
            "addr = \"127.0.0.1:8080\"\ntls = \"yes\"",
        ));
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(got[0].starts_with("4:7:"), "{got:#?}");
    }

    #[test]
    fn semantic_checks() {
        let got = problems("").join("\n");
        assert!(
            got.contains("no listeners") && got.contains("no routes"),
            "{got}"
        );
    }
}
