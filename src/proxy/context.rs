//! The per-request context: what the request path learns about one request,
//! built once when it arrives and filled in phase by phase. The response body
//! carries it, and when the body is done it writes the request's log line and
//! metrics ([`RequestContext::write`]).
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
use crate::access_log::{AccessLog, Value, now_rfc3339, render};
use crate::config::RouteConfig;
use crate::upstream::body::Progress;

/// One request's context, from its arrival to the end of its response body.
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
    pub status: StatusCode,
    /// Response body bytes sent to the client.
    pub bytes_out: u64,
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
            status: StatusCode::OK,
            bytes_out: 0,
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

    /// Counts the request in the metrics and writes its line (target
    /// `ferry::access`): info for served requests and client errors, warn
    /// when the upstream failed or the response was cut off.
    pub fn write(self) {
        let seconds = self.start.elapsed().as_secs_f64();
        let metrics = self
            .route
            .map_or(&self.state.unrouted, |i| &self.state.route_metrics[i]);
        metrics.request(self.status.as_u16(), seconds);
        if let Some(log) = &self.state.access_log {
            log.write(self.render(log));
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
        let duration_ms = self.start.elapsed().as_secs_f64() * 1000.0;
        let duration_ms = format_args!("{duration_ms:.1}");
        let status = self.status.as_u16();
        let failure = match (&self.body_error, &self.failure) {
            (Some(e), _) => Some((true, "response aborted", e.as_str())),
            (None, Some((side, e))) => {
                Some((*side == Side::Upstream, "request failed", e.as_str()))
            }
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
                tracing::info!(target: "ferry::access", method = %self.method,
                client.addr = %client, version = ?self.version, host = %host, path = %path, route = %route, upstream = %upstream,
                upstream.addr = upstream_addr, status, bytes = self.bytes_out, duration_ms, error, "{outcome}")
            }
        }
    }

    /// The access log line (see docs/operations.md for the fields).
    fn render(&self, log: &AccessLog) -> Vec<u8> {
        let time = now_rfc3339();
        let client = self.conn.client.to_string();
        let method = self.method.as_str();
        let upstream_addr = self.upstream_addr.map(|a| a.to_string());
        let http = match self.version {
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        };
        let error = self
            .body_error
            .as_deref()
            .or(self.failure.as_ref().map(|(_, e)| e.as_str()));
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
                ("route", self.route_name().map(Value::Str)),
                ("upstream", self.upstream_name().map(Value::Str)),
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
                ("tls", self.conn.tls_version.map(Value::Str)),
                ("http", Some(Value::Str(http))),
                ("error", error.map(Value::Str)),
            ],
        )
    }
}
