//! WebSockets: on every upstream route, with no setting needed.
//!
//! - HTTP/1.1 `Upgrade: websocket` is forwarded as an upgrade: hop-by-hop
//!   headers out, `Connection: upgrade` + `Upgrade: websocket` back in,
//!   `Sec-WebSocket-*` through; only the upstream's 101 opens the tunnel,
//!   any other answer goes back to the client as is.
//! - HTTP/2 extended CONNECT (RFC 8441, `:protocol = websocket`) is bridged
//!   to an HTTP/1.1 upgrade: ferry makes the `Sec-WebSocket-Key`, checks the
//!   upstream's `Sec-WebSocket-Accept`, and answers the client 200.
//! - `websocket.allowed_origins` is checked before any upstream is contacted.
//! - [`relay`] carries the session and [`log_session`] says how it ended.

pub mod frame;
pub mod relay;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::Authority;
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::State;
use super::body::ProxyBody;
use super::error::ProxyError;
use super::headers::{self, Forwarded};
use super::http::ConnInfo;
use super::log::RequestLog;
use crate::access_log::{AccessLog, Value, now_rfc3339, render};
use crate::config::{RouteConfig, WebSocketConfig};
use crate::metrics::GaugeGuard;
use crate::upstream::{RequestBody, Upstream};
use relay::{ClosedBy, RelayConfig, Summary};

/// How long ferry waits for both peers to finish a close it started.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The magic GUID of RFC 6455 §1.3.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// How a client asked for a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// `GET` with `Connection: upgrade` and `Upgrade: websocket`.
    Http1,
    /// `CONNECT` with `:protocol = websocket` (RFC 8441).
    Http2,
}

impl Handshake {
    fn label(self) -> &'static str {
        match self {
            Handshake::Http1 => "h1",
            Handshake::Http2 => "h2",
        }
    }
}

/// Whether `req` opens a WebSocket. Only `Connection: upgrade` plus
/// `Upgrade: websocket` counts on HTTP/1.1: any other upgrade (h2c) is
/// stripped and the request proxied as a plain one.
pub fn handshake(req: &Request<Incoming>) -> Option<Handshake> {
    match req.version() {
        Version::HTTP_11
            if req.method() == Method::GET && headers::connection_has_upgrade(req.headers()) =>
        {
            let websocket = req
                .headers()
                .get_all(header::UPGRADE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"));
            websocket.then_some(Handshake::Http1)
        }
        Version::HTTP_2 if req.method() == Method::CONNECT => req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .filter(|p| p.as_str().eq_ignore_ascii_case("websocket"))
            .map(|_| Handshake::Http2),
        _ => None,
    }
}

/// The origin check: `Ok(origin)` when allowed (origin may be absent).
pub fn check_origin(
    ws: &WebSocketConfig,
    headers: &HeaderMap,
) -> Result<Option<String>, ProxyError> {
    let origin = headers
        .get(header::ORIGIN)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    match &origin {
        None if ws.require_origin => Err(ProxyError::OriginRequired),
        None => Ok(None),
        Some(o)
            if ws.allowed_origins.is_empty() || ws.allowed_origins.iter().any(|p| p.matches(o)) =>
        {
            Ok(origin)
        }
        Some(o) => Err(ProxyError::OriginNotAllowed { origin: o.clone() }),
    }
}

/// Everything [`proxy`] needs about the request being upgraded.
pub struct Upgrade<'a> {
    pub state: &'a State,
    pub conn: &'a ConnInfo,
    pub route: &'a RouteConfig,
    /// Index of `route` in the state (for its metrics).
    pub route_index: usize,
    pub upstream: &'a Arc<Upstream>,
    pub host: &'a Authority,
    pub kind: Handshake,
}

