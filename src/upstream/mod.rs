//! Upstreams: server selection ([`Upstream::send`]: balancing, passive
//! health, retries), keep-alive connections ([`pool`]) and name resolution ([`dns`]).
//!
//! Names are resolved when a connection is opened (never at start-up, cached
//! for `resolve_every`), so ferry starts while docker-compose is still starting
//! the backend, and a restarted container's new address is picked up.

pub mod body;
mod counted;
pub mod dns;
pub mod pool;
pub mod proxy_protocol;
pub mod retry;

use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;

use crate::config::{Balance, HealthConfig, ProxyProtocolVersion, UpstreamConfig};
use crate::metrics::{Metrics, UpstreamMetrics};
pub use body::RequestBody;
pub use pool::{Pool, SendError};
pub use proxy_protocol::ProxySource;

/// One server of an upstream, with what balancing and health need.
#[derive(Debug)]
struct Server {
    authority: Authority,
    /// Requests (and WebSocket sessions) in flight.
    in_flight: AtomicUsize,
    /// Consecutive failures.
    fails: AtomicU32,
    /// Out of rotation until then (passive health).
    down_until: Mutex<Option<Instant>>,
    /// Out of rotation until health checks pass again (active health).
    checked_down: AtomicBool,
    /// Consecutive passing / failing health checks.
    passes: AtomicU32,
    failures: AtomicU32,
}

impl Server {
    fn available(&self, now: Instant) -> bool {
        !self.checked_down.load(Ordering::Relaxed)
            && self
                .down_until
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_none_or(|t| now >= t)
    }
}

/// Counts a request (or a WebSocket session) against its server until dropped.
#[derive(Debug)]
pub struct Load(Arc<Upstream>, usize);

