//! Keep-alive HTTP/1.1 connections to one upstream's servers.
//!
//! Written for ferry rather than taken from hyper-util's legacy client so
//! that the proxy knows exactly what happened: how long the connect took
//! (connect and read timeouts are separate), which address answered, and
//! whether a failed request was ever sent (only those are retried).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::uri::Authority;
use http::{Request, Response};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::body::{Progress, RequestBody};
use super::counted::{Counted, ReadCount};
use super::dns::Resolved;
use super::proxy_protocol::{self, ProxySource};
use super::retry::{Resend, RetryReason};
use crate::config::ProxyProtocolVersion;
use crate::metrics::UpstreamMetrics;

/// How long a failed exchange waits for hyper's connection task to drop
/// the request body (it does so as the connection ends, at once in practice).
const BODY_BACK_WAIT: Duration = Duration::from_secs(1);

/// Why a request could not be sent or answered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot resolve {server}: {source}")]
    Resolve {
        server: Authority,
        #[source]
        source: io::Error,
    },
    #[error("cannot connect to {server}: {source}")]
    Connect {
        server: Authority,
        #[source]
        source: io::Error,
    },
    #[error("connecting to {server} timed out after {timeout:?}")]
    ConnectTimeout {
        server: Authority,
        timeout: Duration,
    },
    #[error("HTTP/1.1 handshake with {server} failed: {source}")]
    Handshake {
        server: Authority,
        #[source]
        source: hyper::Error,
    },
    /// The request was (at least partly) sent; the response did not arrive whole.
    #[error("{source}")]
    Exchange {
        #[source]
        source: hyper::Error,
    },
    /// No response head within the read timeout.
    #[error("no response within {timeout:?}")]
    Timeout { timeout: Duration },
}

impl SendError {
    /// A short, stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SendError::Resolve { .. } => "resolve",
            SendError::Connect { .. } => "connect",
            SendError::ConnectTimeout { .. } => "connect_timeout",
            SendError::Handshake { .. } => "handshake",
            SendError::Exchange { .. } => "exchange",
            SendError::Timeout { .. } => "timeout",
        }
    }
}

/// One open connection to a server.
struct Conn {
    sender: SendRequest<RequestBody>,
    addr: SocketAddr,
    /// Bytes read from it: unchanged across a failed exchange means the
    /// upstream sent no byte of an answer.
    read: ReadCount,
    /// The client its PROXY protocol header named: it serves only that one.
    source: Option<ProxySource>,
}

/// A connection waiting for its next request.
struct Idle {
    conn: Conn,
    since: Instant,
}

/// How an exchange on a reused connection ended.
enum Reused {
    Answered(Response<hyper::body::Incoming>, SocketAddr),
    Failed(SendError),
    /// Send it again on a fresh connection.
    Again(Request<RequestBody>, RetryReason, Option<hyper::Error>),
}

/// One server's idle connections and addresses.
struct Slot {
    idle: Mutex<Vec<Idle>>,
    dns: Resolved,
}

/// Idle connections per server (by index in the upstream's list), and how to open new ones.
pub struct Pool {
    slots: Vec<Slot>,
    /// Rotates the first address tried when a name has several.
    next_addr: AtomicUsize,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    /// `send_proxy_protocol`: the header new connections start with.
    send_proxy: Option<ProxyProtocolVersion>,
    /// Counts the requests sent again.
    metrics: UpstreamMetrics,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("connect_timeout", &self.connect_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_idle", &self.max_idle)
            .finish_non_exhaustive()
    }
}