/// Proxies a WebSocket handshake and, once the upstream accepts, starts the
/// relay before the client's 101 (or 200) is returned.
pub async fn proxy(
    up: Upgrade<'_>,
    mut req: Request<Incoming>,
    log: &mut RequestLog,
) -> Result<Response<ProxyBody>, ProxyError> {
    // Checks: before any upstream is contacted.
    let origin = match check_origin(&up.route.websocket, req.headers()) {
        Ok(origin) => origin,
        Err(e) => {
            let origin = req
                .headers()
                .get(header::ORIGIN)
                .map(|o| String::from_utf8_lossy(o.as_bytes()).into_owned());
            tracing::warn!(route = %up.route.name, client.addr = %up.conn.client, origin = origin.as_deref().unwrap_or("-"),
                "WebSocket handshake refused: {e}");
            return Err(e);
        }
    };
    let client_upgrade = hyper::upgrade::on(&mut req);

    // The upstream request: always an HTTP/1.1 upgrade.
    let key = (up.kind == Handshake::Http2).then(new_key);
    let upstream_req = upstream_request(&up, req, key.as_deref());
    let read_timeout = up.route.read_timeout.unwrap_or(up.upstream.read_timeout);
    let sent = up
        .upstream
        .send(upstream_req, read_timeout)
        .await
        .map_err(|f| super::http::classify(up.upstream, &f.server, f.error))?;
    let (mut res, addr, load, server) = (sent.response, sent.addr, sent.load, sent.server);
    log.upstream_addr = Some(addr);

    // Any answer but 101 goes back as it is (a 403 from the backend, a redirect...).
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(super::http::downstream_response(
            res,
            up.route,
            read_timeout,
        ));
    }
    if let Some(key) = &key {
        let accept = res
            .headers()
            .get("sec-websocket-accept")
            .map(HeaderValue::as_bytes);
        if accept != Some(accept_key(key.as_bytes()).as_bytes()) {
            return Err(ProxyError::UpstreamFailed {
                upstream: up.upstream.name.to_string(),
                server: server.to_string(),
                source: "the upstream's 101 has a wrong Sec-WebSocket-Accept".into(),
            });
        }
    }
    let upstream_upgrade = hyper::upgrade::on(&mut res);
    let response = client_response(&res, up.route, up.kind);

    // The tunnel task exists before the client hears 101/200.
    let session = Session {
        route: up.route.name.clone(),
        upstream: up.upstream.name.clone(),
        upstream_addr: addr,
        client: up.conn.client,
        origin,
        kind: up.kind,
        path: log.uri.path().to_owned(),
        host: up.host.to_string(),
        access_log: up.state.access_log.clone(),
    };
    let config = RelayConfig {
        idle_timeout: up.route.websocket.idle_timeout,
        max_lifetime: up.route.websocket.max_lifetime,
        ping_interval: up.route.websocket.ping_interval,
        close_wait: CLOSE_WAIT.min(up.state.config.server.shutdown_grace),
    };
    let drain = up.conn.drain.clone();
    let stream = up.conn.streams.as_ref().map(|s| s.open());
    let metrics = up.state.metrics.clone();
    let active = up.state.route_metrics[up.route_index].ws_active.clone();
    tokio::spawn(async move {
        // The session counts as load on its server (least_requests) while it lasts.
        let _load = load;
        // An open tunnel keeps its HTTP/2 connection from counting as idle.
        let _stream = stream;
        let started = Instant::now();
        let _active = GaugeGuard::new(active);
        let (client, upstream) = match tokio::try_join!(client_upgrade, upstream_upgrade) {
            Ok(both) => both,
            Err(e) => {
                tracing::warn!(route = %session.route, client.addr = %session.client, error = %e, "WebSocket upgrade did not complete");
                return;
            }
        };
        let summary =
            relay::relay(TokioIo::new(client), TokioIo::new(upstream), config, drain).await;
        log_session(&session, &summary, started.elapsed());
        metrics.websocket_ended(&session.route, summary.code, summary.closed_by.as_str());
    });
    Ok(response)
}

/// The HTTP/1.1 upgrade request sent upstream.
fn upstream_request(
    up: &Upgrade<'_>,
    req: Request<Incoming>,
    key: Option<&str>,
) -> Request<RequestBody> {
    let (mut parts, _body) = req.into_parts();
    let h = &mut parts.headers;
    headers::strip_hop_by_hop(h);
    h.remove(header::CONTENT_LENGTH);
    let host = headers::set_host(h, up.host);
    if let Some(key) = key {
        // Bridging from HTTP/2: the upstream sees an ordinary HTTP/1.1 handshake.
        headers::merge_cookies(h);
        h.insert(
            "sec-websocket-key",
            HeaderValue::from_str(key).expect("base64 is a valid header value"),
        );
        h.insert("sec-websocket-version", HeaderValue::from_static("13"));
    }
    headers::set_forwarded(
        h,
        &Forwarded {
            peer: up.conn.client.ip(),
            peer_value: &up.conn.client_ip,
            proto: if up.conn.tls { "https" } else { "http" },
            host: &host,
            trusted: &up.state.config.server.trusted_proxies,
        },
    );
    up.route.request_headers.apply(h);
    // Last, so no header edit can turn the handshake into a plain request.
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    parts.method = Method::GET;
    parts.uri = Upstream::origin_form(parts.uri.path_and_query());
    parts.version = Version::HTTP_11;
    parts.extensions = http::Extensions::new();
    Request::from_parts(parts, RequestBody::empty())
}

/// The client's answer: 101 for HTTP/1.1, 200 for HTTP/2, with the upstream's
/// end-to-end headers (subprotocol, extensions, cookies).
fn client_response(
    res: &Response<Incoming>,
    route: &RouteConfig,
    kind: Handshake,
) -> Response<ProxyBody> {
    let mut headers = res.headers().clone();
    headers::strip_hop_by_hop(&mut headers);
    route.response_headers.apply(&mut headers);
    let mut out = Response::new(ProxyBody::empty());
    match kind {
        Handshake::Http1 => {
            *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        Handshake::Http2 => {
            *out.status_mut() = StatusCode::OK;
            headers.remove("sec-websocket-accept");
        }
    }
    *out.headers_mut() = headers;
    out
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64.
pub fn new_key() -> String {
    let mut bytes = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // Uniqueness, not secrecy, is what the key needs.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = nanos.to_le_bytes();
    }
    BASE64.encode(bytes)
}

/// `Sec-WebSocket-Accept` for `key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(ACCEPT_GUID);
    BASE64.encode(ctx.finish().as_ref())
}

