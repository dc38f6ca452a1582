//! Configuration: `proxy.toml` → [`FileConfig`](file::FileConfig) (as written)
//! → [`Config`] (validated; nothing left to parse at request time).
//!
//! Parse from a `&str` with [`Config::parse`] so that tests need no files;
//! [`Config::load`] reads a file and resolves relative paths against it.

mod admin;
mod error;
pub(crate) mod file;
mod origin;
mod schema;
mod validate;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use regex::Regex;

pub use admin::{AdminConfig, AdminToken, AdminTokenError, token_problem};
pub(crate) use error::line_col;
pub use error::{ConfigError, Problem};
pub use origin::{OriginError, OriginPattern};

pub use crate::encoding::Encoding;
use crate::router::Matcher;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from, for messages: a file path or `<embedded default>`.
    pub source: String,
    pub server: ServerConfig,
    pub listeners: Vec<ListenerConfig>,
    /// In file order; the first is served when no SNI name matches.
    pub certificates: Vec<CertificateConfig>,
    pub upstreams: Vec<UpstreamConfig>,
    /// In file order; the first match wins.
    pub routes: Vec<RouteConfig>,
    /// `[admin]`: metrics, health and reload; off when absent.
    pub admin: Option<AdminConfig>,
}

/// `server.access_log`: where request and WebSocket session lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    pub format: AccessLogFormat,
    pub target: AccessLogTarget,
    /// Log query strings (off by default: they often carry tokens).
    pub query: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    Stderr,
    File(PathBuf),
}

/// `[server]`: process-wide settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Peers whose `X-Forwarded-For` we append to; anyone else's is replaced.
    pub trusted_proxies: Vec<IpNet>,
    /// How long a shutdown waits for requests and tunnels to finish.
    pub shutdown_grace: Duration,
    /// A TLS handshake that takes longer is dropped (slow or idle clients).
    pub handshake_timeout: Duration,
    /// Time a client has to send a complete request head (slowloris guard);
    /// also how long an idle HTTP/1.1 keep-alive connection stays open.
    pub header_read_timeout: Duration,
    /// An HTTP/2 connection with no open stream for this long is closed (GOAWAY).
    pub idle_timeout: Duration,
    /// The largest request head accepted, in bytes (431 above it): HTTP/1.1's
    /// request line and headers as sent, HTTP/2's header list as RFC 9113
    /// counts it. One limit for both, so neither protocol is the way around it.
    pub max_header_size: usize,
    /// Also send RFC 7239 `Forwarded` upstream (off: most frameworks read
    /// `X-Forwarded-*`, and a header they do not read is one more to trust).
    pub forwarded_header: bool,
    /// Connections accepted at once across all listeners; more wait in the backlog.
    pub max_connections: usize,
    /// Runtime worker threads; `None` = one per core.
    pub workers: Option<usize>,
    /// `None`: request lines go to the log (stderr) through tracing.
    pub access_log: Option<AccessLogConfig>,
    /// Where `ferry run` writes its pid (for `ferry reload`).
    pub pid_file: Option<PathBuf>,
    /// The oldest TLS version a client may use.
    pub tls_min_version: TlsVersion,
    /// `Strict-Transport-Security` for TLS responses of routes without their own.
    pub hsts: Option<HeaderValue>,
}

/// A TLS protocol version, for `server.tls_min_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            trusted_proxies: Vec::new(),
            shutdown_grace: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(180),
            max_header_size: 16 << 10,
            forwarded_header: false,
            max_connections: 25_000,
            workers: None,
            access_log: None,
            pid_file: None,
            tls_min_version: TlsVersion::Tls12,
            hsts: None,
        }
    }
}

/// `[[listen]]`: one socket ferry accepts on.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub addr: SocketAddr,
    pub kind: ListenerKind,
    /// Offer `h2` in ALPN (TLS listeners only).
    pub http2: bool,
    /// Accept WebSockets over HTTP/2 (RFC 8441 extended CONNECT).
    pub websocket_over_http2: bool,
    /// Every connection starts with a PROXY protocol header (v1 or v2) from
    /// one of `server.trusted_proxies`, naming the real client.
    pub proxy_protocol: bool,
}

/// What a listener does with its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// TLS, then HTTP/2 or HTTP/1.1 by ALPN.
    Tls,
    /// Cleartext HTTP/1.1 proxying (local development, or behind another TLS terminator).
    Plain,
    /// Cleartext; every request gets a 308 to the same URL over https.
    RedirectHttps,
}

