//! The one log line of a WebSocket session, written when it ends: who,
//! which origin and route, how much went each way, and who closed it how.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::relay::{ClosedBy, Summary};
use crate::access_log::{AccessLog, WebSocketRecord};
use crate::proxy::decision::Handshake;

/// Who a session was, for its log line.
pub(super) struct Session {
    pub(super) route: Arc<str>,
    pub(super) upstream: Arc<str>,
    pub(super) upstream_addr: SocketAddr,
    pub(super) client: SocketAddr,
    /// The listener's bound address.
    pub(super) listener: Arc<str>,
    pub(super) origin: Option<String>,
    pub(super) kind: Handshake,
    pub(super) path: String,
    pub(super) host: String,
    pub(super) access_log: Option<Arc<AccessLog>>,
}

/// One line per session, at its end (target `ferry::websocket`).
pub(super) fn log_session(s: &Session, sum: &Summary, duration: Duration) {
    let abnormal = sum.code == 1006 || sum.code == 1011;
    if let Some(log) = &s.access_log {
        let (client, upstream_addr) = (s.client.to_string(), s.upstream_addr.to_string());
        let line = WebSocketRecord {
            client: &client,
            listener: &s.listener,
            host: (!s.host.is_empty()).then_some(s.host.as_str()),
            path: &s.path,
            route: &s.route,
            upstream: &s.upstream,
            upstream_addr: &upstream_addr,
            origin: s.origin.as_deref(),
            http: if s.kind == Handshake::Http2 {
                "HTTP/2.0"
            } else {
                "HTTP/1.1"
            },
            duration_ms: duration.as_secs_f64() * 1000.0,
            bytes_in: sum.bytes_up,
            bytes_out: sum.bytes_down,
            messages_in: sum.messages_up,
            messages_out: sum.messages_down,
            close_code: sum.code,
            closed_by: sum.closed_by.as_str(),
            close_reason: &sum.reason,
        }
        .render(log.format);
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
