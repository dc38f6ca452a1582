//! Listeners and connections: accept loops, the PROXY protocol header
//! ([`proxy_protocol`]), TLS handshakes, HTTP/1.1 or HTTP/2 by ALPN (HTTP/2
//! writes batched by [`batch`]), and the drain on shutdown (the
//! [`drain`](crate::drain) they wait on lives below both server and proxy).

mod batch;
pub mod proxy_protocol;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::Instrument;

use self::batch::BatchedWrites;
use self::proxy_protocol::LogLimiter;
use crate::config::{ListenerConfig, ListenerKind};
use crate::drain::{Drain, Streams, Watch};
use crate::metrics::GaugeGuard;
use crate::proxy::body::ProxyBody;
use crate::proxy::context::{log_parser_refusal, parser_refusal};
use crate::proxy::http::handle;
use crate::proxy::{ConnInfo, LiveState};
use crate::tls::{ALPN_H2, CertStore, ClientAuthScope, ClientCert};

/// A listening socket and what it is for.
#[derive(Debug)]
pub struct BoundListener {
    pub config: ListenerConfig,
    pub listener: TcpListener,
}

impl BoundListener {
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.addr)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

/// Binds every listener, or fails naming the first address that cannot be bound.
pub async fn bind(listeners: &[ListenerConfig]) -> Result<Vec<BoundListener>, BindError> {
    let mut bound = Vec::with_capacity(listeners.len());
    for config in listeners {
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|source| BindError {
                addr: config.addr,
                source,
            })?;
        bound.push(BoundListener {
            config: config.clone(),
            listener,
        });
    }
    Ok(bound)
}

/// What every connection of the server shares.
#[derive(Debug)]
struct Shared {
    /// The current configuration; each connection and request reads it anew.
    live: LiveState,
    /// Present when any listener terminates TLS.
    tls: Option<Arc<CertStore>>,
    /// Where `redirect_https` sends clients (the first TLS listener's bound port).
    https_port: Option<u16>,
}

/// Serves `listeners` until `shutdown` resolves, then drains: stops accepting,
/// lets in-flight requests finish (closing keep-alive connections, sending
/// HTTP/2 GOAWAY) for up to `server.shutdown_grace`, then returns.
pub async fn serve(
    live: LiveState,
    tls: Option<Arc<CertStore>>,
    listeners: Vec<BoundListener>,
    shutdown: impl Future<Output = ()>,
) {
    let state = live.load_full();
    let https_port = listeners
        .iter()
        .find(|l| l.config.kind == ListenerKind::Tls)
        .map(|l| l.local_addr().port())
        .or_else(|| state.config.https_port());
    let shared = Arc::new(Shared {
        live: live.clone(),
        tls,
        https_port,
    });
    // Fixed for the process: changing max_connections needs a restart.
    let limit = Arc::new(Semaphore::new(state.config.server.max_connections));
    drop(state);
    let drain = Drain::new();
    for listener in listeners {
        let tls = match listener.config.kind {
            ListenerKind::Tls => match &shared.tls {
                Some(store) => Some(store.clone()),
                None => {
                    tracing::error!(listen.addr = %listener.local_addr(), "TLS listener without certificates; not serving it");
                    continue;
                }
            },
            _ => None,
        };
        tokio::spawn(accept_loop(
            listener,
            tls,
            shared.clone(),
            limit.clone(),
            drain.watch(),
        ));
    }

    shutdown.await;
    // The grace period of the configuration in force when the shutdown began.
    let grace = live.load().config.server.shutdown_grace;
    tracing::info!(grace = ?grace, "shutting down: no new connections; draining");
    if drain.drain(grace).await {
        tracing::info!("drained cleanly");
    } else {
        tracing::warn!(grace = ?grace, "shutdown grace expired; closing the remaining connections");
    }
}