impl Drop for Load {
    fn drop(&mut self) {
        self.0.servers[self.1]
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response from one of the servers.
pub struct Sent {
    pub response: Response<Incoming>,
    /// The address that answered (after DNS).
    pub addr: SocketAddr,
    pub server: Authority,
    /// Keep this while the response (or the tunnel) lives.
    pub load: Load,
}

/// The last failure, after retries.
#[derive(Debug)]
pub struct Failed {
    pub error: SendError,
    pub server: Authority,
}

/// One `[upstream.NAME]` ready to take requests.
#[derive(Debug)]
pub struct Upstream {
    pub name: Arc<str>,
    servers: Vec<Server>,
    /// Server indices repeated by weight: the round-robin order.
    rotation: Vec<usize>,
    cursor: AtomicUsize,
    balance: Balance,
    retries: u32,
    max_fails: u32,
    fail_timeout: Duration,
    health: Option<HealthConfig>,
    /// Keep-alive connections to the servers.
    pool: Arc<Pool>,
    pub metrics: UpstreamMetrics,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// `send_proxy_protocol`: requests must carry a [`ProxySource`] extension.
    pub send_proxy_protocol: Option<ProxyProtocolVersion>,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig, metrics: &Metrics) -> Upstream {
        let servers = config
            .servers
            .iter()
            .map(|a| Server {
                authority: a.clone(),
                in_flight: AtomicUsize::new(0),
                fails: AtomicU32::new(0),
                down_until: Mutex::new(None),
                checked_down: AtomicBool::new(false),
                passes: AtomicU32::new(0),
                failures: AtomicU32::new(0),
            })
            .collect();
        let rotation = config
            .weights
            .iter()
            .enumerate()
            .flat_map(|(i, w)| std::iter::repeat_n(i, *w as usize))
            .collect::<Vec<_>>();
        let rotation = if rotation.is_empty() {
            (0..config.servers.len()).collect()
        } else {
            rotation
        };
        Upstream {
            name: config.name.clone(),
            servers,
            rotation,
            cursor: AtomicUsize::new(0),
            balance: config.balance,
            retries: config.retries,
            max_fails: config.max_fails,
            fail_timeout: config.fail_timeout,
            health: config.health.clone(),
            metrics: metrics.upstream(&config.name),
            pool: Pool::new(
                &config.servers,
                config.connect_timeout,
                config.pool_idle_timeout,
                config.pool_max_idle,
                config.resolve_every,
                config.send_proxy_protocol,
                metrics.upstream(&config.name),
            ),
            connect_timeout: config.connect_timeout,
            read_timeout: config.read_timeout,
            send_proxy_protocol: config.send_proxy_protocol,
        }
    }

    /// Starts the active health checks, if configured; they stop when the
    /// upstream is dropped (a reload that changed it).
    pub fn start_health_checks(self: &Arc<Self>) {
        let Some(health) = self.health.clone() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let upstream = Arc::downgrade(self);
        let send_proxy = self.send_proxy_protocol;
        runtime.spawn(async move {
            let mut every = tokio::time::interval(health.interval);
            loop {
                every.tick().await;
                let Some(up) = upstream.upgrade() else { return };
                for server in &up.servers {
                    let passed = health_check(&server.authority, &health, send_proxy).await;
                    up.record_check(server, passed, &health);
                }
            }
        });
    }

    fn record_check(&self, server: &Server, passed: bool, health: &HealthConfig) {
        if passed {
            server.failures.store(0, Ordering::Relaxed);
            let n = server.passes.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= health.healthy && server.checked_down.swap(false, Ordering::Relaxed) {
                tracing::info!(upstream = %self.name, server = %server.authority, "health checks pass again; back in rotation");
            }
        } else {
            server.passes.store(0, Ordering::Relaxed);
            let n = server.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= health.unhealthy && !server.checked_down.swap(true, Ordering::Relaxed) {
                tracing::warn!(upstream = %self.name, server = %server.authority, path = %health.path, failures = n,
                    "health checks failing; out of rotation");
            }
        }
    }

    /// Sends `req` (origin-form URI) to a server chosen by the balancing rule.
    /// A request that never reached a server (refused, unresolvable, connect
    /// timeout) is tried on another, up to `retries` more times; once any byte
    /// was sent it is never tried elsewhere (the pool may send it once more on
    /// a fresh connection to the same server, see [`retry`]). The connect
    /// timeout bounds each new connection; `read_timeout` the wait for the
    /// response head.
    ///
    /// A failure caused by the client's request body (it broke, stopped
    /// early, or grew past `max_body_size`) is the client's: it does not count
    /// in `ferry_upstream_errors_total` nor against the server's passive
    /// health, and the connection it broke is not reused (hyper closes it).
    pub async fn send(
        self: &Arc<Self>,
        req: Request<RequestBody>,
        read_timeout: Duration,
    ) -> Result<Sent, Failed> {
        let body = req.body().progress();
        let mut req = req;
        let mut tried: Vec<usize> = Vec::new();
        loop {
            let index = self
                .pick(&tried)
                .expect("an upstream has at least one server");
            let server = &self.servers[index];
            server.in_flight.fetch_add(1, Ordering::Relaxed);
            let load = Load(self.clone(), index);
            let started = Instant::now();
            match self.pool.send(index, req, read_timeout).await {
                Ok((response, addr)) => {
                    self.metrics.response(started.elapsed().as_secs_f64());
                    if response.status().is_server_error() {
                        self.failed(index);
                    } else {
                        server.fails.store(0, Ordering::Relaxed);
                    }
                    return Ok(Sent {
                        response,
                        addr,
                        server: server.authority.clone(),
                        load,
                    });
                }
                Err((error, unsent)) => {
                    if let Some(why) = body.failure() {
                        tracing::debug!(upstream = %self.name, server = %server.authority, body = ?why, error = %error,
                            "the client's request body failed; not counted against the server");
                        return Err(Failed {
                            error,
                            server: server.authority.clone(),
                        });
                    }
                    self.metrics.error(error.kind());
                    // A timeout waiting for an answer says nothing about reachability.
                    if !matches!(error, SendError::Timeout { .. }) {
                        self.failed(index);
                    }
                    tried.push(index);
                    let can_retry =
                        tried.len() <= self.retries as usize && tried.len() < self.servers.len();
                    match unsent {
                        Some(back) if can_retry => {
                            tracing::debug!(upstream = %self.name, server = %server.authority, error = %error, "not sent; trying another server");
                            self.metrics.retry(retry::RetryReason::OtherServer.label());
                            req = back;
                        }
                        _ => {
                            return Err(Failed {
                                error,
                                server: server.authority.clone(),
                            });
                        }
                    }
                }
            }
        }
    }

    /// Records a failure; `max_fails` in a row take the server out for `fail_timeout`.
    fn failed(&self, index: usize) {
        let server = &self.servers[index];
        let fails = server.fails.fetch_add(1, Ordering::Relaxed) + 1;
        if self.max_fails > 0 && fails >= self.max_fails && self.servers.len() > 1 {
            let mut down = server.down_until.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if down.is_none_or(|t| now >= t) {
                tracing::warn!(upstream = %self.name, server = %server.authority, fails, out_for = ?self.fail_timeout,
                    "taking a failing server out of rotation");
            }
            *down = Some(now + self.fail_timeout);
            server.fails.store(0, Ordering::Relaxed);
        }
    }

    /// The next server by the balancing rule, skipping `tried`, preferring
    /// healthy ones; never leaves an upstream with no server at all.
    fn pick(&self, tried: &[usize]) -> Option<usize> {
        let now = Instant::now();
        let untried: Vec<usize> = (0..self.servers.len())
            .filter(|i| !tried.contains(i))
            .collect();
        if untried.is_empty() {
            return None;
        }
        let healthy: Vec<usize> = untried
            .iter()
            .copied()
            .filter(|&i| self.servers[i].available(now))
            .collect();
        let pool = if healthy.is_empty() { untried } else { healthy };
        let load = |i: usize| self.servers[i].in_flight.load(Ordering::Relaxed);
        let turn = self.cursor.fetch_add(1, Ordering::Relaxed);
        Some(match self.balance {
            Balance::RoundRobin => (0..self.rotation.len())
                .map(|k| self.rotation[(turn + k) % self.rotation.len()])
                .find(|i| pool.contains(i))
                .unwrap_or(pool[0]),
            Balance::LeastRequests => {
                // Ties go round robin, so equal servers share the load.
                (0..pool.len())
                    .map(|k| pool[(turn + k) % pool.len()])
                    .min_by_key(|&i| load(i))
                    .unwrap_or(pool[0])
            }
            Balance::RandomTwo => {
                let a = pool[random(turn) % pool.len()];
                let b = pool[random(turn ^ 0x9e37_79b9) % pool.len()];
                if load(b) < load(a) { b } else { a }
            }
        })
    }
}

/// One health check: `GET path` on a fresh connection; passes on any status
/// below 500. With `send_proxy_protocol` the connection starts with a header
/// naming no client (v2 `LOCAL`, v1 `UNKNOWN`), as HAProxy's
/// `check-send-proxy` does: a PROXY-reading server would refuse it otherwise.
async fn health_check(
    server: &Authority,
    health: &HealthConfig,
    send_proxy: Option<ProxyProtocolVersion>,
) -> bool {
    use http_body_util::Empty;
    use tokio::io::AsyncWriteExt;
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(server.as_str()).await.ok()?;
        if let Some(version) = send_proxy {
            stream
                .write_all(&proxy_protocol::header(version, None))
                .await
                .ok()?;
        }
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<bytes::Bytes>>(io)
                .await
                .ok()?;
        tokio::spawn(conn);
        let req = Request::get(health.path.as_str())
            .header(http::header::HOST, server.as_str())
            .header(http::header::USER_AGENT, "ferry-health-check")
            .body(Empty::new())
            .ok()?;
        let res = sender.send_request(req).await.ok()?;
        Some(!res.status().is_server_error())
    };
    tokio::time::timeout(health.timeout, check)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// A cheap pseudo-random number (balancing needs spread, not secrecy).
fn random(seed: usize) -> usize {
    static STATE: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    STATE
        .get_or_init(std::collections::hash_map::RandomState::new)
        .hash_one(seed) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(n: usize, balance: Balance, weights: Vec<u32>) -> Arc<Upstream> {
        let config = UpstreamConfig {
            name: "u".into(),
            servers: (0..n)
                .map(|i| format!("s{i}:80").parse().unwrap())
                .collect(),
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            pool_idle_timeout: Duration::from_secs(1),
            pool_max_idle: 1,
            weights,
            balance,
            retries: 2,
            max_fails: 2,
            fail_timeout: Duration::from_secs(60),
            resolve_every: Duration::from_secs(5),
            health: None,
            send_proxy_protocol: None,
        };
        Arc::new(Upstream::new(&config, &Metrics::new()))
    }

    fn counts(u: &Upstream, n: usize) -> Vec<usize> {
        let mut c = vec![0; u.servers.len()];
        for _ in 0..n {
            c[u.pick(&[]).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn round_robin_follows_weights() {
        assert_eq!(
            counts(&upstream(3, Balance::RoundRobin, vec![1, 1, 1]), 30),
            [10, 10, 10]
        );
        assert_eq!(
            counts(&upstream(2, Balance::RoundRobin, vec![1, 3]), 40),
            [10, 30]
        );
    }

    #[test]
    fn least_requests_avoids_the_busy_server() {
        let u = upstream(3, Balance::LeastRequests, vec![1, 1, 1]);
        u.servers[0].in_flight.store(5, Ordering::Relaxed);
        let c = counts(&u, 30);
        assert_eq!(c[0], 0);
        assert_eq!(c[1] + c[2], 30);
        assert!(c[1] > 0 && c[2] > 0, "ties alternate: {c:?}");
    }

    #[test]
    fn random_two_spreads_and_prefers_the_idle() {
        let u = upstream(4, Balance::RandomTwo, vec![1, 1, 1, 1]);
        assert!(counts(&u, 400).iter().all(|&n| n > 40));
        u.servers[2].in_flight.store(100, Ordering::Relaxed);
        let c = counts(&u, 400);
        assert!(c[2] < 40, "{c:?}");
    }

    #[test]
    fn failing_servers_are_taken_out_but_never_all() {
        let u = upstream(2, Balance::RoundRobin, vec![1, 1]);
        u.failed(0);
        u.failed(0);
        assert_eq!(counts(&u, 10), [0, 10]);
        u.failed(1);
        u.failed(1);
        // Both out: still served.
        assert_eq!(counts(&u, 10).iter().sum::<usize>(), 10);
        assert_eq!(u.pick(&[0, 1]), None);
        assert_eq!(u.pick(&[0]), Some(1));
    }
}