/// `[[certificate]]`: a PEM chain and its key.
#[derive(Debug, Clone)]
pub struct CertificateConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Client certificates asked for in handshakes that get this certificate.
    pub client_auth: Option<ClientAuthConfig>,
}

/// `client_ca` and `client_auth` on a `[[certificate]]`: mutual TLS for its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuthConfig {
    /// PEM file of the CA certificate(s) client certificates must chain to.
    pub ca: PathBuf,
    pub mode: ClientAuthMode,
}

/// Whether a client must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMode {
    /// No valid certificate, no handshake.
    Required,
    /// Asked for; a client without one gets in (`X-Client-Verify: NONE`),
    /// one with an invalid one does not.
    Optional,
}

/// `[upstream.NAME]`: a group of servers speaking HTTP/1.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub name: Arc<str>,
    /// `host:port` authorities; names resolve when connecting, never at start-up.
    pub servers: Vec<http::uri::Authority>,
    pub connect_timeout: Duration,
    /// Max wait for upstream bytes: the response head, and between body chunks.
    pub read_timeout: Duration,
    /// Idle pooled connections are not reused after this; keep it below the
    /// backend's own keep-alive (gunicorn: 2 s; uvicorn and Node: 5 s) or
    /// reuse races its close.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per server.
    pub pool_max_idle: usize,
    /// Relative share of requests per server (same order as `servers`).
    pub weights: Vec<u32>,
    pub balance: Balance,
    /// Extra attempts on other servers for a request that never reached one.
    pub retries: u32,
    /// Consecutive failures (connect errors, 5xx) that take a server out.
    pub max_fails: u32,
    /// How long a failed server stays out before it is tried again.
    pub fail_timeout: Duration,
    /// How long a DNS answer is used before names are resolved again.
    pub resolve_every: Duration,
    /// Active health checks, when configured.
    pub health: Option<HealthConfig>,
    /// Start every upstream connection with a PROXY protocol header naming
    /// the client (for an upstream that is itself a proxy).
    pub send_proxy_protocol: Option<ProxyProtocolVersion>,
}

/// `send_proxy_protocol = "v1" | "v2"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyProtocolVersion {
    /// The text form (`PROXY TCP4 ...`), for peers that only read that.
    V1,
    /// The binary form (HAProxy's `send-proxy-v2`).
    V2,
}

/// `health = { ... }` on an upstream: a GET to `path` on every server each `interval`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive passing checks that bring a server back.
    pub healthy: u32,
    /// Consecutive failing checks (no answer, or a status >= 500) that take it out.
    pub unhealthy: u32,
}

/// How an upstream spreads requests over its servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// In turn, by weight.
    RoundRobin,
    /// The server with the fewest requests (and WebSocket sessions) in flight.
    LeastRequests,
    /// Of two servers picked at random, the less loaded (power of two choices).
    RandomTwo,
}

/// `[[route]]`: which requests go where.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// For logs and metrics; unique. Defaults to `route<index>`.
    pub name: Arc<str>,
    /// Which requests: hosts (empty = any) and a path condition.
    pub matcher: Matcher,
    pub action: RouteAction,
    /// Overrides the upstream's `read_timeout`.
    pub read_timeout: Option<Duration>,
    /// Larger request bodies get 413 (nginx's `client_max_body_size`); `None` = no limit.
    pub max_body_size: Option<u64>,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    pub websocket: WebSocketConfig,
    /// `Strict-Transport-Security` for this route's TLS responses (else `server.hsts`).
    pub hsts: Option<HeaderValue>,
    /// Compress compressible responses (gzip, br, zstd) by `Accept-Encoding`.
    pub compress: bool,
}

/// How WebSocket sessions on a route are kept and checked.
#[derive(Debug, Clone)]
pub struct WebSocketConfig {
    /// No frames either way for this long closes the session (1001).
    pub idle_timeout: Duration,
    /// Sessions are closed (1001) after this long regardless of traffic.
    pub max_lifetime: Option<Duration>,
    /// Send the client a Ping this often (keeps NATs and load balancers open).
    pub ping_interval: Option<Duration>,
    /// Empty = any origin. Otherwise the handshake's `Origin` must match one.
    pub allowed_origins: Vec<OriginPattern>,
    /// Refuse handshakes without an `Origin` header (browsers always send one).
    pub require_origin: bool,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            idle_timeout: Duration::from_secs(24 * 3600),
            max_lifetime: None,
            ping_interval: None,
            allowed_origins: Vec::new(),
            require_origin: false,
        }
    }
}

