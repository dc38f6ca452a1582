//! The responses ferry sends: an upstream's answer made fit for the client, a
//! redirect, the answer that opens a WebSocket, and the short answer to a
//! failure (its status chosen by [`ProxyError::status`]).

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use hyper::body::Incoming;

use super::body::ProxyBody;
use super::decision::Handshake;
use super::error::ProxyError;
use super::headers;
use crate::config::{Config, RouteConfig};
use crate::static_files::FileBody;

/// The upstream's response: hop-by-hop headers out, the route's
/// `response_headers` in, the body streamed with `read_timeout` between chunks.
pub fn from_upstream(
    res: Response<Incoming>,
    route: &RouteConfig,
    read_timeout: Duration,
) -> Response<ProxyBody> {
    let (mut parts, body) = res.into_parts();
    end_to_end(&mut parts.headers, route);
    parts.extensions = http::Extensions::new();
    Response::from_parts(parts, ProxyBody::upstream(body, read_timeout))
}

/// A static route's file: the route's `response_headers` applied (they may
/// override the caching policy).
pub fn from_file(res: Response<FileBody>, route: &RouteConfig) -> Response<ProxyBody> {
    let (mut parts, body) = res.into_parts();
    route.response_headers.apply(&mut parts.headers);
    Response::from_parts(parts, ProxyBody::stream(body))
}

/// A redirect to `location`.
pub fn redirect(status: StatusCode, location: HeaderValue) -> Response<ProxyBody> {
    let mut res = Response::new(ProxyBody::empty());
    *res.status_mut() = status;
    res.headers_mut().insert(header::LOCATION, location);
    res
}

/// The client's answer once the upstream accepted a WebSocket: 101 for
/// HTTP/1.1, 200 for HTTP/2, with the upstream's end-to-end headers
/// (subprotocol, extensions, cookies).
pub fn websocket_accepted(
    upstream: &Response<Incoming>,
    route: &RouteConfig,
    handshake: Handshake,
) -> Response<ProxyBody> {
    let mut headers = upstream.headers().clone();
    end_to_end(&mut headers, route);
    let mut out = Response::new(ProxyBody::empty());
    match handshake {
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

/// `Strict-Transport-Security` on a response over TLS: the route's `hsts`,
/// else `server.hsts`. It replaces one the upstream (or `response_headers`)
/// set, so the edge's policy is the one browsers see, once: with two, a
/// browser keeps the first, which may not be the configured one.
pub fn set_hsts(headers: &mut HeaderMap, config: &Config, route: Option<usize>) {
    let hsts = route
        .and_then(|r| config.routes[r].hsts.as_ref())
        .or(config.server.hsts.as_ref());
    if let Some(value) = hsts {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, value.clone());
    }
}

/// The content types of ferry's error answers (never cached: `no-store`).
const ERROR_TEXT: &str = "text/plain; charset=utf-8";
const ERROR_JSON: &str = "application/json";

/// Whether a response has the headers of one of ferry's own error answers
/// ([`error`]): how `ferry probe` tells ferry's 502 from a backend's.
pub fn looks_like_error(headers: &HeaderMap) -> bool {
    let content_type = headers.get(header::CONTENT_TYPE);
    content_type.is_some_and(|v| v == ERROR_TEXT || v == ERROR_JSON)
        && headers
            .get(header::CACHE_CONTROL)
            .is_some_and(|v| v == "no-store")
}

/// The error response: JSON when the client accepts it, plain text otherwise.
pub fn error(err: &ProxyError, wants_json: bool) -> Response<ProxyBody> {
    let status = err.status();
    let message = err.public_message();
    let (body, content_type) = if wants_json {
        (
            format!(
                "{{\"status\":{},\"error\":\"{}\"}}\n",
                status.as_u16(),
                message.replace('"', "'")
            ),
            ERROR_JSON,
        )
    } else {
        (format!("{} {}\n", status.as_u16(), message), ERROR_TEXT)
    };
    let mut res = Response::new(ProxyBody::full(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // 405's `Allow`, 416's `Content-Range`.
    if let ProxyError::Static(e) = err {
        if let Some((name, value)) = e.header() {
            res.headers_mut().insert(name, value);
        }
    }
    res
}

/// Whether the client's `Accept` asks for JSON.
pub fn wants_json(request_headers: &HeaderMap) -> bool {
    request_headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json") || v.contains("+json"))
}

/// The upstream's headers as the client may see them.
fn end_to_end(headers: &mut HeaderMap, route: &RouteConfig) {
    headers::strip_hop_by_hop(headers);
    route.response_headers.apply(headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_when_accepted() {
        let mut h = HeaderMap::new();
        let res = error(&ProxyError::NoRoute, wants_json(&h));
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, */*"),
        );
        let res = error(&ProxyError::NoRoute, wants_json(&h));
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(res.status(), 404);
        assert!(looks_like_error(res.headers()));
    }

    /// A static route's 405 and 416 carry the header their status requires.
    #[test]
    fn static_errors_carry_their_headers() {
        use crate::static_files::StaticError;
        let res = error(&StaticError::MethodNotAllowed.into(), false);
        assert_eq!(res.status(), 405);
        assert_eq!(res.headers()[header::ALLOW], "GET, HEAD");
        let res = error(&StaticError::RangeNotSatisfiable { len: 10 }.into(), false);
        assert_eq!(res.status(), 416);
        assert_eq!(res.headers()[header::CONTENT_RANGE], "bytes */10");
    }
}