/// Who a session was, for its log line.
struct Session {
    route: Arc<str>,
    upstream: Arc<str>,
    upstream_addr: SocketAddr,
    client: SocketAddr,
    origin: Option<String>,
    kind: Handshake,
    path: String,
    host: String,
    access_log: Option<Arc<AccessLog>>,
}

/// One line per session, at its end (target `ferry::websocket`).
fn log_session(s: &Session, sum: &Summary, duration: Duration) {
    let abnormal = sum.code == 1006 || sum.code == 1011;
    if let Some(log) = &s.access_log {
        let (time, client, upstream_addr) = (
            now_rfc3339(),
            s.client.to_string(),
            s.upstream_addr.to_string(),
        );
        let line = render(
            log.format,
            &[
                ("time", Some(Value::Str(&time))),
                ("type", Some(Value::Str("websocket"))),
                ("client", Some(Value::Str(&client))),
                ("host", Some(Value::Str(&s.host))),
                ("path", Some(Value::Str(&s.path))),
                ("route", Some(Value::Str(&s.route))),
                ("upstream", Some(Value::Str(&s.upstream))),
                ("upstream_addr", Some(Value::Str(&upstream_addr))),
                ("origin", s.origin.as_deref().map(Value::Str)),
                (
                    "http",
                    Some(Value::Str(if s.kind == Handshake::Http2 {
                        "HTTP/2.0"
                    } else {
                        "HTTP/1.1"
                    })),
                ),
                (
                    "duration_ms",
                    Some(Value::Float(duration.as_secs_f64() * 1000.0)),
                ),
                ("bytes_in", Some(Value::Num(sum.bytes_up))),
                ("bytes_out", Some(Value::Num(sum.bytes_down))),
                ("messages_in", Some(Value::Num(sum.messages_up))),
                ("messages_out", Some(Value::Num(sum.messages_down))),
                ("close_code", Some(Value::Num(u64::from(sum.code)))),
                ("closed_by", Some(Value::Str(sum.closed_by.as_str()))),
                ("close_reason", Some(Value::Str(&sum.reason))),
            ],
        );
        log.write(line);
        if !abnormal || sum.closed_by != ClosedBy::Upstream {
            return;
        }
    }
    let origin = s.origin.as_deref().unwrap_or("-");
    let duration_s = format_args!("{:.1}", duration.as_secs_f64());
    // A backend dropping sessions is worth a warning; a client vanishing
    // (a laptop closing, a phone changing networks) is ordinary.
    if abnormal && sum.closed_by == ClosedBy::Upstream {
        tracing::warn!(target: "ferry::websocket", route = %s.route, client.addr = %s.client, origin, path = %s.path,
            upstream = %s.upstream, upstream.addr = %s.upstream_addr, protocol = s.kind.label(), duration_s,
            bytes_up = sum.bytes_up, bytes_down = sum.bytes_down, messages_up = sum.messages_up,
            messages_down = sum.messages_down, closed_by = sum.closed_by.as_str(), close_code = sum.code,
            close_reason = %sum.reason, "WebSocket session ended abnormally");
    } else {
        tracing::info!(target: "ferry::websocket", route = %s.route, client.addr = %s.client, origin, path = %s.path,
            upstream = %s.upstream, upstream.addr = %s.upstream_addr, protocol = s.kind.label(), duration_s,
            bytes_up = sum.bytes_up, bytes_down = sum.bytes_down, messages_up = sum.messages_up,
            messages_down = sum.messages_down, closed_by = sum.closed_by.as_str(), close_code = sum.code,
            close_reason = %sum.reason, "WebSocket session ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OriginPattern;

    #[test]
    fn accept_key_matches_rfc6455_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(BASE64.decode(new_key()).unwrap().len(), 16);
        assert_ne!(new_key(), new_key());
    }

    #[test]
    fn origin_checks() {
        let mut ws = WebSocketConfig::default();
        let mut h = HeaderMap::new();
        assert_eq!(check_origin(&ws, &h).unwrap(), None);
        ws.require_origin = true;
        assert!(matches!(
            check_origin(&ws, &h),
            Err(ProxyError::OriginRequired)
        ));
        ws.allowed_origins = vec![OriginPattern::parse("https://app.test").unwrap()];
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://APP.test:443"),
        );
        assert_eq!(
            check_origin(&ws, &h).unwrap().as_deref(),
            Some("https://APP.test:443")
        );
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.test"),
        );
        assert!(matches!(
            check_origin(&ws, &h),
            Err(ProxyError::OriginNotAllowed { .. })
        ));
    }
}