async fn accept_loop(
    bound: BoundListener,
    tls: Option<Arc<CertStore>>,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    mut watch: Watch,
) {
    let addr = bound.local_addr();
    let kind = bound.config.kind;
    let listener = Arc::new(Listener {
        config: bound.config.clone(),
        label: addr.to_string().into(),
        tls,
        rejections: LogLimiter::new(REJECTION_LOG_PERIOD),
    });
    tracing::info!(listen.addr = %addr, kind = ?kind, "listening");
    loop {
        // At the connection cap, stop accepting: the kernel backlog absorbs bursts.
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = watch.signaled() => break,
        };
        let accepted = tokio::select! {
            accepted = bound.listener.accept() => accepted,
            () = watch.signaled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let conn = serve_connection(
                    stream,
                    peer,
                    listener.clone(),
                    shared.clone(),
                    permit,
                    watch.clone(),
                );
                tokio::spawn(conn.instrument(tracing::debug_span!(
                    "conn",
                    client.addr = %peer,
                    listen.addr = %addr,
                    // The balancer, once a PROXY header named someone else as the client.
                    proxy.addr = tracing::field::Empty,
                )));
            }
            Err(e) if is_resource_exhaustion(&e) => {
                // EMFILE and friends: the next accept would fail too; back off.
                tracing::error!(listen.addr = %addr, error = %e, "cannot accept connections (out of file descriptors or memory); retrying in 100ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => tracing::debug!(listen.addr = %addr, error = %e, "accept failed"),
        }
    }
    tracing::debug!(listen.addr = %addr, "stopped accepting");
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// One accepting socket's settings, shared by its connections.
struct Listener {
    config: ListenerConfig,
    /// The bound address, for metrics labels and logs (a configured port 0 becomes the real one).
    label: Arc<str>,
    /// Where a TLS listener's handshakes get their configuration.
    tls: Option<Arc<CertStore>>,
    /// Connections refused over their PROXY header: one info line per period.
    rejections: LogLimiter,
}

/// How often a refused PROXY protocol connection is logged at info (the
/// others at debug; all are counted in the metrics).
const REJECTION_LOG_PERIOD: Duration = Duration::from_secs(10);

/// Serves one accepted connection: the TLS handshake if the listener has
/// one, then HTTP/1.1 or HTTP/2 until it closes or the drain says stop.
async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<Listener>,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
    mut watch: Watch,
) {
    let _ = stream.set_nodelay(true);
    let metrics = shared.live.load().metrics.clone();
    let listen = &listener.label;
    let https_port = shared.https_port;
    let local = stream.local_addr().unwrap_or(listener.config.addr);
    let (client, local) = if listener.config.proxy_protocol {
        match proxy_header(&mut stream, peer, local, &listener, &shared, &mut watch).await {
            Some(addrs) => addrs,
            None => return,
        }
    } else {
        (peer, local)
    };
    let conn = |kind, tls_version, client_auth, streams, drain| {
        Arc::new(ConnInfo {
            client,
            client_ip: crate::proxy::headers::ip_value(client.ip()),
            local,
            listener: kind,
            listen: listener.label.clone(),
            https_port,
            drain,
            tls_version,
            client_auth,
            streams,
        })
    };
    match (listener.config.kind, listener.tls.clone()) {
        (ListenerKind::Tls, Some(store)) => {
            let Some((tls, client_auth)) =
                handshake(stream, &store, &listener, &shared, &mut watch).await
            else {
                return;
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(ALPN_H2);
            let tls_version = match tls.get_ref().1.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => Some("TLSv1.3"),
                Some(rustls::ProtocolVersion::TLSv1_2) => Some("TLSv1.2"),
                _ => None,
            };
            let streams = h2.then(Streams::default);
            let info = conn(
                ListenerKind::Tls,
                tls_version,
                client_auth,
                streams,
                watch.clone(),
            );
            let streams = info.streams.clone().unwrap_or_default();
            let svc = proxy_service(shared.live.clone(), info.clone());
            let _open = GaugeGuard::new(metrics.connection(listen, if h2 { "h2" } else { "h1" }));
            if h2 {
                let server = &shared.live.load().config.server;
                let settings = H2Settings {
                    max_header_size: server.max_header_size,
                    websocket: listener.config.websocket_over_http2,
                    streams,
                    idle_timeout: server.idle_timeout,
                };
                serve_h2(TokioIo::new(BatchedWrites::new(tls)), svc, settings, watch).await;
            } else {
                serve_h1(TokioIo::new(tls), svc, &shared, &info, watch).await;
            }
        }
        (kind, _) => {
            // Plain HTTP/1.1: proxying, or the redirect to https.
            let info = conn(kind, None, None, None, watch.clone());
            let svc = proxy_service(shared.live.clone(), info.clone());
            let protocol = if kind == ListenerKind::RedirectHttps {
                "redirect"
            } else {
                "h1"
            };
            let _open = GaugeGuard::new(metrics.connection(listen, protocol));
            serve_h1(TokioIo::new(stream), svc, &shared, &info, watch).await;
        }
    }
}

