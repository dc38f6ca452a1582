//! The request path, in phases, in this order:
//!
//! 1. **target** — who is asking for which host and path ([`target`]).
//! 2. **route** — first matching `[[route]]`, or 404 ([`State::route`]).
//! 3. **redirect** — a redirect route answers here. A WebSocket handshake
//!    leaves for [`websocket::proxy`] (origin check, upgrade, relay).
//! 4. **checks** — a declared body over the route's `max_body_size` is 413.
//! 5. **upstream request** — hop-by-hop headers out, `X-Forwarded-*` in, the
//!    route's `request_headers`, HTTP/1.1 ([`upstream_request`]).
//! 6. **send** — to a server picked by the upstream's balancing, retried
//!    elsewhere only if nothing was sent; the read timeout bounds the wait for
//!    the response head ([`send`]).
//! 7. **response** — hop-by-hop headers out, the route's `response_headers`,
//!    the body streamed with a between-chunks timeout ([`downstream_response`]).
//! 8. **log** — one line (and the metrics) when the body is done ([`RequestLog`]).
//!
//! Errors from any phase go through [`error_response`], the one place that
//! picks a status.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::uri::Authority;
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use super::State;
use super::body::ProxyBody;
use super::error::{ProxyError, Side, error_response, status_response, wants_json};
use super::headers::{self, Forwarded};
use super::log::RequestLog;
use super::websocket;
use crate::config::{RouteAction, RouteConfig};
use crate::upstream::body::BodyTooLarge;
use crate::upstream::{RequestBody, SendError, Sent, Upstream};

/// Facts about the client connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The TCP peer.
    pub client: SocketAddr,
    /// Its address as `X-Forwarded-For` carries it, formatted once per connection.
    pub client_ip: HeaderValue,
    /// Whether the client reached us over TLS (decides `X-Forwarded-Proto`).
    pub tls: bool,
    /// WebSocket tunnels outlive their request: they keep the drain waiting with this.
    pub drain: crate::drain::Watch,
    /// `TLSv1.3` or `TLSv1.2`; `None` for cleartext.
    pub tls_version: Option<&'static str>,
    /// Requests and tunnels open on this connection, for the HTTP/2 idle
    /// timeout (`None` on HTTP/1.1, whose idle limit is hyper's).
    pub streams: Option<crate::drain::Streams>,
}

impl ConnInfo {
    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// Serves one request on a proxying listener. Never fails: errors become responses.
pub async fn handle(
    state: Arc<State>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let json = wants_json(req.headers());
    let mut log = Box::new(RequestLog::new(
        state.clone(),
        conn.client,
        req.method().clone(),
        req.version(),
        req.uri().clone(),
    ));
    log.tls = conn.tls_version;
    log.stream = conn.streams.as_ref().map(|s| s.open());
    let result = match target(&req) {
        // Phase 1: target.
        Ok(host) => {
            log.host = Some(host.clone());
            proxy(&state, &conn, req, &host, &mut log).await
        }
        Err(e) => Err(e),
    };
    let (mut res, err) = match result {
        Ok(res) => (res, None),
        Err(e) => (error_response(&e, json), Some(e)),
    };
    // Phase 8 set-up: the record rides on the body and is written when it ends.
    log.status = res.status();
    if let Some(e) = &err {
        log.error = Some(error_chain(e));
        log.error_is_ours = e.side() != Side::Client;
    }
    res.body_mut().set_log(log);
    res
}

async fn proxy(
    state: &State,
    conn: &ConnInfo,
    req: Request<Incoming>,
    host: &Authority,
    log: &mut RequestLog,
) -> Result<Response<ProxyBody>, ProxyError> {
    // Phase 2: route.
    let (index, route) = state
        .route(host.as_str(), req.uri().path())
        .ok_or(ProxyError::NoRoute)?;
    log.route = Some(route.name.clone());
    log.route_index = Some(index);

    // Phase 3: redirect routes answer here.
    let upstream = match &route.action {
        RouteAction::Redirect { to, status } => {
            return Ok(redirect(to, *status, conn.scheme(), host, &req));
        }
        RouteAction::Upstream(i) => &state.upstreams[*i],
    };

    log.upstream = Some(upstream.name.clone());

    // WebSocket handshakes take their own path from here (origin check, upgrade, relay).
    if let Some(kind) = websocket::handshake(&req) {
        let up = websocket::Upgrade {
            state,
            conn,
            route,
            route_index: index,
            upstream,
            host,
            kind,
        };
        // Boxed: the rarer WebSocket path keeps its state out of every
        // plain request's future.
        return Box::pin(websocket::proxy(up, req, log)).await;
    }

    // Phase 4, checks: a declared body over the route's limit is refused before any
    // upstream is contacted (an undeclared one is cut off as it streams).
    if let Some(limit) = route.max_body_size {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(ProxyError::PayloadTooLarge { limit });
        }
    }

