//! The per-request context: what the request path learns about one request,
//! built once when it arrives and filled in phase by phase. The response body
//! carries it, and when the body is done (or dropped) it writes the request's
//! access-log record and metrics, exactly once.
//!
//! Requests hyper's parser refuses never get a context; [`log_parser_refusal`]
//! writes their record, with the same keys (access_log's `RequestRecord`).
//!
//! It holds cheap clones (`Uri`, `Authority` and names are reference-counted),
//! so it costs one small allocation per request whether or not the line is
//! finally written.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::request::Parts;
use http::uri::Authority;
use http::{Method, StatusCode, Uri, Version};

use super::error::Side;
use super::{ConnInfo, State};
use crate::access_log::{AccessLog, RequestRecord};
use crate::config::RouteConfig;
use crate::upstream::body::Progress;

/// One request's context, from its arrival to the end of its response body.
///
/// It is logged exactly once, when it is dropped: by the response body when
/// the body ends or is dropped, or — if the client abandoned the request
/// before ferry had an answer (an HTTP/2 stream reset, say) — by the request
/// path's future as hyper drops it.
#[derive(Debug)]
pub struct RequestContext {
    /// The snapshot the request uses for its whole life: config, upstreams,
    /// metrics handles, access log.
    pub state: Arc<State>,
    /// The connection it arrived on.
    pub conn: Arc<ConnInfo>,
    pub start: Instant,
    pub method: Method,
    pub version: Version,
    /// Only the path is logged: query strings often carry tokens.
    pub uri: Uri,
    /// `None` when the request had no usable Host.
    pub host: Option<Authority>,
    /// The matched route, an index into `state.config.routes`.
    pub route: Option<usize>,
    /// The route's upstream, an index into `state.upstreams`.
    pub upstream: Option<usize>,
    /// The address that answered (after DNS).
    pub upstream_addr: Option<SocketAddr>,
    /// The status of the response; `None` until there is one.
    pub status: Option<StatusCode>,
    /// Response body bytes sent to the client.
    pub bytes_out: u64,
    /// The response body was sent to its end (set by the body).
    pub complete: bool,
    /// Why the request failed, when it did: whose fault, and the cause for the operator.
    pub failure: Option<(Side, String)>,
    /// Set when the response body failed part-way (upstream reset, read timeout).
    pub body_error: Option<String>,
    /// The request body's progress (bytes sent upstream).
    pub request_body: Option<Arc<Progress>>,
    /// Time from sending upstream to the response head.
    pub upstream_ms: Option<f64>,
    /// The request's weight on its upstream server, released with the context.
    pub load: Option<crate::upstream::Load>,
    /// Keeps the connection from counting as idle until the response is done.
    pub stream: Option<crate::drain::StreamGuard>,
}

impl RequestContext {
    /// The context of a request that just arrived with `head`.
    pub fn new(state: Arc<State>, conn: Arc<ConnInfo>, head: &Parts) -> RequestContext {
        let stream = conn.streams.as_ref().map(|s| s.open());
        RequestContext {
            state,
            conn,
            start: Instant::now(),
            method: head.method.clone(),
            version: head.version,
            uri: head.uri.clone(),
            host: None,
            route: None,
            upstream: None,
            upstream_addr: None,
            status: None,
            bytes_out: 0,
            complete: false,
            failure: None,
            body_error: None,
            request_body: None,
            upstream_ms: None,
            load: None,
            stream,
        }
    }

    /// The matched route's settings.
    pub fn route_config(&self) -> Option<&RouteConfig> {
        self.route.map(|i| &self.state.config.routes[i])
    }

    fn route_name(&self) -> Option<&str> {
        self.route_config().map(|r| &*r.name)
    }

    fn upstream_name(&self) -> Option<&str> {
        self.upstream.map(|i| &*self.state.upstreams[i].name)
    }

    /// Whether the client went away before the response was complete: no
    /// answer yet, or a body dropped before its end that ferry had not
    /// failed itself (an upstream breaking off is `body_error`, not this).
    fn aborted(&self) -> bool {
        match self.status {
            None => true,
            Some(status) => {
                !self.complete
                    && self.body_error.is_none()
                    // No body goes out for these, whatever the body holds.
                    && self.method != Method::HEAD
                    && !status.is_informational()
                    && status != StatusCode::NO_CONTENT
                    && status != StatusCode::NOT_MODIFIED
            }
        }
    }

