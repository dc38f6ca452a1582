//! Upstreams: a pooled HTTP/1.1 client per `[upstream.NAME]` and server selection.
//!
//! Names are resolved when a connection is opened (never at start-up), so
//! ferry starts while docker-compose is still starting the backend, and a
//! restarted container's new address is picked up by the next connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::UpstreamConfig;

/// One `[upstream.NAME]` ready to take requests.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    servers: Vec<Authority>,
    /// Round-robin cursor.
    next: AtomicUsize,
    /// Keep-alive pool; one per upstream so each has its own connect timeout.
    client: Client<HttpConnector, Incoming>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> Upstream {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_keepalive(Some(Duration::from_secs(60)));
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle)
            // The Host header is the client's; never let the client replace it.
            .set_host(false)
            .build(connector);
        Upstream {
            name: config.name.clone(),
            servers: config.servers.clone(),
            next: AtomicUsize::new(0),
            client,
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

    /// The URI to send to `server`: `http://server/path?query`.
    pub fn uri(server: &Authority, path_and_query: Option<&PathAndQuery>) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(server.clone());
        parts.path_and_query = Some(
            path_and_query
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        Uri::from_parts(parts).expect("scheme, authority and path make a valid URI")
    }

    /// Sends a request whose URI is already absolute (see [`Upstream::uri`]).
    pub async fn send(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        self.client.request(req).await
    }
}
