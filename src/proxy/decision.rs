//! What ferry does with a request, decided once and without I/O. The proxy
//! executes a [`Decision`] ([`super::http`], [`super::websocket`]); `ferry
//! route` prints one. [`decide`] walks these steps, in this order:
//!
//! 1. **target** — the authority the client asked for: the URI's (HTTP/2
//!    `:authority`, HTTP/1.1 absolute-form) or the `Host` header (400 without).
//! 2. **listener** — a `redirect_https` listener answers 308 to the same URL over https.
//! 3. **route** — the first matching `[[route]]` in file order, or 404.
//! 4. **redirect** — a redirect route answers here.
//! 5. **checks** — a WebSocket handshake's `Origin` against the route's
//!    `allowed_origins` (403); a declared body over `max_body_size` (413).
//! 6. **upstream request** — hop-by-hop headers out, `X-Forwarded-*` in, the
//!    route's `request_headers`, HTTP/1.1 in origin-form; a WebSocket handshake
//!    (HTTP/1.1 or HTTP/2's extended CONNECT) is always an HTTP/1.1 upgrade.

use std::net::IpAddr;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery};
use http::{Method, StatusCode, Uri, Version};

use super::error::ProxyError;
use super::headers::{self, Forwarded};
use crate::config::{Config, ListenerKind, RouteAction, RouteConfig, WebSocketConfig};

/// How a request arrived: from which peer, on which kind of listener.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// The TCP peer.
    pub peer: IpAddr,
    /// `peer` as `X-Forwarded-For` carries it (formatted once per connection).
    pub peer_value: &'a HeaderValue,
    pub listener: ListenerKind,
    /// Where a `redirect_https` listener sends clients (`None`: 443).
    pub https_port: Option<u16>,
}

impl Inbound<'_> {
    /// How the client reached ferry: `X-Forwarded-Proto` and `{scheme}`.
    pub fn scheme(&self) -> &'static str {
        match self.listener {
            ListenerKind::Tls => "https",
            ListenerKind::Plain | ListenerKind::RedirectHttps => "http",
        }
    }
}

/// What ferry does with one request.
#[derive(Debug)]
pub struct Decision {
    /// The authority the client asked for; `None` when it gave none usable (400).
    pub host: Option<Authority>,
    /// The matched route, as an index into `config.routes` (also set when
    /// the route refuses the request, for its log line and metrics).
    pub route: Option<usize>,
    /// The route's upstream, as an index into `config.upstreams`.
    pub upstream: Option<usize>,
    /// Set for a WebSocket handshake on an upstream route.
    pub websocket: Option<WebSocket>,
    pub action: Action,
}

/// The answer, or what to send upstream.
#[derive(Debug)]
pub enum Action {
    /// Answer with this error; no upstream is contacted.
    Refuse(ProxyError),
    /// Answer with a redirect.
    Redirect {
        status: StatusCode,
        location: HeaderValue,
    },
    /// Send this to the route's upstream.
    Forward(Forward),
}

/// A request on its way upstream.
#[derive(Debug)]
pub struct Forward {
    /// The route that sends it (as in [`Decision::route`]).
    pub route: usize,
    /// Where it goes (as in [`Decision::upstream`]).
    pub upstream: usize,
    /// The request head the upstream receives. For a WebSocket bridged from
    /// HTTP/2, the proxy adds its own `Sec-WebSocket-Key` just before sending.
    pub head: Parts,
    /// The longest wait for upstream bytes: the route's, else the upstream's.
    pub read_timeout: Duration,
    /// The route's body limit: a body that grows past it is cut off.
    pub max_body_size: Option<u64>,
}

/// A WebSocket handshake: how it was asked for, and the origin check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocket {
    pub handshake: Handshake,
    pub origin: OriginCheck,
}

/// How a client asked for a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// `GET` with `Connection: upgrade` and `Upgrade: websocket`.
    Http1,
    /// `CONNECT` with `:protocol = websocket` (RFC 8441).
    Http2,
}

impl Handshake {
    /// `h1` or `h2`, as logs and `ferry route` say it.
    pub fn label(self) -> &'static str {
        match self {
            Handshake::Http1 => "h1",
            Handshake::Http2 => "h2",
        }
    }
}

