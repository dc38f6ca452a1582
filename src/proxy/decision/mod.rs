//! What ferry does with a request, decided once and without I/O. The proxy
//! executes a [`Decision`] ([`super::http`], [`super::websocket`]); `ferry
//! route` prints one. [`decide`] walks these steps, in this order:
//!
//! 1. **target** — the request line and the authority the client asked for,
//!    checked before anything is matched ([`target`]): a lower-case method
//!    (400), `CONNECT` other than an RFC 8441 WebSocket (501), a duplicate,
//!    missing or malformed `Host`, or `:authority` and `host` that disagree
//!    (400); then the URI's authority (HTTP/2 `:authority`, HTTP/1.1
//!    absolute-form) or the `Host` header; a path with NUL or a backslash (400).
//!    On a TLS connection, a host whose name has another client-certificate
//!    policy than the handshake's name gets 421 ([`client_cert`]).
//! 2. **listener** — a `redirect_https` listener answers 308 to the same URL over https.
//! 3. **route** — the first matching `[[route]]` in file order, or 404.
//! 4. **redirect, static** — a redirect route answers here; a static route
//!    leaves for [`crate::static_files`] with the request as the client sent it.
//! 5. **checks** — a WebSocket handshake's `Origin` against the route's
//!    `allowed_origins` (403); a declared body over `max_body_size` (413).
//! 6. **upstream request** — hop-by-hop headers out, `X-Forwarded-*` and
//!    the client certificate's `X-Client-*` in, the route's `request_headers`, HTTP/1.1 in origin-form; a WebSocket handshake
//!    (HTTP/1.1 or HTTP/2's extended CONNECT) is always an HTTP/1.1 upgrade.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery};
use http::{Method, StatusCode, Uri, Version};

use super::error::ProxyError;
use super::headers::{self, Forwarded};
use crate::config::{Config, ListenerKind, RouteAction, RouteConfig, StaticConfig};
use crate::tls::ClientAuthScope;

pub mod client_cert;
mod target;
mod websocket;
pub use websocket::{Handshake, OriginCheck, WebSocket, websocket_handshake};

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
    /// A TLS connection's client-certificate facts, while any certificate has client auth.
    pub client_auth: Option<&'a ClientAuthScope>,
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
    /// Serve a file from the route's directory (the request path, as
    /// nginx's `root`, is resolved under it).
    Static(Arc<StaticConfig>),
    /// Send this to the route's upstream.
    Forward(Forward),
}

/// A request on its way upstream. Its head, rewritten for the upstream, is
/// the one [`decide`] was given: for a WebSocket bridged from HTTP/2, the
/// proxy adds its own `Sec-WebSocket-Key` just before sending.
#[derive(Debug)]
pub struct Forward {
    /// The route that sends it (as in [`Decision::route`]).
    pub route: usize,
    /// Where it goes (as in [`Decision::upstream`]).
    pub upstream: usize,
    /// The longest wait for upstream bytes: the route's, else the upstream's.
    pub read_timeout: Duration,
    /// The route's body limit: a body that grows past it is cut off.
    pub max_body_size: Option<u64>,
}

/// Decides what to do with the request `head` that arrived as `inbound`,
/// under `config`. When the answer is [`Action::Forward`], `head` has been
/// rewritten in place into the upstream's request head (in place: the head
/// is a few hundred bytes, and a request path that moves it around pays
/// for each copy).
pub fn decide(config: &Config, inbound: &Inbound<'_>, head: &mut Parts) -> Decision {
    // Until a route takes the request, the answer is 404.
    let mut decision = Decision {
        host: None,
        route: None,
        upstream: None,
        websocket: None,
        action: Action::Refuse(ProxyError::NoRoute),
    };
    // 1. Target.
    let checked = target::method(head).and_then(|()| target::connect(head));
    let host = match checked.and_then(|()| target::authority(head)) {
        Ok(host) => host,
        Err(e) => {
            decision.action = Action::Refuse(e);
            return decision;
        }
    };
    decision.host = Some(host.clone());
    if let Err(e) = target::path(head) {
        decision.action = Action::Refuse(e);
        return decision;
    }
    if client_cert::misdirected(inbound.client_auth, host.as_str()) {
        decision.action = Action::Refuse(ProxyError::Misdirected);
        return decision;
    }

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

    // 4. Redirect and static routes answer here.
    let upstream = match &route.action {
        RouteAction::Redirect { to, status } => {
            decision.action = redirect(to, *status, inbound.scheme(), &host, &head.uri);
            return decision;
        }
        RouteAction::Static(files) => {
            decision.action = Action::Static(files.clone());
            return decision;
        }
        RouteAction::Upstream(i) => *i,
    };
    decision.upstream = Some(upstream);

    // 5. Checks.
    let handshake = websocket_handshake(head);
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
    upstream_head(head, config, route, inbound, &host, handshake);
    decision.action = Action::Forward(Forward {
        route: index,
        upstream,
        read_timeout,
        max_body_size: route.max_body_size,
    });
    decision
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
    head: &mut Parts,
    config: &Config,
    route: &RouteConfig,
    inbound: &Inbound<'_>,
    host: &Authority,
    websocket: Option<Handshake>,
) {
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
            rfc7239: config.server.forwarded_header,
        },
    );
    client_cert::set_headers(h, inbound.client_auth);
    route.request_headers.apply(h);
    if websocket.is_some() {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        head.method = Method::GET;
    }
    head.uri = origin_form(head.uri.path_and_query());
    head.version = Version::HTTP_11;
    head.extensions = http::Extensions::new();
}

/// The request target for an HTTP/1.1 upstream: origin-form `/path?query`.
fn origin_form(path_and_query: Option<&PathAndQuery>) -> Uri {
    let pq = path_and_query
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(pq)
}

#[cfg(test)]
mod tests;