impl Pool {
    pub fn new(
        servers: &[Authority],
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
        resolve_every: Duration,
        send_proxy: Option<ProxyProtocolVersion>,
        metrics: UpstreamMetrics,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            slots: servers
                .iter()
                .map(|server| Slot {
                    idle: Mutex::new(Vec::new()),
                    dns: Resolved::new(server.clone(), resolve_every),
                })
                .collect(),
            next_addr: AtomicUsize::new(0),
            connect_timeout,
            idle_timeout,
            max_idle,
            send_proxy,
            metrics,
        })
    }

    /// Sends `req` to server number `server` on a pooled connection, or a
    /// new one. Returns the response and the address it came from. The
    /// connection goes back to the pool when the response body is done
    /// (unless the response upgraded it).
    ///
    /// A reused connection that fails before the first response byte (the
    /// upstream closed it as idle just as the request went out) costs one
    /// more try on a fresh connection when the request can be sent again
    /// (see [`super::retry`]); that is not a failure of the server. When no
    /// byte of the request reached the server, the error comes with the
    /// request, which may then be tried elsewhere.
    pub async fn send(
        self: &Arc<Self>,
        server: usize,
        req: Request<RequestBody>,
        read_timeout: Duration,
    ) -> Result<
        (Response<hyper::body::Incoming>, SocketAddr),
        (SendError, Option<Request<RequestBody>>),
    > {
        let progress = req.body().progress();
        let source = self.source(&req);
        let mut req = req;
        // Refresh the name's addresses when the cached answer is old, so that
        // pooled connections to an address it no longer has are retired below.
        // A failed lookup keeps the pooled connections in use.
        let _ = self.slots[server].dns.addrs().await;
        if let Some(idle) = self.checkout(server, source) {
            match self
                .send_reused(server, idle.conn, req, &progress, read_timeout)
                .await
            {
                Reused::Answered(res, addr) => return Ok((res, addr)),
                Reused::Failed(e) => return Err((e, None)),
                Reused::Again(back, reason, error) => {
                    let error = error.map(tracing::field::display);
                    tracing::debug!(upstream = %self.metrics.name, reason = reason.label(), error,
                        "a reused upstream connection failed before any response byte; sending again on a new one");
                    self.metrics.retry(reason.label());
                    req = back;
                }
            }
        }
        let mut conn = match self.connect(server, source).await {
            Ok(conn) => conn,
            Err(e) => return Err((e, Some(req))),
        };
        progress.touch();
        let head = head_within(conn.sender.try_send_request(req), &progress, read_timeout).await;
        match head.map_err(|e| (e, None))? {
            Ok(res) => {
                let addr = conn.addr;
                self.checkin_when_ready(server, conn);
                Ok((res, addr))
            }
            Err(mut e) => {
                let unsent = e.take_message();
                Err((
                    SendError::Exchange {
                        source: e.into_error(),
                    },
                    unsent,
                ))
            }
        }
    }

    /// One exchange on a pooled connection, and whether a failure allows
    /// sending the request again.
    async fn send_reused(
        self: &Arc<Self>,
        server: usize,
        mut conn: Conn,
        mut req: Request<RequestBody>,
        progress: &Progress,
        read_timeout: Duration,
    ) -> Reused {
        let resend = Resend::prepare(&mut req);
        let read_before = conn.read.get();
        progress.touch();
        let head = head_within(conn.sender.try_send_request(req), progress, read_timeout).await;
        let mut e = match head {
            // A silent upstream is not a closed connection: never sent again.
            Err(timeout) => return Reused::Failed(timeout),
            Ok(Ok(res)) => {
                let addr = conn.addr;
                self.checkin_when_ready(server, conn);
                return Reused::Answered(res, addr);
            }
            Ok(Err(e)) => e,
        };
        // Never sent: safe to send again, whatever the method.
        if let Some(unsent) = e.take_message() {
            return Reused::Again(unsent, RetryReason::ReusedUnsent, Some(e.into_error()));
        }
        let error = e.into_error();
        // Part of an answer came (the upstream acted on the request), or the
        // client's body broke: the error stands.
        if conn.read.get() != read_before || progress.failure().is_some() {
            return Reused::Failed(SendError::Exchange { source: error });
        }
        let again = match resend {
            Some(resend) => resend.recover(BODY_BACK_WAIT).await,
            None => None,
        };
        match again {
            Some(req) => Reused::Again(req, RetryReason::ReusedClosed, Some(error)),
            None => Reused::Failed(SendError::Exchange { source: error }),
        }
    }

    /// The client a request's connection must be for: with
    /// `send_proxy_protocol`, the [`ProxySource`] the proxy attached (no
    /// source: ferry's own connection, sent as UNKNOWN/LOCAL); otherwise any.
    fn source<B>(&self, req: &Request<B>) -> Option<ProxySource> {
        self.send_proxy
            .and_then(|_| req.extensions().get::<ProxySource>().copied())
    }

    /// The most recently used live connection for `source` (least likely to be closing).
    fn checkout(&self, server: usize, source: Option<ProxySource>) -> Option<Idle> {
        let slot = &self.slots[server];
        let mut list = slot.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Without `send_proxy_protocol` every source is `None`: this is a pop.
        while let Some(i) = list.iter().rposition(|c| c.conn.source == source) {
            let idle = list.remove(i);
            // Retire connections idle for pool_idle_timeout (the upstream may
            // be closing them) and those to addresses the name no longer
            // resolves to (a restarted container's old IP).
            if idle.since.elapsed() < self.idle_timeout
                && idle.conn.sender.is_ready()
                && slot.dns.still_current(idle.conn.addr)
            {
                return Some(idle);
            }
        }
        None
    }

    fn checkin_when_ready(self: &Arc<Self>, server: usize, mut conn: Conn) {
        let pool = Arc::clone(self);
        tokio::spawn(async move {
            // Resolves when the response body has been read to the end; errors
            // if the connection closed or was upgraded.
            if conn.sender.ready().await.is_ok() {
                pool.checkin(server, conn);
            }
        });
    }

    fn checkin(&self, server: usize, conn: Conn) {
        let mut list = self.slots[server]
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Stamped under the lock, so the list stays in time order.
        let now = Instant::now();
        // The list is in check-in order, so the expired ones are a prefix,
        // found by bisection rather than a clock read per idle connection
        // (this runs once per request). Closed ones are dropped at checkout.
        let expired = list.partition_point(|c| now.duration_since(c.since) >= self.idle_timeout);
        list.drain(..expired);
        if list.len() < self.max_idle {
            list.push(Idle { conn, since: now });
        }
    }

    /// Resolves `server` now (so a restarted container's new address is used)
    /// and connects to the first address that answers, within `connect_timeout`;
    /// with `send_proxy_protocol`, the header naming `source` goes first.
    async fn connect(&self, server: usize, source: Option<ProxySource>) -> Result<Conn, SendError> {
        let names = &self.slots[server].dns;
        let server = names.server();
        let timeout = self.connect_timeout;
        let stream = tokio::time::timeout(timeout, async {
            let addrs = names.addrs().await.map_err(|source| SendError::Resolve {
                server: server.clone(),
                source,
            })?;
            let mut last =
                io::Error::new(io::ErrorKind::NotFound, "the name resolved to no addresses");
            // Every address is used: start at a different one each time.
            let first = self.next_addr.fetch_add(1, Ordering::Relaxed);
            for k in 0..addrs.len() {
                let addr = addrs[(first + k) % addrs.len()];
                match TcpStream::connect(addr).await {
                    Ok(stream) => return Ok((stream, addr)),
                    Err(e) => last = e,
                }
            }
            Err(SendError::Connect {
                server: server.clone(),
                source: last,
            })
        })
        .await
        .map_err(|_| SendError::ConnectTimeout {
            server: server.clone(),
            timeout,
        })?;
        let (mut stream, addr) = stream?;
        let _ = stream.set_nodelay(true);
        if let Some(version) = self.send_proxy {
            // One small write into an empty socket buffer: it does not block.
            let header = proxy_protocol::header(version, source.as_ref());
            stream
                .write_all(&header)
                .await
                .map_err(|source| SendError::Connect {
                    server: server.clone(),
                    source,
                })?;
        }
        let (stream, read) = Counted::new(stream);
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| SendError::Handshake {
                server: server.clone(),
                source,
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(upstream.addr = %addr, error = %e, "upstream connection ended with an error");
            }
        });
        Ok(Conn {
            sender,
            addr,
            read,
            source,
        })
    }
}

/// Awaits a response head, failing when neither the upstream answered nor the
/// client's request body moved for `read_timeout` (a slow upload is not a slow upstream).
async fn head_within<T>(
    exchange: impl std::future::Future<Output = T>,
    progress: &Progress,
    read_timeout: Duration,
) -> Result<T, SendError> {
    let mut exchange = std::pin::pin!(exchange);
    loop {
        let deadline = progress.last() + read_timeout;
        tokio::select! {
            result = &mut exchange => return Ok(result),
            () = tokio::time::sleep_until(deadline) => {
                if progress.last() + read_timeout <= tokio::time::Instant::now() {
                    return Err(SendError::Timeout { timeout: read_timeout });
                }
            }
        }
    }
}