/// The verdict on a WebSocket handshake's `Origin` (CORS does not cover
/// WebSocket handshakes, so the edge checks it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginCheck {
    /// No `Origin` header (a non-browser client), and the route does not require one.
    NotSent,
    /// The route has no `allowed_origins`: any origin is allowed.
    Unrestricted(String),
    /// The origin is in the route's `allowed_origins`.
    Allowed(String),
    /// Refused: no `Origin` header, and the route requires one.
    Missing,
    /// Refused: the origin is not in the route's `allowed_origins`.
    NotAllowed(String),
}

impl OriginCheck {
    /// Checks the handshake's `Origin` header against the route's settings.
    pub fn check(ws: &WebSocketConfig, headers: &HeaderMap) -> OriginCheck {
        let Some(value) = headers.get(header::ORIGIN) else {
            return if ws.require_origin {
                OriginCheck::Missing
            } else {
                OriginCheck::NotSent
            };
        };
        let origin = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if ws.allowed_origins.is_empty() {
            OriginCheck::Unrestricted(origin)
        } else if ws.allowed_origins.iter().any(|p| p.matches(&origin)) {
            OriginCheck::Allowed(origin)
        } else {
            OriginCheck::NotAllowed(origin)
        }
    }

    /// The `Origin` the client sent, if any.
    pub fn origin(&self) -> Option<&str> {
        match self {
            OriginCheck::Unrestricted(o) | OriginCheck::Allowed(o) | OriginCheck::NotAllowed(o) => {
                Some(o)
            }
            OriginCheck::NotSent | OriginCheck::Missing => None,
        }
    }

    /// The error a refused handshake gets; `None` when it may proceed.
    pub fn refusal(&self) -> Option<ProxyError> {
        match self {
            OriginCheck::Missing => Some(ProxyError::OriginRequired),
            OriginCheck::NotAllowed(origin) => Some(ProxyError::OriginNotAllowed {
                origin: origin.clone(),
            }),
            _ => None,
        }
    }
}

/// Decides what to do with the request `head` that arrived as `inbound`,
/// under `config`. Consumes the head: a forwarded request's head is
/// rewritten in place into the upstream's.
pub fn decide(config: &Config, inbound: &Inbound<'_>, head: Parts) -> Decision {
    let mut decision = Decision {
        host: None,
        route: None,
        upstream: None,
        websocket: None,
        action: Action::Refuse(ProxyError::NoRoute),
    };
    // 1. Target.
    let host = match target(&head) {
        Ok(host) => host,
        Err(e) => {
            decision.action = Action::Refuse(e);
            return decision;
        }
    };
    decision.host = Some(host.clone());

    // 2. A listener that only redirects to https.
    if inbound.listener == ListenerKind::RedirectHttps {
        decision.action = https_redirect(&host, &head.uri, inbound.https_port);
        return decision;
    }

    // 3. Route.
    let Some((index, route)) = config.route(host.as_str(), head.uri.path()) else {
        return decision;
    };
    decision.route = Some(index);

    // 4. Redirect routes answer here.
    let upstream = match &route.action {
        RouteAction::Redirect { to, status } => {
            decision.action = redirect(to, *status, inbound.scheme(), &host, &head.uri);
            return decision;
        }
        RouteAction::Upstream(i) => *i,
    };
    decision.upstream = Some(upstream);

    // 5. Checks.
    let handshake = websocket_handshake(&head);
    if let Some(handshake) = handshake {
        let origin = OriginCheck::check(&route.websocket, &head.headers);
        let refusal = origin.refusal();
        decision.websocket = Some(WebSocket { handshake, origin });
        if let Some(e) = refusal {
            decision.action = Action::Refuse(e);
            return decision;
        }
    } else if let Some(limit) = route.max_body_size {
        // A declared body over the limit is refused before any upstream is
        // contacted; an undeclared one is cut off as it streams.
        let declared = head
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            decision.action = Action::Refuse(ProxyError::PayloadTooLarge { limit });
            return decision;
        }
    }

    // 6. The upstream request.
    let read_timeout = route
        .read_timeout
        .unwrap_or(config.upstreams[upstream].read_timeout);
    decision.action = Action::Forward(Forward {
        route: index,
        upstream,
        head: upstream_head(head, config, route, inbound, &host, handshake),
        read_timeout,
        max_body_size: route.max_body_size,
    });
    decision
}

