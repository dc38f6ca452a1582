//! WebSockets: on every upstream route, with no setting needed. The
//! [`decision`](crate::proxy::decision) has already checked the origin and
//! built the upstream's HTTP/1.1 upgrade request; this module executes it:
//!
//! - HTTP/1.1 `Upgrade: websocket` is forwarded as an upgrade; only the
//!   upstream's 101 opens the tunnel, any other answer goes back to the
//!   client as it is (a 403 from the backend, a redirect...).
//! - HTTP/2 extended CONNECT (RFC 8441) is bridged to an HTTP/1.1 upgrade:
//!   ferry makes the `Sec-WebSocket-Key`, checks the upstream's
//!   `Sec-WebSocket-Accept`, and answers the client 200.
//! - The tunnel task exists before the client hears 101 (or 200); [`relay`]
//!   carries the session and [`session`] writes its one log line.

pub mod frame;
pub mod relay;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::header::HeaderValue;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::State;
use super::body::ProxyBody;
use super::context::RequestContext;
use super::decision::{Forward, Handshake, WebSocket};
use super::error::{ProxyError, UpstreamFailure};
use super::response;
use crate::drain::{StreamGuard, Watch};
use crate::metrics::{GaugeGuard, Metrics};
use crate::upstream::{Load, RequestBody};
use relay::RelayConfig;
use session::{Session, log_session};

/// How long ferry waits for both peers to finish a close it started.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The magic GUID of RFC 6455 §1.3.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Logs a handshake the origin check refused (the upstream was not contacted).
pub(super) fn log_refusal(ctx: &RequestContext, ws: &WebSocket, e: &ProxyError) {
    let route = ctx.route_config().map_or("-", |r| &*r.name);
    tracing::warn!(route = %route, client.addr = %ctx.conn.client, origin = ws.origin.origin().unwrap_or("-"),
        "WebSocket handshake refused: {e}");
}

/// Sends the upgrade request (`head`, as the decision rewrote it) and, once
/// the upstream accepts, starts the relay before the client's 101 (or 200)
/// is returned. `client_upgrade` is hyper's handle on the client's side of
/// the tunnel.
pub async fn proxy(
    state: &State,
    ctx: &mut RequestContext,
    forward: Forward,
    mut head: Parts,
    ws: WebSocket,
    client_upgrade: Option<OnUpgrade>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (route, upstream) = (
        &state.config.routes[forward.route],
        &state.upstreams[forward.upstream],
    );
    let key = (ws.handshake == Handshake::Http2).then(new_key);
    if let Some(key) = &key {
        let key = HeaderValue::from_str(key).expect("base64 is a valid header value");
        head.headers.insert("sec-websocket-key", key);
    }
    ctx.conn.attach_source(upstream, &mut head);
    let body = RequestBody::empty();
    let progress = body.progress();
    let sent = upstream
        .send(Request::from_parts(head, body), forward.read_timeout)
        .await
        .map_err(|f| ProxyError::from_send(&upstream.name, f, &progress, None))?;
    let (mut res, addr, load) = (sent.response, sent.addr, sent.load);
    ctx.upstream_addr = Some(addr);

    // Any answer but 101 goes back as it is.
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(response::from_upstream(res, route, forward.read_timeout));
    }
    if let Some(key) = &key {
        let accept = res
            .headers()
            .get("sec-websocket-accept")
            .map(HeaderValue::as_bytes);
        if accept != Some(accept_key(key.as_bytes()).as_bytes()) {
            return Err(ProxyError::UpstreamFailed {
                upstream: upstream.name.clone(),
                server: sent.server,
                source: UpstreamFailure::WrongAccept,
            });
        }
    }
    let upstream_upgrade = hyper::upgrade::on(&mut res);
    let accepted = response::websocket_accepted(&res, route, ws.handshake);

    // The tunnel task exists before the client hears 101/200.
    let routed = (forward.route, forward.upstream);
    let tunnel = Tunnel::new(state, ctx, routed, &ws, addr, load);
    // hyper always offers the client's side for a request it saw as an
    // upgrade; without it, the upgrade below fails and says so.
    let client_upgrade = client_upgrade.unwrap_or_else(|| hyper::upgrade::on(Request::new(())));
    tokio::spawn(tunnel.run(client_upgrade, upstream_upgrade));
    Ok(accepted)
}

/// Everything a WebSocket session needs once the handshake is done.
struct Tunnel {
    session: Session,
    config: RelayConfig,
    /// Keeps a shutdown waiting for the session, and tells it to close.
    drain: Watch,
    /// An open tunnel keeps its HTTP/2 connection from counting as idle.
    stream: Option<StreamGuard>,
    /// The session counts as load on its server (least_requests) while it lasts.
    load: Load,
    metrics: Arc<Metrics>,
    /// Counts the session as open on its route.
    active: GaugeGuard,
}

impl Tunnel {
    fn new(
        state: &State,
        ctx: &RequestContext,
        (route_index, upstream): (usize, usize),
        ws: &WebSocket,
        upstream_addr: SocketAddr,
        load: Load,
    ) -> Tunnel {
        let route = &state.config.routes[route_index];
        let upstream = &state.upstreams[upstream];
        Tunnel {
            session: Session {
                route: route.name.clone(),
                upstream: upstream.name.clone(),
                upstream_addr,
                client: ctx.conn.client,
                listener: ctx.conn.listen.clone(),
                origin: ws.origin.origin().map(str::to_owned),
                kind: ws.handshake,
                path: ctx.uri.path().to_owned(),
                host: ctx
                    .host
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                access_log: state.access_log.clone(),
            },
            config: RelayConfig {
                idle_timeout: route.websocket.idle_timeout,
                max_lifetime: route.websocket.max_lifetime,
                ping_interval: route.websocket.ping_interval,
                close_wait: CLOSE_WAIT.min(state.config.server.shutdown_grace),
            },
            drain: ctx.conn.drain.clone(),
            stream: ctx.conn.streams.as_ref().map(|s| s.open()),
            load,
            metrics: state.metrics.clone(),
            active: GaugeGuard::new(state.route_metrics[route_index].ws_active.clone()),
        }
    }

    /// Waits for both upgrades, relays until the session ends, logs it.
    async fn run(self, client: OnUpgrade, upstream: OnUpgrade) {
        let Tunnel {
            session,
            config,
            drain,
            stream,
            load,
            metrics,
            active,
        } = self;
        let _held = (stream, load, active);
        let started = Instant::now();
        let (client, upstream) = match tokio::try_join!(client, upstream) {
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
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc6455_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(BASE64.decode(new_key()).unwrap().len(), 16);
        assert_ne!(new_key(), new_key());
    }
}
