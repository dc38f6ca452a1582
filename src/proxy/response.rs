//! The responses ferry sends that are not failures: an upstream's answer made
//! fit for the client, a redirect, and the answer that opens a WebSocket.
//! (Failures are answered by [`super::error::error_response`].)

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use hyper::body::Incoming;

use super::body::ProxyBody;
use super::decision::Handshake;
use super::headers;
use crate::config::RouteConfig;

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

/// The upstream's headers as the client may see them.
fn end_to_end(headers: &mut HeaderMap, route: &RouteConfig) {
    headers::strip_hop_by_hop(headers);
    route.response_headers.apply(headers);
}