/// Reads the PROXY protocol header of a `proxy_protocol` listener's
/// connection, before anything else (the TLS handshake included), within
/// `server.handshake_timeout`. Returns the client and destination it names,
/// or the real peer and local address for a header that names none (v1
/// `UNKNOWN`, v2 `LOCAL` health checks from the balancer, AF_UNIX, UNSPEC).
/// `None`: the connection is to be closed — the peer is not in
/// `server.trusted_proxies` (nothing is read from it), or the header is
/// missing, malformed, too large or late — counted in
/// `ferry_proxy_protocol_rejected_total`.
async fn proxy_header(
    stream: &mut TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    listener: &Listener,
    shared: &Shared,
    watch: &mut Watch,
) -> Option<(SocketAddr, SocketAddr)> {
    let (metrics, trusted, timeout) = {
        let state = shared.live.load();
        let server = &state.config.server;
        (
            state.metrics.clone(),
            crate::proxy::headers::is_trusted(&server.trusted_proxies, peer.ip()),
            server.handshake_timeout,
        )
    };
    let result = if trusted {
        tokio::select! {
            result = proxy_protocol::read(stream, timeout) => result.map_err(Some),
            () = watch.signaled() => return None,
        }
    } else {
        Err(None)
    };
    match result {
        Ok(header) => {
            let addrs = header.addresses.unwrap_or((peer, local));
            if addrs.0 != peer {
                let span = tracing::Span::current();
                span.record("client.addr", tracing::field::display(addrs.0));
                span.record("proxy.addr", tracing::field::display(peer));
            }
            tracing::trace!(
                version = header.version,
                local = header.local,
                "PROXY protocol header"
            );
            Some(addrs)
        }
        Err(e) => {
            let reason = e.as_ref().map_or("untrusted", |e| e.reason());
            metrics.proxy_protocol_rejected(&listener.label, reason);
            let why = e.map_or_else(
                || "the peer is not in server.trusted_proxies".to_owned(),
                |e| e.to_string(),
            );
            if listener.rejections.allow() {
                tracing::info!(peer.addr = %peer, reason, error = %why,
                    "closing a connection to a proxy_protocol listener (more in the next {REJECTION_LOG_PERIOD:?} are logged at debug; all are counted in ferry_proxy_protocol_rejected_total)");
            } else {
                tracing::debug!(peer.addr = %peer, reason, error = %why, "closing a connection to a proxy_protocol listener");
            }
            None
        }
    }
}

/// The TLS handshake, within `server.handshake_timeout`; counted in the
/// metrics either way. The ClientHello is read first: its SNI name picks the
/// certificate and with it the client-certificate policy (rustls has one
/// verifier per configuration). `None`: it failed, or a shutdown began.
async fn handshake(
    stream: TcpStream,
    store: &CertStore,
    listener: &Listener,
    shared: &Shared,
    watch: &mut Watch,
) -> Option<(TlsStream<TcpStream>, Option<ClientAuthScope>)> {
    let (metrics, handshake_timeout) = {
        let state = shared.live.load();
        (state.metrics.clone(), state.config.server.handshake_timeout)
    };
    let listen = &listener.label;
    let http2 = listener.config.http2;
    let handshake = async {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
        let accepting = store.accept(start.client_hello().server_name(), http2);
        let tls = start.into_stream(accepting.config).await?;
        Ok::<_, io::Error>((tls, accepting.client_auth))
    };
    let tls = tokio::select! {
        result = tokio::time::timeout(handshake_timeout, handshake) => result,
        () = watch.signaled() => return None,
    };
    match tls {
        Ok(Ok((tls, mut client_auth))) => {
            metrics.tls_handshake(listen);
            if let Some(scope) = client_auth.as_mut().filter(|s| s.mode().is_some()) {
                // Verified by rustls (or absent, when optional).
                scope.cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(<[_]>::first)
                    .map(ClientCert::from_der);
            }
            Some((tls, client_auth))
        }
        Ok(Err(e)) => {
            let client_cert = e
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
                .is_some_and(|e| {
                    matches!(
                        e,
                        rustls::Error::NoCertificatesPresented
                            | rustls::Error::InvalidCertificate(_)
                    )
                });
            let reason = match e.kind() {
                _ if client_cert => "client_certificate",
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => "client_closed",
                io::ErrorKind::InvalidData => "protocol",
                _ => "io",
            };
            tracing::debug!(error = %e, reason, "TLS handshake failed");
            metrics.tls_failure(listen, reason);
            None
        }
        Err(_) => {
            metrics.tls_failure(listen, "timeout");
            tracing::debug!(timeout = ?handshake_timeout, "TLS handshake timed out");
            None
        }
    }
}

