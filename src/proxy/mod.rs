//! The proxy: what happens to a request between the client and the upstream.
//!
//! - [`decision`]: what to do with a request — route, checks, the upstream
//!   request head — decided once, without I/O (`ferry route` prints it).
//! - [`http`]: the request path that executes a decision, in named phases.
//! - [`websocket`]: executing a WebSocket handshake (HTTP/1.1 and HTTP/2) and
//!   the frame-aware relay that carries the session.
//! - [`headers`]: hop-by-hop stripping and `X-Forwarded-*` (pure).
//! - [`error`]: the one mapping from failures to statuses.
//! - [`response`]: upstream responses, redirects and WebSocket acceptances.
//! - [`body`]: the response body type, with the between-chunks timeout.
//! - [`compress`]: the compression policy and the body that compresses as
//!   it streams.
//! - [`context`]: the per-request context, and its log line.
//!
//! Inside the module the graph points one way: `http → websocket →
//! {decision, response, context} → body`, `http → compress → body`, `decision → {headers, error}`,
//! `error → body`.

pub mod body;
pub mod compress;
pub mod context;
pub mod decision;
pub mod error;
pub mod headers;
pub mod http;
pub mod response;
pub mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;

use ::http::HeaderValue;

use crate::access_log::AccessLog;
use crate::config::{Config, ListenerKind};
use crate::drain::{Streams, Watch};
use crate::metrics::{Metrics, RouteMetrics};
use crate::tls::ClientAuthScope;
use crate::upstream::{ProxySource, Upstream};
use decision::Inbound;

/// Everything a request needs, built once from a [`Config`]. A request keeps
/// the `Arc<State>` it started with for its whole life; a reload builds a new
/// one aside and swaps it into the [`LiveState`].
#[derive(Debug)]
pub struct State {
    pub config: Arc<Config>,
    /// Indexed like `config.upstreams`.
    pub upstreams: Vec<Arc<Upstream>>,
    /// Counts reloads: 1 for the configuration ferry started with.
    pub generation: u64,
    pub metrics: Arc<Metrics>,
    /// Indexed like `config.routes`.
    pub route_metrics: Vec<RouteMetrics>,
    /// For requests that matched no route.
    pub unrouted: RouteMetrics,
    /// `server.access_log`, opened once at start and kept across reloads.
    pub access_log: Option<Arc<AccessLog>>,
}

/// The current [`State`], swapped whole on reload.
pub type LiveState = Arc<arc_swap::ArcSwap<State>>;

impl State {
    /// Builds the state for `config`. Upstreams whose settings did not change
    /// keep their pools from `previous`, so a reload drops no warm connections.
    pub fn new(
        config: Arc<Config>,
        previous: Option<&State>,
        generation: u64,
        metrics: Arc<Metrics>,
    ) -> State {
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| {
                previous
                    .and_then(|p| {
                        p.config
                            .upstreams
                            .iter()
                            .position(|old| old == u)
                            .map(|i| p.upstreams[i].clone())
                    })
                    .unwrap_or_else(|| {
                        let upstream = Arc::new(Upstream::new(u, &metrics));
                        upstream.start_health_checks();
                        upstream
                    })
            })
            .collect();
        let route_metrics = config
            .routes
            .iter()
            .map(|r| metrics.route(&r.name))
            .collect();
        let unrouted = metrics.unrouted();
        let access_log = previous.and_then(|p| p.access_log.clone());
        State {
            config,
            upstreams,
            generation,
            metrics,
            route_metrics,
            unrouted,
            access_log,
        }
    }
}

/// Facts about the client connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client: the TCP peer, or on a `proxy_protocol` listener the source
    /// its (trusted) PROXY header named. Everything that asks "who is the
    /// client" reads this: `X-Forwarded-For`, `X-Real-IP`, whether to believe
    /// the request's own `X-Forwarded-*` (only if this address is itself in
    /// `trusted_proxies`), the access log.
    pub client: SocketAddr,
    /// Its address as `X-Forwarded-For` carries it, formatted once per connection.
    pub client_ip: HeaderValue,
    /// The address the client connected to: the listener's, or the PROXY
    /// header's destination. Sent on with `send_proxy_protocol`.
    pub local: SocketAddr,
    /// What the listener does (decides `X-Forwarded-Proto`, or the redirect to https).
    pub listener: ListenerKind,
    /// The listener's bound address, as logs and metrics name it.
    pub listen: Arc<str>,
    /// Where a `redirect_https` listener sends clients (the first TLS listener's port).
    pub https_port: Option<u16>,
    /// WebSocket tunnels outlive their request: they keep the drain waiting with this.
    pub drain: Watch,
    /// `TLSv1.3` or `TLSv1.2`; `None` for cleartext.
    pub tls_version: Option<&'static str>,
    /// The client-certificate facts of a TLS connection, while any
    /// certificate in use has client authentication.
    pub client_auth: Option<ClientAuthScope>,
    /// Requests and tunnels open on this connection, for the HTTP/2 idle
    /// timeout (`None` on HTTP/1.1, whose idle limit is hyper's).
    pub streams: Option<Streams>,
}

impl ConnInfo {
    /// For an upstream with `send_proxy_protocol`, says in the request's
    /// extensions which client the upstream connection must be for.
    pub fn attach_source(&self, upstream: &Upstream, head: &mut ::http::request::Parts) {
        if upstream.send_proxy_protocol.is_some() {
            head.extensions.insert(ProxySource {
                client: self.client,
                local: self.local,
            });
        }
    }

    /// What the request [`decision`] needs to know about the connection.
    pub fn inbound(&self) -> Inbound<'_> {
        Inbound {
            peer: self.client.ip(),
            peer_value: &self.client_ip,
            listener: self.listener,
            https_port: self.https_port,
            client_auth: self.client_auth.as_ref(),
        }
    }
}
