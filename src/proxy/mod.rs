//! The proxy: what happens to a request between the client and the upstream.
//!
//! - [`http`]: the request path, in named phases.
//! - [`headers`]: hop-by-hop stripping and `X-Forwarded-*` (pure).
//! - [`error`]: the one mapping from failures to statuses.
//! - [`body`]: the response body type, with the between-chunks timeout.
//! - [`websocket`]: WebSocket handshakes (HTTP/1.1 and HTTP/2) and the relay.

pub mod body;
pub mod error;
pub mod headers;
pub mod http;
pub mod log;
pub mod websocket;

use std::sync::Arc;

use crate::access_log::AccessLog;
use crate::config::{Config, RouteConfig};
use crate::metrics::{Metrics, RouteMetrics};
use crate::upstream::Upstream;

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

    /// The route for `host` and `path`, first match in file order.
    pub fn route(&self, host: &str, path: &str) -> Option<(usize, &RouteConfig)> {
        self.config.route(host, path)
    }
}