    // Phase 5: the upstream request.
    let upstream_req = upstream_request(req, state, conn, route, host);

    log.request_body = Some(upstream_req.body().progress());

    // Phase 6: send.
    let sent = std::time::Instant::now();
    let done = send(upstream, route, upstream_req).await?;
    log.upstream_ms = Some(sent.elapsed().as_secs_f64() * 1000.0);
    log.upstream_addr = Some(done.addr);
    // The server counts this request as load until the response body ends.
    log.load = Some(done.load);
    let res = done.response;

    // Phase 7: the response.
    let read_timeout = route.read_timeout.unwrap_or(upstream.read_timeout);
    Ok(downstream_response(res, route, read_timeout))
}

/// Phase 1: the authority the client asked for: the URI's (HTTP/2 `:authority`,
/// HTTP/1.1 absolute-form) or the `Host` header. HTTP/1.1 requires one.
fn target(req: &Request<Incoming>) -> Result<Authority, ProxyError> {
    if let Some(authority) = req.uri().authority() {
        return Ok(authority.clone());
    }
    match req.headers().get(header::HOST) {
        Some(value) => Authority::try_from(value.as_bytes())
            .map_err(|_| ProxyError::BadRequest("invalid Host header")),
        None if req.version() == Version::HTTP_10 => Ok(Authority::from_static("localhost")),
        None => Err(ProxyError::BadRequest("missing Host header")),
    }
}

/// Phase 3: a redirect route's response. `{scheme}`, `{host}`, `{path}`,
/// `{query}` and `{uri}` (path and query) are filled from the request.
fn redirect(
    to: &str,
    status: StatusCode,
    scheme: &str,
    host: &Authority,
    req: &Request<Incoming>,
) -> Response<ProxyBody> {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    let uri = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = to
        .replace("{scheme}", scheme)
        .replace("{host}", host.host())
        .replace("{path}", path)
        .replace("{query}", query)
        .replace("{uri}", uri);
    match HeaderValue::from_str(&location) {
        Ok(value) => {
            let mut res = Response::new(ProxyBody::empty());
            *res.status_mut() = status;
            res.headers_mut().insert(header::LOCATION, value);
            res
        }
        Err(_) => status_response(
            StatusCode::BAD_REQUEST,
            "cannot build redirect location",
            false,
        ),
    }
}

/// Phase 5: rewrite the client's request for the upstream.
fn upstream_request(
    req: Request<Incoming>,
    state: &State,
    conn: &ConnInfo,
    route: &RouteConfig,
    host: &Authority,
) -> Request<RequestBody> {
    let (mut parts, body) = req.into_parts();
    let from_http2 = parts.version == Version::HTTP_2;
    let headers = &mut parts.headers;

    headers::strip_hop_by_hop(headers);
    // hyper already answered `Expect: 100-continue` when it read the body.
    headers.remove(header::EXPECT);
    if from_http2 {
        headers::merge_cookies(headers);
    }
    // Keep the client's Host (HTTP/2's :authority becomes Host for HTTP/1.1).
    let host = headers::set_host(headers, host);
    headers::set_forwarded(
        headers,
        &Forwarded {
            peer: conn.client.ip(),
            peer_value: &conn.client_ip,
            proto: conn.scheme(),
            host: &host,
            trusted: &state.config.server.trusted_proxies,
        },
    );
    route.request_headers.apply(headers);

    parts.uri = Upstream::origin_form(parts.uri.path_and_query());
    parts.version = Version::HTTP_11;
    parts.extensions = http::Extensions::new();
    Request::from_parts(parts, RequestBody::new(body, route.max_body_size))
}

