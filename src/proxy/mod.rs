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

use crate::config::{Config, RouteConfig};
use crate::router::{Matcher, RouteTable};
use crate::upstream::Upstream;

/// Everything a request needs, built once from a [`Config`]. A request keeps
/// the `Arc<State>` it started with for its whole life.
#[derive(Debug)]
pub struct State {
    pub config: Arc<Config>,
    pub routes: RouteTable,
    /// Indexed like `config.upstreams`.
    pub upstreams: Vec<Upstream>,
}

impl State {
    pub fn new(config: Arc<Config>) -> State {
        let routes = RouteTable::new(
            config
                .routes
                .iter()
                .map(|r| Matcher {
                    hosts: r.hosts.clone(),
                    path: r.path.clone(),
                })
                .collect(),
        );
        let upstreams = config.upstreams.iter().map(Upstream::new).collect();
        State {
            config,
            routes,
            upstreams,
        }
    }

    /// The route for `host` and `path`, first match in file order.
    pub fn route(&self, host: &str, path: &str) -> Option<&RouteConfig> {
        self.routes.find(host, path).map(|i| &self.config.routes[i])
    }
}