    /// Counts the request in the metrics and writes its record (target
    /// `ferry::access`): info for served requests, client errors and
    /// abandoned requests, warn when the upstream failed or the response was
    /// cut off.
    fn write(&self) {
        let seconds = self.start.elapsed().as_secs_f64();
        let aborted = self.aborted();
        let status = self.status.map(|s| s.as_u16());
        let metrics = self
            .route
            .map_or(&self.state.unrouted, |i| &self.state.route_metrics[i]);
        metrics.request(status, aborted, seconds);
        if let Some(log) = &self.state.access_log {
            log.write(self.render(log, aborted));
            // The access log has the line; the error log still gets failures.
            let upstream_failed = matches!(self.failure, Some((Side::Upstream, _)));
            if self.body_error.is_none() && !upstream_failed {
                return;
            }
        }

        let host = self.host.as_ref().map_or("-", Authority::as_str);
        let path = self.uri.path();
        let route = self.route_name().unwrap_or("-");
        let upstream = self.upstream_name().unwrap_or("-");
        let client = self.conn.client;
        let upstream_addr = self.upstream_addr.map(tracing::field::display);
        let duration_ms = seconds * 1000.0;
        let duration_ms = format_args!("{duration_ms:.1}");
        let status = status.map(tracing::field::display);
        let failure = match (&self.body_error, &self.failure) {
            (Some(e), _) => Some((true, "response aborted", e.as_str())),
            (None, Some((side, e))) => {
                Some((*side == Side::Upstream, "request failed", e.as_str()))
            }
            (None, None) if aborted => Some((false, "request abandoned by the client", "")),
            (None, None) => None,
        };
        match failure {
            None => {
                tracing::info!(target: "ferry::access", method = %self.method, client.addr = %client,
                version = ?self.version, host = %host, path = %path, route = %route, upstream = %upstream, upstream.addr = upstream_addr, status,
                bytes = self.bytes_out, duration_ms, "request")
            }
            Some((true, outcome, error)) => {
                tracing::warn!(target: "ferry::access", method = %self.method,
                client.addr = %client, version = ?self.version, host = %host, path = %path, route = %route, upstream = %upstream,
                upstream.addr = upstream_addr, status, bytes = self.bytes_out, duration_ms, error, "{outcome}")
            }
            Some((false, outcome, error)) => {
                let error = (!error.is_empty()).then_some(error);
                tracing::info!(target: "ferry::access", method = %self.method,
                client.addr = %client, version = ?self.version, host = %host, path = %path, route = %route, upstream = %upstream,
                upstream.addr = upstream_addr, status, bytes = self.bytes_out, duration_ms, error, "{outcome}")
            }
        }
    }

    /// The access log record (see docs/operations.md for the fields).
    fn render(&self, log: &AccessLog, aborted: bool) -> Vec<u8> {
        let client = self.conn.client.to_string();
        let upstream_addr = self.upstream_addr.map(|a| a.to_string());
        let error = self
            .body_error
            .as_deref()
            .or(self.failure.as_ref().map(|(_, e)| e.as_str()));
        RequestRecord {
            client: &client,
            listener: &self.conn.listen,
            method: Some(self.method.as_str()),
            host: self.host.as_ref().map(Authority::as_str),
            path: Some(self.uri.path()),
            query: self.uri.query().filter(|_| log.query),
            route: self.route_name(),
            upstream: self.upstream_name(),
            upstream_addr: upstream_addr.as_deref(),
            status: self.status.map(|s| s.as_u16()),
            bytes_in: self.request_body.as_ref().map_or(0, |p| p.bytes()),
            bytes_out: self.bytes_out,
            duration_ms: Some(self.start.elapsed().as_secs_f64() * 1000.0),
            upstream_ms: self.upstream_ms,
            tls: self.conn.tls_version,
            http: http_version(self.version),
            aborted,
            error,
        }
        .render(log.format)
    }
}

impl Drop for RequestContext {
    fn drop(&mut self) {
        self.write();
    }
}

fn http_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    }
}

/// The status hyper's HTTP/1.1 server answered a request it could not parse
/// with, if it did: 400 (a malformed request line or header), 414 (a URI over
/// 64 KiB), 431 (a head over the read buffer). `None` for every other
/// connection error: hyper sent nothing then (a client that hung up, a
/// header read timeout, an HTTP/2 preface on an HTTP/1.1 connection).
pub fn parser_refusal(error: &hyper::Error) -> Option<StatusCode> {
    if !error.is_parse() || error.is_parse_status() || error.is_parse_version_h2() {
        return None;
    }
    let message = error.to_string();
    if error.is_parse_too_large() {
        // hyper tells the two apart only in its message.
        return Some(if message.starts_with("URI too long") {
            StatusCode::URI_TOO_LONG
        } else {
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        });
    }
    // hyper answers nothing to its own internal parse errors.
    (!message.starts_with("internal error")).then_some(StatusCode::BAD_REQUEST)
}

/// Counts and logs a request hyper's HTTP/1.1 parser refused with `status`
/// (see [`parser_refusal`]): one request record with what is known — the
/// client, the listener, the status and why — and `null` method and path.
pub fn log_parser_refusal(
    state: &State,
    conn: &ConnInfo,
    status: StatusCode,
    error: &hyper::Error,
) {
    state.unrouted.refused(status.as_u16());
    let reason = format!("request refused by the HTTP/1.1 parser: {error}");
    if let Some(log) = &state.access_log {
        let client = conn.client.to_string();
        let record = RequestRecord {
            client: &client,
            listener: &conn.listen,
            status: Some(status.as_u16()),
            tls: conn.tls_version,
            http: "HTTP/1.1",
            error: Some(&reason),
            ..RequestRecord::default()
        };
        log.write(record.render(log.format));
    } else {
        tracing::info!(target: "ferry::access", status = status.as_u16(), client.addr = %conn.client,
            listen.addr = %conn.listen, error = %reason, "request refused");
    }
}