fn proxy_service(
    live: LiveState,
    info: Arc<ConnInfo>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<ProxyBody>,
    Error = Infallible,
    Future: Send,
> + Clone
+ Send
+ 'static {
    service_fn(move |req| {
        // One snapshot for the request's whole life.
        let state = live.load_full();
        let info = info.clone();
        // Boxed once here: hyper moves the service future around (and, for
        // HTTP/2, into a task of its own); a pointer is cheaper to move
        // than the request path's few kilobytes of state.
        let request = Box::pin(handle(state, info, req));
        async move { Ok::<_, Infallible>(request.await) }
    })
}

async fn serve_h1<I, S>(io: TokioIo<I>, svc: S, shared: &Shared, info: &ConnInfo, mut watch: Watch)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = ProxyBody> + Send + 'static,
    S::Future: Send + 'static,
{
    let (header_read_timeout, max_header_size) = {
        let state = shared.live.load();
        let server = &state.config.server;
        (server.header_read_timeout, server.max_header_size)
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        // The request line and headers, as sent: 431 and close above it.
        // hyper's read buffer (≈ 408 KiB) must not be the smaller limit.
        .max_header_size(max_header_size)
        .keep_alive(true);
    if max_header_size > H1_DEFAULT_MAX_BUF {
        builder.max_buf_size(max_header_size);
    }
    let conn = builder.serve_connection(io, svc).with_upgrades();
    let mut conn = pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = watch.signaled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    match result {
        Ok(()) => {}
        // hyper answered a request it could not parse (400, 414, 431) by
        // itself; the request gets its record and its count all the same.
        Err(e) => match parser_refusal(&e) {
            Some(status) => log_parser_refusal(&shared.live.load(), info, status, &e),
            None => tracing::debug!(error = %e, "HTTP/1.1 connection ended with an error"),
        },
    }
}

/// hyper's default HTTP/1.1 read buffer limit (8 KiB + 100 × 4 KiB).
const H1_DEFAULT_MAX_BUF: usize = 8192 + 4096 * 100;

/// Per-connection HTTP/2 settings.
struct H2Settings {
    /// `server.max_header_size`, as SETTINGS_MAX_HEADER_LIST_SIZE (h2 answers 431 above it).
    max_header_size: usize,
    /// Advertise RFC 8441 extended CONNECT.
    websocket: bool,
    streams: Streams,
    /// Close (GOAWAY) after this long with no open stream.
    idle_timeout: Duration,
}

async fn serve_h2<I, S>(io: TokioIo<I>, svc: S, settings: H2Settings, mut watch: Watch)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = ProxyBody> + Send + 'static,
    S::Future: Send + 'static,
{
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_header_list_size(u32::try_from(settings.max_header_size).unwrap_or(u32::MAX));
    if settings.websocket {
        // Advertised only because the bridge behind it works: browsers switch
        // to RFC 8441 as soon as they see SETTINGS_ENABLE_CONNECT_PROTOCOL.
        builder.enable_connect_protocol();
    }
    let conn = builder.serve_connection(io, svc);
    let mut conn = pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = watch.signaled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        () = settings.streams.idle_for(settings.idle_timeout) => {
            tracing::debug!(idle_timeout = ?settings.idle_timeout, "closing an idle HTTP/2 connection");
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "HTTP/2 connection ended with an error");
    }
}