/// Phase 6: send; the read timeout bounds the wait for the response head.
async fn send(
    upstream: &Arc<Upstream>,
    route: &RouteConfig,
    req: Request<RequestBody>,
) -> Result<Sent, ProxyError> {
    let read_timeout = route.read_timeout.unwrap_or(upstream.read_timeout);
    upstream
        .send(req, read_timeout)
        .await
        .map_err(|f| classify(upstream, &f.server, f.error))
}

/// Which side a send failure belongs to.
pub(crate) fn classify(upstream: &Upstream, server: &Authority, e: SendError) -> ProxyError {
    if let SendError::Exchange { source } = &e {
        if let Some(too_large) = sources(source).find_map(|s| s.downcast_ref::<BodyTooLarge>()) {
            return ProxyError::PayloadTooLarge { limit: too_large.0 };
        }
    }
    let (up, srv) = (upstream.name.to_string(), server.to_string());
    match e {
        SendError::ConnectTimeout { .. } => ProxyError::UpstreamConnectTimeout {
            upstream: up,
            server: srv,
        },
        SendError::Timeout { timeout } => ProxyError::UpstreamTimeout {
            upstream: up,
            server: srv,
            timeout,
        },
        SendError::Resolve { .. } | SendError::Connect { .. } => ProxyError::UpstreamConnect {
            upstream: up,
            server: srv,
            source: Box::new(e),
        },
        // The client's own body failing (it hung up mid-upload) is not the upstream's fault.
        SendError::Exchange { ref source } if source.is_user() => {
            let client_gone = sources(source).skip(1).any(|s| {
                s.downcast_ref::<hyper::Error>()
                    .is_some_and(|h| h.is_incomplete_message() || h.is_canceled())
            });
            if client_gone {
                ProxyError::BadRequest("request body ended early")
            } else {
                ProxyError::UpstreamFailed {
                    upstream: up,
                    server: srv,
                    source: Box::new(e),
                }
            }
        }
        SendError::Handshake { .. } | SendError::Exchange { .. } => ProxyError::UpstreamFailed {
            upstream: up,
            server: srv,
            source: Box::new(e),
        },
    }
}

fn sources<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

/// The error and its causes on one line, for the log.
fn error_chain(e: &ProxyError) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Phase 7: the upstream's response, made fit for the client.
pub(crate) fn downstream_response(
    res: Response<Incoming>,
    route: &RouteConfig,
    read_timeout: std::time::Duration,
) -> Response<ProxyBody> {
    let (mut parts, body) = res.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    route.response_headers.apply(&mut parts.headers);
    parts.extensions = http::Extensions::new();
    Response::from_parts(parts, ProxyBody::upstream(body, read_timeout))
}

/// Serves one request on a `redirect_https` listener: 308 to the same URL over https.
pub fn redirect_to_https(
    state: Arc<State>,
    client: SocketAddr,
    req: &Request<Incoming>,
    https_port: Option<u16>,
) -> Response<ProxyBody> {
    let json = wants_json(req.headers());
    let mut log = Box::new(RequestLog::new(
        state,
        client,
        req.method().clone(),
        req.version(),
        req.uri().clone(),
    ));
    let mut res = match target(req) {
        Ok(host) => {
            log.host = Some(host.clone());
            let port = match https_port {
                Some(443) | None => String::new(),
                Some(p) => format!(":{p}"),
            };
            let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
            let location = format!("https://{}{port}{pq}", host.host());
            match HeaderValue::from_str(&location) {
                Ok(value) => {
                    let mut res = Response::new(ProxyBody::empty());
                    *res.status_mut() = StatusCode::PERMANENT_REDIRECT;
                    res.headers_mut().insert(header::LOCATION, value);
                    res
                }
                Err(_) => status_response(StatusCode::BAD_REQUEST, "invalid request target", json),
            }
        }
        Err(e) => {
            log.error = Some(e.to_string());
            error_response(&e, json)
        }
    };
    // Logged (and counted under route "-") like any other request.
    log.status = res.status();
    res.body_mut().set_log(log);
    res
}