/// Whether `head` opens a WebSocket. Only `Connection: upgrade` plus
/// `Upgrade: websocket` counts on HTTP/1.1: any other upgrade (h2c) is
/// stripped and the request proxied as a plain one.
pub fn websocket_handshake(head: &Parts) -> Option<Handshake> {
    match head.version {
        Version::HTTP_11
            if head.method == Method::GET && headers::connection_has_upgrade(&head.headers) =>
        {
            let websocket = head
                .headers
                .get_all(header::UPGRADE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"));
            websocket.then_some(Handshake::Http1)
        }
        Version::HTTP_2 if head.method == Method::CONNECT => head
            .extensions
            .get::<hyper::ext::Protocol>()
            .filter(|p| p.as_str().eq_ignore_ascii_case("websocket"))
            .map(|_| Handshake::Http2),
        _ => None,
    }
}

/// Step 1: the URI's authority (HTTP/2 `:authority`, HTTP/1.1 absolute-form)
/// or the `Host` header. HTTP/1.1 requires one; HTTP/1.0 may omit it.
fn target(head: &Parts) -> Result<Authority, ProxyError> {
    if let Some(authority) = head.uri.authority() {
        return Ok(authority.clone());
    }
    match head.headers.get(header::HOST) {
        Some(value) => Authority::try_from(value.as_bytes())
            .map_err(|_| ProxyError::BadRequest("invalid Host header")),
        None if head.version == Version::HTTP_10 => Ok(Authority::from_static("localhost")),
        None => Err(ProxyError::BadRequest("missing Host header")),
    }
}

/// Step 2: 308 to the same host, path and query over https.
fn https_redirect(host: &Authority, uri: &Uri, https_port: Option<u16>) -> Action {
    let port = match https_port {
        Some(443) | None => String::new(),
        Some(p) => format!(":{p}"),
    };
    let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let location = format!("https://{}{port}{pq}", host.host());
    match HeaderValue::from_str(&location) {
        Ok(location) => Action::Redirect {
            status: StatusCode::PERMANENT_REDIRECT,
            location,
        },
        Err(_) => Action::Refuse(ProxyError::BadRequest("invalid request target")),
    }
}

/// Step 4: a redirect route's answer. `{scheme}`, `{host}`, `{path}`,
/// `{query}` and `{uri}` (path and query) are filled from the request.
fn redirect(to: &str, status: StatusCode, scheme: &str, host: &Authority, uri: &Uri) -> Action {
    let location = to
        .replace("{scheme}", scheme)
        .replace("{host}", host.host())
        .replace("{path}", uri.path())
        .replace("{query}", uri.query().unwrap_or(""))
        .replace("{uri}", uri.path_and_query().map_or("/", |pq| pq.as_str()));
    match HeaderValue::from_str(&location) {
        Ok(location) => Action::Redirect { status, location },
        Err(_) => Action::Refuse(ProxyError::BadRequest("cannot build redirect location")),
    }
}

/// Step 6: the client's request head rewritten for the upstream. The order
/// matters: hop-by-hop headers go first (so a client's `Connection:
/// X-Forwarded-For` cannot remove what ferry adds), the route's own
/// `request_headers` come after ferry's, and a WebSocket's `Connection` and
/// `Upgrade` come last, so no edit can turn the handshake into a plain request.
fn upstream_head(
    mut head: Parts,
    config: &Config,
    route: &RouteConfig,
    inbound: &Inbound<'_>,
    host: &Authority,
    websocket: Option<Handshake>,
) -> Parts {
    let from_http2 = head.version == Version::HTTP_2;
    let h = &mut head.headers;
    headers::strip_hop_by_hop(h);
    // hyper already answered `Expect: 100-continue` when it read the body.
    h.remove(header::EXPECT);
    if websocket.is_some() {
        // A handshake has no body (an HTTP/2 CONNECT's stream is the tunnel).
        h.remove(header::CONTENT_LENGTH);
    }
    if from_http2 {
        headers::merge_cookies(h);
    }
    // Keep the client's Host (HTTP/2's :authority becomes Host for HTTP/1.1).
    let host = headers::set_host(h, host);
    if websocket == Some(Handshake::Http2) {
        // Bridging from HTTP/2: the upstream sees an ordinary HTTP/1.1 handshake.
        h.insert("sec-websocket-version", HeaderValue::from_static("13"));
    }
    headers::set_forwarded(
        h,
        &Forwarded {
            peer: inbound.peer,
            peer_value: inbound.peer_value,
            proto: inbound.scheme(),
            host: &host,
            trusted: &config.server.trusted_proxies,
        },
    );
    route.request_headers.apply(h);
    if websocket.is_some() {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        head.method = Method::GET;
    }
    head.uri = origin_form(head.uri.path_and_query());
    head.version = Version::HTTP_11;
    head.extensions = http::Extensions::new();
    head
}

/// The request target for an HTTP/1.1 upstream: origin-form `/path?query`.
fn origin_form(path_and_query: Option<&PathAndQuery>) -> Uri {
    let pq = path_and_query
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(pq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OriginPattern;

    const CONFIG: &str = r#"
[server]
trusted_proxies = ["10.0.0.0/8"]

[[listen]]
addr = "127.0.0.1:8080"

[upstream.backend]
servers = ["backend:8000"]
read_timeout = "30s"

[[route]]
name = "old"
path_prefix = "/old"
redirect = { to = "https://new.test{uri}", status = 301 }

[[route]]
name = "ws"
path_prefix = "/ws"
upstream = "backend"
websocket = { allowed_origins = ["https://app.test"] }

[[route]]
name = "api"
hosts = ["app.test"]
path_prefix = "/api"
upstream = "backend"
read_timeout = "2m"
max_body_size = 10
request_headers = { set = { "X-Route" = "api" } }
"#;

    fn config() -> Config {
        Config::parse(CONFIG, "test.toml", std::path::Path::new(".")).unwrap()
    }

    fn head(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut req = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    fn decide_from(peer: &str, listener: ListenerKind, head: Parts) -> Decision {
        let peer: IpAddr = peer.parse().unwrap();
        let inbound = Inbound {
            peer,
            peer_value: &headers::ip_value(peer),
            listener,
            https_port: Some(8443),
        };
        decide(&config(), &inbound, head)
    }

    fn forwarded(d: &Decision) -> &Parts {
        match &d.action {
            Action::Forward(f) => &f.head,
            other => panic!("not forwarded: {other:?}"),
        }
    }

    #[test]
    fn a_plain_request_is_rewritten_for_the_upstream() {
        let h = head(
            "POST",
            "/api/x?q=1",
            &[
                ("host", "App.test"),
                ("connection", "keep-alive, x-drop"),
                ("x-drop", "1"),
                ("x-forwarded-for", "1.2.3.4"),
                ("content-length", "5"),
            ],
        );
        let d = decide_from("203.0.113.9", ListenerKind::Tls, h);
        assert_eq!(
            (d.route, d.upstream, d.websocket.is_none()),
            (Some(2), Some(0), true)
        );
        let Action::Forward(f) = &d.action else {
            panic!("{d:?}")
        };
        assert_eq!(f.read_timeout, Duration::from_secs(120));
        assert_eq!(f.head.uri, "/api/x?q=1");
        assert_eq!(f.head.version, Version::HTTP_11);
        let h = &f.head.headers;
        assert_eq!(h["host"], "App.test");
        assert_eq!(h["x-forwarded-for"], "203.0.113.9");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-route"], "api");
        assert_eq!(h["content-length"], "5");
        assert!(!h.contains_key("connection") && !h.contains_key("x-drop"));
    }

    #[test]
    fn refusals_and_redirects_are_answered_without_an_upstream() {
        let d = decide_from("10.0.0.1", ListenerKind::Tls, head("GET", "/", &[]));
        assert!(matches!(
            d.action,
            Action::Refuse(ProxyError::BadRequest(_))
        ));
        assert_eq!(d.host, None);

        let d = decide_from(
            "10.0.0.1",
            ListenerKind::Tls,
            head("GET", "/nowhere", &[("host", "x.test")]),
        );
        assert!(matches!(d.action, Action::Refuse(ProxyError::NoRoute)));

        let big = head(
            "POST",
            "/api",
            &[("host", "app.test"), ("content-length", "11")],
        );
        let d = decide_from("10.0.0.1", ListenerKind::Tls, big);
        assert!(matches!(
            d.action,
            Action::Refuse(ProxyError::PayloadTooLarge { limit: 10 })
        ));
        assert_eq!(d.route, Some(2));

        let d = decide_from(
            "10.0.0.1",
            ListenerKind::Tls,
            head("GET", "/old/a?b=1", &[("host", "x.test")]),
        );
        let Action::Redirect { status, location } = &d.action else {
            panic!("{d:?}")
        };
        assert_eq!(
            (status.as_u16(), location.to_str().unwrap()),
            (301, "https://new.test/old/a?b=1")
        );

        let d = decide_from(
            "10.0.0.1",
            ListenerKind::RedirectHttps,
            head("GET", "/p?q", &[("host", "x.test:80")]),
        );
        let Action::Redirect { status, location } = &d.action else {
            panic!("{d:?}")
        };
        assert_eq!(
            (status.as_u16(), location.to_str().unwrap()),
            (308, "https://x.test:8443/p?q")
        );
        assert_eq!(d.route, None);
    }

    #[test]
    fn websocket_handshakes_are_checked_and_stay_upgrades() {
        let ws = |origin: &str| {
            head(
                "GET",
                "/ws/1",
                &[
                    ("host", "x.test"),
                    ("connection", "Upgrade"),
                    ("upgrade", "websocket"),
                    ("origin", origin),
                    ("content-length", "0"),
                ],
            )
        };
        let d = decide_from("10.0.0.1", ListenerKind::Plain, ws("https://app.test"));
        let w = d.websocket.clone().unwrap();
        assert_eq!(w.handshake, Handshake::Http1);
        assert_eq!(w.origin, OriginCheck::Allowed("https://app.test".into()));
        let h = &forwarded(&d).headers;
        assert_eq!(
            (
                h["connection"].to_str().unwrap(),
                h["upgrade"].to_str().unwrap()
            ),
            ("upgrade", "websocket")
        );
        assert!(!h.contains_key("content-length"));
        assert_eq!(h["x-forwarded-proto"], "http");

        let d = decide_from("10.0.0.1", ListenerKind::Plain, ws("https://evil.test"));
        assert!(matches!(
            d.action,
            Action::Refuse(ProxyError::OriginNotAllowed { .. })
        ));
        assert_eq!(
            d.websocket.unwrap().origin.origin(),
            Some("https://evil.test")
        );

        // An h2c upgrade is not a WebSocket: stripped and proxied as a plain request.
        let h2c = head(
            "GET",
            "/ws/1",
            &[
                ("host", "x.test"),
                ("connection", "upgrade"),
                ("upgrade", "h2c"),
            ],
        );
        let d = decide_from("10.0.0.1", ListenerKind::Plain, h2c);
        assert!(d.websocket.is_none());
        assert!(!forwarded(&d).headers.contains_key("upgrade"));
    }

    #[test]
    fn origin_checks() {
        let mut ws = WebSocketConfig::default();
        let mut h = HeaderMap::new();
        assert_eq!(OriginCheck::check(&ws, &h), OriginCheck::NotSent);
        ws.require_origin = true;
        assert_eq!(OriginCheck::check(&ws, &h), OriginCheck::Missing);
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://APP.test:443"),
        );
        assert_eq!(
            OriginCheck::check(&ws, &h),
            OriginCheck::Unrestricted("https://APP.test:443".into())
        );
        ws.allowed_origins = vec![OriginPattern::parse("https://app.test").unwrap()];
        assert_eq!(
            OriginCheck::check(&ws, &h),
            OriginCheck::Allowed("https://APP.test:443".into())
        );
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.test"),
        );
        let verdict = OriginCheck::check(&ws, &h);
        assert!(matches!(
            verdict.refusal(),
            Some(ProxyError::OriginNotAllowed { .. })
        ));
    }

    #[test]
    fn trusted_peers_keep_their_forwarded_chain() {
        let h = head(
            "GET",
            "/api",
            &[("host", "app.test"), ("x-forwarded-for", "198.51.100.7")],
        );
        let d = decide_from("10.1.1.1", ListenerKind::Tls, h);
        let h = &forwarded(&d).headers;
        assert_eq!(h["x-forwarded-for"], "198.51.100.7, 10.1.1.1");
        assert_eq!(h["x-real-ip"], "198.51.100.7");
    }
}