/// What a matched route does.
#[derive(Debug, Clone)]
pub enum RouteAction {
    /// Proxy to `upstreams[index]`.
    Upstream(usize),
    /// Answer with a redirect; `to` may contain `{scheme}`, `{host}`, `{path}`, `{query}`, `{uri}`.
    Redirect { to: String, status: StatusCode },
    /// Serve files from a directory (`static = { root = ... }`).
    Static(Arc<StaticConfig>),
}

/// `static = { ... }`: how a route serves files from `root`.
#[derive(Debug, Clone)]
pub struct StaticConfig {
    /// The directory served; a request path is resolved inside it.
    pub root: PathBuf,
    /// A single-page app: a GET for a missing extension-less path that
    /// accepts HTML is answered with `index` (`try_files $uri /index.html`).
    pub spa: bool,
    /// The file served for a directory, and the SPA fallback.
    pub index: String,
    /// Paths (as requested) that get `Cache-Control: public, max-age=31536000, immutable`;
    /// `None`: the built-in rule (under `/assets/`, or a file name with a
    /// content hash, as docs/static.md describes).
    pub immutable: Option<Regex>,
    /// The sibling encodings looked for (`app.js.br`, ...), in preference order on q-value ties.
    pub precompressed: Vec<Encoding>,
    /// Serve dotfiles (`.well-known` aside, off: they 404).
    pub hidden: bool,
    pub follow_symlinks: FollowSymlinks,
}

/// `follow_symlinks`: whether a symlink under `root` is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowSymlinks {
    /// Followed when its target is inside `root` (the default).
    WithinRoot,
    /// Never: a path through a symlink is 404.
    Never,
    /// Always, wherever it points (a `root` assembled from links).
    Always,
}

/// Header edits applied on the way through, after ferry's own headers.
#[derive(Debug, Clone, Default)]
pub struct HeaderOps {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Applies remove, then set, then add.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// An address range (`10.0.0.0/8`, `::1/128`, or a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `addr` or `addr/prefix`.
    pub fn parse(s: &str) -> Option<IpNet> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) if self.addr.is_ipv4() => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            ip => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl Config {
    /// Reads and validates a config file. Relative certificate paths are
    /// resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        validate::parse(&src, &path.display().to_string(), base)
    }

    /// Validates config text; `name` is used in messages, relative paths resolve against `base`.
    pub fn parse(src: &str, name: &str, base: &Path) -> Result<Config, ConfigError> {
        validate::parse(src, name, base)
    }

    /// The route for `host` and `path`: the first match in file order.
    pub fn route(&self, host: &str, path: &str) -> Option<(usize, &RouteConfig)> {
        crate::router::first_match(self.routes.iter().map(|r| &r.matcher), host, path)
            .map(|i| (i, &self.routes[i]))
    }

    /// The first TLS listener's port: where `redirect_https` sends clients.
    pub fn https_port(&self) -> Option<u16> {
        self.listeners
            .iter()
            .find(|l| l.kind == ListenerKind::Tls)
            .map(|l| l.addr.port())
    }
}

/// Parses a human duration: `250ms`, `30s`, `5m`, `24h`, `7d`, or combinations like `1h30m`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "h" => Duration::from_secs(n.checked_mul(3600)?),
            "d" => Duration::from_secs(n.checked_mul(86_400)?),
            _ => return None,
        };
        total = total.checked_add(unit)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        for bad in [
            "",
            "30",
            "s",
            "30 s",
            "1.5s",
            "-1s",
            "30sec",
            "99999999999999999999s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ip_nets() {
        let net = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        let one = IpNet::parse("192.168.1.1").unwrap();
        assert!(one.contains("192.168.1.1".parse().unwrap()));
        assert!(!one.contains("192.168.1.2".parse().unwrap()));
        let v6 = IpNet::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!(
            IpNet::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert_eq!(IpNet::parse("10.0.0.0/33"), None);
        assert_eq!(IpNet::parse("nonsense"), None);
    }
}
