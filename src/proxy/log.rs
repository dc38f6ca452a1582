//! One log line per request, written when its response body is done.
//!
//! The record holds cheap clones (`Uri`, `Authority` and names are
//! reference-counted), so it costs one small allocation per request whether
//! or not the line is finally written.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::uri::Authority;
use http::{Method, StatusCode, Uri, Version};

use super::State;
use crate::access_log::{AccessLog, Value, now_rfc3339, render};
use crate::upstream::body::Progress;

/// What the request log line says. Filled in along the request path.
#[derive(Debug)]
pub struct RequestLog {
    pub start: Instant,
    pub client: SocketAddr,
    pub method: Method,
    pub version: Version,
    /// `None` when the request had no usable Host.
    pub host: Option<Authority>,
    /// Only the path is logged: query strings often carry tokens.
    pub uri: Uri,
    pub route: Option<Arc<str>>,
    pub upstream: Option<Arc<str>>,
    /// The address that answered (after DNS), else the configured server.
    pub upstream_addr: Option<SocketAddr>,
    pub status: StatusCode,
    /// Response body bytes sent to the client.
    pub bytes_out: u64,
    /// Why the request failed, when it did (the cause, for the operator).
    pub error: Option<String>,
    /// Whether the failure was the upstream's or ours (logged as a warning).
    pub error_is_ours: bool,
    /// Set when the response body failed part-way (upstream reset, read timeout).
    pub body_error: Option<String>,
    /// The snapshot the request used: its metrics handles and access log.
    pub state: Arc<State>,
    pub route_index: Option<usize>,
    /// The request body's progress (bytes sent upstream).
    pub request_body: Option<Arc<Progress>>,
    /// Time from sending upstream to the response head.
    pub upstream_ms: Option<f64>,
    /// `TLSv1.3`, `TLSv1.2`, or `None` for cleartext.
    pub tls: Option<&'static str>,
    /// The request's weight on its upstream server, released with the record.
    pub load: Option<crate::upstream::Load>,
    /// Keeps the connection from counting as idle until the response is done.
    pub stream: Option<crate::drain::StreamGuard>,
}

impl RequestLog {
    pub fn new(
        state: Arc<State>,
        client: SocketAddr,
        method: Method,
        version: Version,
        uri: Uri,
    ) -> RequestLog {
        RequestLog {
            state,
            route_index: None,
            request_body: None,
            upstream_ms: None,
            tls: None,
            load: None,
            stream: None,
            start: Instant::now(),
            client,
            method,
            version,
            host: None,
            uri,
            route: None,
            upstream: None,
            upstream_addr: None,
            status: StatusCode::OK,
            bytes_out: 0,
            error: None,
            error_is_ours: false,
            body_error: None,
        }
    }

    /// Writes the line (target `ferry::access`): info for served requests and
    /// client errors, warn when the upstream or ferry failed.
    pub fn write(self) {
        let seconds = self.start.elapsed().as_secs_f64();
        let metrics = self
            .route_index
            .map_or(&self.state.unrouted, |i| &self.state.route_metrics[i]);
        metrics.request(self.status.as_u16(), seconds);
        if let Some(log) = &self.state.access_log {
            log.write(self.render(log));
            // The access log has the line; the error log still gets failures.
            if self.body_error.is_none() && !(self.error.is_some() && self.error_is_ours) {
                return;
            }
        }

        let host = self.host.as_ref().map_or("-", Authority::as_str);
        let path = self.uri.path();
        let route = self.route.as_deref().unwrap_or("-");
        let upstream = self.upstream.as_deref().unwrap_or("-");
        let upstream_addr = self.upstream_addr.map(tracing::field::display);
        let duration_ms = self.start.elapsed().as_secs_f64() * 1000.0;
        let duration_ms = format_args!("{duration_ms:.1}");
        let status = self.status.as_u16();
        let failure = match (&self.body_error, &self.error) {
            (Some(e), _) => Some((true, "response aborted", e.as_str())),
            (None, Some(e)) => Some((self.error_is_ours, "request failed", e.as_str())),
            (None, None) => None,
        };
        match failure {
            None => {
                tracing::info!(target: "ferry::access", method = %self.method, client.addr = %self.client,
                version = ?self.version, host = %host, path = %path, route = %route, upstream = %upstream, upstream.addr = upstream_addr, status,
                bytes = self.bytes_out, duration_ms, "request")
            }
            Some((true, outcome, error)) => {
                tracing::warn!(target: "ferry::access", method = %self.method,
                client.addr = %self.client, version = ?self.version, host = %host, path = %path, route = %route, upstream = %upstream,
                upstream.addr = upstream_addr, status, bytes = self.bytes_out, duration_ms, error, "{outcome}")
            }
            Some((false, outcome, error)) => {
                tracing::info!(target: "ferry::access", method = %self.method,
                client.addr = %self.client, version = ?self.version, host = %host, path = %path, route = %route, upstream = %upstream,
                upstream.addr = upstream_addr, status, bytes = self.bytes_out, duration_ms, error, "{outcome}")
            }
        }
    }

    /// The access log line (see docs/operations.md for the fields).
    fn render(&self, log: &AccessLog) -> Vec<u8> {
        let time = now_rfc3339();
        let client = self.client.to_string();
        let method = self.method.as_str();
        let upstream_addr = self.upstream_addr.map(|a| a.to_string());
        let http = match self.version {
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        };
        let error = self.body_error.as_deref().or(self.error.as_deref());
        render(
            log.format,
            &[
                ("time", Some(Value::Str(&time))),
                ("type", Some(Value::Str("request"))),
                ("client", Some(Value::Str(&client))),
                ("method", Some(Value::Str(method))),
                ("host", self.host.as_ref().map(|h| Value::Str(h.as_str()))),
                ("path", Some(Value::Str(self.uri.path()))),
                (
                    "query",
                    self.uri.query().filter(|_| log.query).map(Value::Str),
                ),
                ("route", self.route.as_deref().map(Value::Str)),
                ("upstream", self.upstream.as_deref().map(Value::Str)),
                ("upstream_addr", upstream_addr.as_deref().map(Value::Str)),
                ("status", Some(Value::Num(u64::from(self.status.as_u16())))),
                (
                    "bytes_in",
                    Some(Value::Num(
                        self.request_body.as_ref().map_or(0, |p| p.bytes()),
                    )),
                ),
                ("bytes_out", Some(Value::Num(self.bytes_out))),
                (
                    "duration_ms",
                    Some(Value::Float(self.start.elapsed().as_secs_f64() * 1000.0)),
                ),
                ("upstream_ms", self.upstream_ms.map(Value::Float)),
                ("tls", self.tls.map(Value::Str)),
                ("http", Some(Value::Str(http))),
                ("error", error.map(Value::Str)),
            ],
        )
    }
}
