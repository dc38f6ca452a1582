//! Upstreams: a pool of keep-alive HTTP/1.1 connections per `[upstream.NAME]`
//! ([`pool`]) and server selection.
//!
//! Names are resolved when a connection is opened (never at start-up), so
//! ferry starts while docker-compose is still starting the backend, and a
//! restarted container's new address is picked up by the next connection.

pub mod body;
pub mod pool;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, Uri};
use hyper::body::Incoming;

use crate::config::UpstreamConfig;
use crate::metrics::{Metrics, UpstreamMetrics};
pub use body::RequestBody;
pub use pool::{Pool, SendError};

/// One `[upstream.NAME]` ready to take requests.
#[derive(Debug)]
pub struct Upstream {
    pub name: Arc<str>,
    servers: Vec<Authority>,
    /// Round-robin cursor.
    next: AtomicUsize,
    /// Keep-alive connections to the servers.
    pool: Arc<Pool>,
    pub metrics: UpstreamMetrics,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig, metrics: &Metrics) -> Upstream {
        Upstream {
            name: config.name.clone(),
            servers: config.servers.clone(),
            next: AtomicUsize::new(0),
            metrics: metrics.upstream(&config.name),
            pool: Pool::new(
                config.connect_timeout,
                config.pool_idle_timeout,
                config.pool_max_idle,
            ),
            connect_timeout: config.connect_timeout,
            read_timeout: config.read_timeout,
        }
    }

    /// The next server, round robin.
    pub fn pick(&self) -> &Authority {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.servers[i % self.servers.len()]
    }

    pub fn servers(&self) -> &[Authority] {
        &self.servers
    }

    /// The request target for an HTTP/1.1 upstream: origin-form `/path?query`.
    pub fn origin_form(path_and_query: Option<&PathAndQuery>) -> Uri {
        let pq = path_and_query
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        Uri::from(pq)
    }

    /// Sends `req` (origin-form URI) to `server`. The connect timeout applies to
    /// a new connection; `read_timeout` to the response head after that.
    pub async fn send(
        &self,
        server: &Authority,
        req: Request<RequestBody>,
        read_timeout: Duration,
    ) -> Result<(Response<Incoming>, SocketAddr), SendError> {
        let started = std::time::Instant::now();
        let result = self.pool.send(server, req, read_timeout).await;
        match &result {
            Ok(_) => self.metrics.response(started.elapsed().as_secs_f64()),
            Err(e) => self.metrics.error(e.kind()),
        }
        result
    }
}
