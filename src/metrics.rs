//! Prometheus metrics, served on the admin listener only.
//!
//! Labels are bounded: route and upstream *names* from the config, status
//! class, error kind, close code (known codes only), never a raw path or host.
//! Per-request handles are looked up once per configuration generation
//! ([`RouteMetrics`], [`UpstreamMetrics`]), so counting costs a few atomics.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: String,
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabel {
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamError {
    upstream: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamRetry {
    upstream: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Connection {
    listener: String,
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeFailure {
    listener: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionEnd {
    route: String,
    close_code: &'static str,
    closed_by: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertLabel {
    certificate: String,
}

/// Every metric ferry exports. One per process; survives reloads.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    requests_aborted: Family<RouteLabel, Counter>,
    request_duration: Family<RouteLabel, Histogram>,
    upstream_duration: Family<UpstreamLabel, Histogram>,
    upstream_errors: Family<UpstreamError, Counter>,
    upstream_retries: Family<UpstreamRetry, Counter>,
    connections: Family<Connection, Gauge>,
    tls_handshakes: Family<ListenerLabel, Counter>,
    tls_failures: Family<HandshakeFailure, Counter>,
    proxy_protocol_rejected: Family<HandshakeFailure, Counter>,
    ws_active: Family<RouteLabel, Gauge>,
    ws_sessions: Family<SessionEnd, Counter>,
    reloads: Family<ResultLabel, Counter>,
    generation: Gauge,
    cert_expiry: Family<CertLabel, Gauge>,
    access_log_dropped: Counter,
}

/// Registers `metric` under `name` and returns it (the registry keeps a clone:
/// prometheus-client's metrics are shared handles).
fn add<M>(registry: &mut Registry, (name, help): (&str, &str), metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    registry.register(name, help, metric.clone());
    metric
}

/// A family of latency histograms, one per label set.
fn histograms<L: Clone + std::hash::Hash + Eq>() -> Family<L, Histogram> {
    Family::new_with_constructor(latency_histogram)
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Each metric's name (after the `ferry_` prefix) and help text.
const REQUESTS: (&str, &str) = (
    "requests",
    "Requests answered, by route and status class (aborted: the client left before any answer)",
);
const REQUESTS_ABORTED: (&str, &str) = (
    "requests_aborted",
    "Requests the client abandoned before the response ended, by route",
);
const REQUEST_DURATION: (&str, &str) = (
    "request_duration_seconds",
    "Time from request head to the end of the response body, by route",
);
const UPSTREAM_DURATION: (&str, &str) = (
    "upstream_request_duration_seconds",
    "Time from sending to an upstream to its response head",
);
const UPSTREAM_ERRORS: (&str, &str) = (
    "upstream_errors",
    "Failed upstream requests, by upstream and kind",
);
const UPSTREAM_RETRIES: (&str, &str) = (
    "upstream_retries",
    "Requests sent again, by upstream and reason (a reused connection found closed, or another server)",
);
const CONNECTIONS: (&str, &str) = (
    "connections_active",
    "Open client connections, by listener and protocol",
);
const TLS_HANDSHAKES: (&str, &str) = ("tls_handshakes", "Completed TLS handshakes, by listener");
const TLS_FAILURES: (&str, &str) = (
    "tls_handshake_failures",
    "Failed TLS handshakes, by listener and reason",
);
const PROXY_PROTOCOL_REJECTED: (&str, &str) = (
    "proxy_protocol_rejected",
    "Connections closed before their first request over the PROXY protocol header, by listener and reason",
);
const WS_ACTIVE: (&str, &str) = (
    "websocket_sessions_active",
    "Open WebSocket sessions, by route",
);
const WS_SESSIONS: (&str, &str) = (
    "websocket_sessions",
    "Ended WebSocket sessions, by route, close code and who closed",
);
const RELOADS: (&str, &str) = ("config_reloads", "Configuration reloads, by result");
const GENERATION: (&str, &str) = (
    "config_generation",
    "The configuration generation serving (1 at start)",
);
const CERT_EXPIRY: (&str, &str) = (
    "certificate_expiry_timestamp_seconds",
    "When each certificate expires (Unix time)",
);
const ACCESS_LOG_DROPPED: (&str, &str) = (
    "access_log_dropped_lines",
    "Access log lines dropped because the writer fell behind",
);

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("ferry");
        Metrics {
            requests: add(&mut r, REQUESTS, Family::default()),
            requests_aborted: add(&mut r, REQUESTS_ABORTED, Family::default()),
            request_duration: add(&mut r, REQUEST_DURATION, histograms()),
            upstream_duration: add(&mut r, UPSTREAM_DURATION, histograms()),
            upstream_errors: add(&mut r, UPSTREAM_ERRORS, Family::default()),
            upstream_retries: add(&mut r, UPSTREAM_RETRIES, Family::default()),
            connections: add(&mut r, CONNECTIONS, Family::default()),
            tls_handshakes: add(&mut r, TLS_HANDSHAKES, Family::default()),
            tls_failures: add(&mut r, TLS_FAILURES, Family::default()),
            proxy_protocol_rejected: add(&mut r, PROXY_PROTOCOL_REJECTED, Family::default()),
            ws_active: add(&mut r, WS_ACTIVE, Family::default()),
            ws_sessions: add(&mut r, WS_SESSIONS, Family::default()),
            reloads: add(&mut r, RELOADS, Family::default()),
            generation: add(&mut r, GENERATION, Gauge::default()),
            cert_expiry: add(&mut r, CERT_EXPIRY, Family::default()),
            access_log_dropped: add(&mut r, ACCESS_LOG_DROPPED, Counter::default()),
            registry: r,
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Handles for one route, looked up once per configuration generation.
    pub fn route(&self, route: &str) -> RouteMetrics {
        let by_class = |class| {
            self.requests.get_or_create_owned(&RouteStatus {
                route: route.to_owned(),
                status_class: class,
            })
        };
        RouteMetrics {
            by_class: [
                by_class("1xx"),
                by_class("2xx"),
                by_class("3xx"),
                by_class("4xx"),
                by_class("5xx"),
                by_class("aborted"),
            ],
            aborted: self.requests_aborted.get_or_create_owned(&RouteLabel {
                route: route.to_owned(),
            }),
            duration: self.request_duration.get_or_create_owned(&RouteLabel {
                route: route.to_owned(),
            }),
            ws_active: self.ws_active.get_or_create_owned(&RouteLabel {
                route: route.to_owned(),
            }),
        }
    }

    /// Counts a request that matched no route (404) or failed before routing (400).
    pub fn unrouted(&self) -> RouteMetrics {
        self.route("-")
    }

    pub fn upstream(&self, upstream: &str) -> UpstreamMetrics {
        UpstreamMetrics {
            name: upstream.to_owned(),
            duration: self.upstream_duration.get_or_create_owned(&UpstreamLabel {
                upstream: upstream.to_owned(),
            }),
            errors: self.upstream_errors.clone(),
            retries: self.upstream_retries.clone(),
        }
    }

    /// An open-connection gauge for `listener` and `protocol` (`h1`, `h2`, `redirect`).
    pub fn connection(&self, listener: &str, protocol: &'static str) -> Gauge {
        self.connections.get_or_create_owned(&Connection {
            listener: listener.to_owned(),
            protocol,
        })
    }

    pub fn tls_handshake(&self, listener: &str) {
        self.tls_handshakes
            .get_or_create(&ListenerLabel {
                listener: listener.to_owned(),
            })
            .inc();
    }

    pub fn tls_failure(&self, listener: &str, reason: &'static str) {
        self.tls_failures
            .get_or_create(&HandshakeFailure {
                listener: listener.to_owned(),
                reason,
            })
            .inc();
    }

    /// A connection to a `proxy_protocol` listener closed over its header:
    /// `untrusted` (peer not in `trusted_proxies`), `timeout`, `closed`,
    /// `io`, `not_proxy`, `too_large`, `malformed`.
    pub fn proxy_protocol_rejected(&self, listener: &str, reason: &'static str) {
        self.proxy_protocol_rejected
            .get_or_create(&HandshakeFailure {
                listener: listener.to_owned(),
                reason,
            })
            .inc();
    }

    pub fn websocket_ended(&self, route: &str, code: u16, closed_by: &'static str) {
        let close_code = close_code_label(code);
        self.ws_sessions
            .get_or_create(&SessionEnd {
                route: route.to_owned(),
                close_code,
                closed_by,
            })
            .inc();
    }

    /// The generation serving (without counting a reload: for start-up).
    pub fn generation(&self, generation: u64) {
        self.generation.set(generation as i64);
    }

    pub fn reload(&self, ok: bool, generation: u64) {
        self.reloads
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "error" },
            })
            .inc();
        self.generation.set(generation as i64);
    }

    /// Replaces the certificate expiry gauges with `certs` (path, expiry as Unix time).
    pub fn certificates(&self, certs: impl IntoIterator<Item = (String, i64)>) {
        self.cert_expiry.clear();
        for (certificate, expiry) in certs {
            self.cert_expiry
                .get_or_create(&CertLabel { certificate })
                .set(expiry);
        }
    }

    pub fn access_log_dropped(&self) {
        self.access_log_dropped.inc();
    }
}

/// Known close codes keep their number; anything else is `other` (bounded labels).
fn close_code_label(code: u16) -> &'static str {
    match code {
        1000 => "1000",
        1001 => "1001",
        1002 => "1002",
        1003 => "1003",
        1005 => "1005",
        1006 => "1006",
        1007 => "1007",
        1008 => "1008",
        1009 => "1009",
        1010 => "1010",
        1011 => "1011",
        1012 => "1012",
        1013 => "1013",
        1014 => "1014",
        3000..=4999 => "application",
        _ => "other",
    }
}

/// One route's counters.
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    /// `1xx` … `5xx`, then `aborted`.
    by_class: [Counter; 6],
    aborted: Counter,
    duration: Histogram,
    pub ws_active: Gauge,
}

impl RouteMetrics {
    /// A request that ended after `seconds`: `status` is what the client was
    /// sent (`None` when it left before any answer, counted as
    /// `status_class="aborted"`); `aborted` when it left before the end of
    /// the response.
    pub fn request(&self, status: Option<u16>, aborted: bool, seconds: f64) {
        self.count(status);
        if aborted {
            self.aborted.inc();
        }
        self.duration.observe(seconds);
    }

    /// A request refused before ferry saw it whole (by the HTTP/1.1 parser):
    /// counted, but with no duration to observe.
    pub fn refused(&self, status: u16) {
        self.count(Some(status));
    }

    fn count(&self, status: Option<u16>) {
        let class = match status {
            Some(status) => usize::from(status / 100).clamp(1, 5) - 1,
            None => 5,
        };
        self.by_class[class].inc();
    }
}

/// One upstream's latency histogram, error and retry counters.
#[derive(Debug, Clone)]
pub struct UpstreamMetrics {
    pub name: String,
    duration: Histogram,
    errors: Family<UpstreamError, Counter>,
    retries: Family<UpstreamRetry, Counter>,
}

impl UpstreamMetrics {
    pub fn response(&self, seconds: f64) {
        self.duration.observe(seconds);
    }

    pub fn error(&self, kind: &'static str) {
        self.errors
            .get_or_create(&UpstreamError {
                upstream: self.name.clone(),
                kind,
            })
            .inc();
    }

    /// A request sent again; `reason` is one of a few fixed labels.
    pub fn retry(&self, reason: &'static str) {
        self.retries
            .get_or_create(&UpstreamRetry {
                upstream: self.name.clone(),
                reason,
            })
            .inc();
    }
}

/// Keeps a gauge up for as long as it lives.
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    pub fn new(gauge: Gauge) -> GaugeGuard {
        gauge.inc();
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Shared by every part of the process.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_bounded_labels() {
        let m = Metrics::new();
        let api = m.route("api");
        api.request(Some(200), false, 0.01);
        api.request(Some(502), false, 0.2);
        api.request(None, true, 0.3);
        api.request(Some(200), true, 0.3);
        m.websocket_ended("ws", 4321, "client");
        m.websocket_ended("ws", 1011, "upstream");
        m.reload(true, 2);
        let text = m.encode();
        assert!(
            text.contains("ferry_requests_total{route=\"api\",status_class=\"2xx\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("ferry_requests_total{route=\"api\",status_class=\"5xx\"} 1"),
            "{text}"
        );
        assert!(text.contains("close_code=\"application\""), "{text}");
        assert!(
            text.contains("ferry_requests_total{route=\"api\",status_class=\"aborted\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ferry_requests_aborted_total{route=\"api\"} 2"),
            "{text}"
        );
        assert!(text.contains("ferry_config_generation 2"), "{text}");
    }
}
