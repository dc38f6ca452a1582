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
}

impl RequestLog {
    pub fn new(client: SocketAddr, method: Method, version: Version, uri: Uri) -> RequestLog {
        RequestLog {
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
}
