//! The one test harness: a ferry started from a TOML string on port 0, real
//! upstream servers, and real TLS clients (HTTP/1.1 or HTTP/2) that trust a
//! CA generated for the test. Every network wait has a timeout.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry::app::Ferry;
use ferry::config::{Config, ListenerKind};
use ferry::tls::dev::{PemPair, generate_ca, issue_leaf};
use http::{Request, Response};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Upper bound for any single network wait in a test.
pub const WAIT: Duration = Duration::from_secs(20);

/// Awaits `fut`, failing the test if it takes longer than [`WAIT`]; the
/// failure names the line that waited.
#[track_caller]
pub fn within<T>(fut: impl Future<Output = T>) -> impl Future<Output = T> {
    let caller = std::panic::Location::caller();
    async move {
        match tokio::time::timeout(WAIT, fut).await {
            Ok(value) => value,
            Err(_) => panic!("timed out after {WAIT:?} waiting on the network at {caller}"),
        }
    }
}

/// A CA made for one test, and leaf certificates it signs, written to a temp dir.
pub struct TestCa {
    pub ca: PemPair,
    pub dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> TestCa {
        TestCa {
            ca: generate_ca("ferry test CA").unwrap(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Writes a leaf for `names` (chain: leaf + CA); returns (cert path, key path).
    pub fn leaf(&self, file_stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let leaf = issue_leaf(&self.ca, &names).unwrap();
        let cert = self.dir.path().join(format!("{file_stem}.pem"));
        let key = self.dir.path().join(format!("{file_stem}-key.pem"));
        std::fs::write(&cert, format!("{}{}", leaf.cert, self.ca.cert)).unwrap();
        std::fs::write(&key, leaf.key).unwrap();
        (cert, key)
    }

    pub fn ca_path(&self) -> PathBuf {
        let path = self.dir.path().join("ca.pem");
        std::fs::write(&path, &self.ca.cert).unwrap();
        path
    }

    /// A client config trusting only this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(self.ca.cert.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut config = rustls::ClientConfig::builder_with_provider(ferry::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// A running ferry, in this process, on port 0.
pub struct TestProxy {
    pub ca: TestCa,
    /// Bound addresses by listener kind (first of each).
    pub tls_addr: Option<SocketAddr>,
    pub plain_addr: Option<SocketAddr>,
    pub redirect_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    /// Reloads the config file (for proxies started with [`TestProxy::start_file`]).
    pub reloader: Arc<ferry::reload::Reloader>,
    pub config_path: Option<PathBuf>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestProxy {
    /// Starts ferry from `toml`. `{cert}` and `{key}` are replaced by a leaf for
    /// localhost / 127.0.0.1 / ::1; `{backend}` placeholders must be filled by the caller.
    pub async fn start(toml: &str) -> TestProxy {
        Self::start_with(toml, TestCa::new()).await
    }

    pub async fn start_with(toml: &str, ca: TestCa) -> TestProxy {
        let src = Self::fill(toml, &ca);
        let config = Config::parse(&src, "test.toml", ca.dir.path())
            .unwrap_or_else(|e| panic!("test config is invalid:\n{e}\n---\n{src}"));
        let ferry = Ferry::bind(config).await.expect("ferry binds");
        Self::serve(ferry, ca, None)
    }

    /// Starts ferry from a real file (`proxy.toml` in the CA's temp dir), so
    /// that reloads and the file watcher work.
    pub async fn start_file(toml: &str) -> TestProxy {
        let ca = TestCa::new();
        let path = ca.dir.path().join("proxy.toml");
        std::fs::write(&path, Self::fill(toml, &ca)).unwrap();
        let ferry = Ferry::bind_file(&path).await.expect("ferry binds");
        Self::serve(ferry, ca, Some(path))
    }

    /// Replaces `{cert}` and `{key}` with a leaf for localhost / 127.0.0.1 / ::1.
    pub fn fill(toml: &str, ca: &TestCa) -> String {
        let cert = ca.dir.path().join("localhost.pem");
        if !cert.exists() {
            ca.leaf("localhost", &["localhost", "127.0.0.1", "::1"]);
        }
        let key = ca.dir.path().join("localhost-key.pem");
        toml.replace("{cert}", &cert.display().to_string())
            .replace("{key}", &key.display().to_string())
    }

    /// Atomically replaces the config file (write aside, rename), as editors and `docker cp` do.
    pub fn rewrite_config(&self, toml: &str) {
        let path = self.config_path.as_ref().expect("started with start_file");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, Self::fill(toml, &self.ca)).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    fn serve(ferry: Ferry, ca: TestCa, config_path: Option<PathBuf>) -> TestProxy {
        let reloader = ferry.reloader();
        let tls_addr = ferry.addr(ListenerKind::Tls);
        let plain_addr = ferry.addr(ListenerKind::Plain);
        let redirect_addr = ferry.addr(ListenerKind::RedirectHttps);
        let admin_addr = ferry.admin_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(ferry.serve(async move {
            let _ = rx.await;
        }));
        TestProxy {
            ca,
            tls_addr,
            plain_addr,
            redirect_addr,
            admin_addr,
            reloader,
            config_path,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// An HTTPS client to the TLS listener, with SNI `localhost`.
    pub async fn client(&self, proto: Proto) -> Client {
        self.client_sni(proto, "localhost").await
    }

    pub async fn client_sni(&self, proto: Proto, sni: &str) -> Client {
        let addr = self.tls_addr.expect("config has a tls listener");
        Client::tls(addr, &self.ca, proto, sni).await
    }

    /// `method path` on the admin listener; returns (status, body).
    pub async fn admin(&self, method: &str, path: &str) -> (u16, String) {
        let addr = self.admin_addr.expect("config has [admin]");
        let mut c = Client::plain(addr).await;
        let res = c
            .fetch(
                request(method, &addr.to_string(), path, false)
                    .body(empty())
                    .unwrap(),
            )
            .await;
        (res.status(), res.text().to_owned())
    }

    /// Starts the drain without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Starts the drain and waits for ferry's serve task to return.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            within(task).await.unwrap();
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
}

pub type TestBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub fn body(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into())
        .map_err(|e: Infallible| match e {})
        .boxed()
}

pub fn empty() -> TestBody {
    body(Bytes::new())
}

/// One client connection (HTTP/1.1 keep-alive, or HTTP/2).
pub enum Client {
    H1(hyper::client::conn::http1::SendRequest<TestBody>),
    H2(hyper::client::conn::http2::SendRequest<TestBody>),
}

impl Client {
    pub async fn tls(addr: SocketAddr, ca: &TestCa, proto: Proto, sni: &str) -> Client {
        let alpn: &[&[u8]] = match proto {
            Proto::H1 => &[b"http/1.1"],
            Proto::H2 => &[b"h2"],
        };
        let connector = tokio_rustls::TlsConnector::from(ca.client_config(alpn));
        let tcp = within(TcpStream::connect(addr)).await.unwrap();
        let name = ServerName::try_from(sni.to_owned()).unwrap();
        let tls = within(connector.connect(name, tcp))
            .await
            .expect("TLS handshake");
        let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        assert_eq!(negotiated.as_deref(), Some(alpn[0]), "ALPN");
        Self::handshake(TokioIo::new(tls), proto).await
    }

    pub async fn plain(addr: SocketAddr) -> Client {
        let tcp = within(TcpStream::connect(addr)).await.unwrap();
        Self::handshake(TokioIo::new(tcp), Proto::H1).await
    }

    async fn handshake<I>(io: TokioIo<I>, proto: Proto) -> Client
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        match proto {
            Proto::H1 => {
                let (sender, conn) = within(hyper::client::conn::http1::handshake(io))
                    .await
                    .unwrap();
                tokio::spawn(conn.with_upgrades());
                Client::H1(sender)
            }
            Proto::H2 => {
                let (sender, conn) = within(hyper::client::conn::http2::handshake(
                    TokioExecutor::new(),
                    io,
                ))
                .await
                .unwrap();
                tokio::spawn(conn);
                Client::H2(sender)
            }
        }
    }

    /// Sends `req` and returns the response head (body still streaming).
    pub async fn send(&mut self, req: Request<TestBody>) -> hyper::Result<Response<Incoming>> {
        match self {
            Client::H1(s) => {
                within(s.ready()).await?;
                within(s.send_request(req)).await
            }
            Client::H2(s) => {
                within(s.ready()).await?;
                within(s.send_request(req)).await
            }
        }
    }

    /// Sends `req` and reads the whole response.
    pub async fn fetch(&mut self, req: Request<TestBody>) -> Fetched {
        let res = self.send(req).await.expect("response head");
        let (parts, body) = res.into_parts();
        let body = within(body.collect())
            .await
            .expect("response body")
            .to_bytes();
        Fetched { head: parts, body }
    }

    /// GET `path` with `Host: host` (HTTP/1.1) or `:authority` (HTTP/2).
    pub async fn get(&mut self, host: &str, path: &str) -> Fetched {
        self.fetch(
            request("GET", host, path, self.is_h2())
                .body(empty())
                .unwrap(),
        )
        .await
    }

    pub fn is_h2(&self) -> bool {
        matches!(self, Client::H2(_))
    }
}

/// A request builder for `host` and `path`: Host header for HTTP/1.1, absolute URI for HTTP/2.
pub fn request(method: &str, host: &str, path: &str, h2: bool) -> http::request::Builder {
    if h2 {
        Request::builder()
            .method(method)
            .uri(format!("https://{host}{path}"))
    } else {
        Request::builder()
            .method(method)
            .uri(path)
            .header("host", host)
    }
}

/// A response read whole.
pub struct Fetched {
    pub head: http::response::Parts,
    pub body: Bytes,
}

impl Fetched {
    pub fn status(&self) -> u16 {
        self.head.status.as_u16()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    /// For the echo backend: the value of request header `name` as the backend saw it.
    pub fn echoed(&self, name: &str) -> Option<String> {
        let prefix = format!("header {}: ", name.to_ascii_lowercase());
        self.text()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
    }

    pub fn echoed_all(&self, name: &str) -> Vec<String> {
        let prefix = format!("header {}: ", name.to_ascii_lowercase());
        self.text()
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }

    /// For the echo backend: `method`, `uri`, `version`, `backend` lines.
    pub fn echoed_line(&self, key: &str) -> Option<String> {
        let prefix = format!("{key} ");
        self.text()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
    }
}

/// An upstream HTTP/1.1 server started by the test.
pub struct Backend {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    /// Serves every request with `handler`.
    pub async fn start<F, Fut>(handler: F) -> Backend
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve_on(listener, handler)
    }

    pub fn serve_on<F, Fut>(listener: TcpListener, handler: F) -> Backend
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let handler = handler.clone();
                        async move { Ok::<_, Infallible>(handler(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Backend { addr, task }
    }

    /// Answers every request with a text description of it: `backend NAME`,
    /// `method M`, `uri U`, `version V`, one `header name: value` line per
    /// header (in order), and `body-bytes N`.
    pub async fn echo(name: &'static str) -> Backend {
        Self::start(move |req: Request<Incoming>| async move {
            let mut out = format!(
                "backend {name}\nmethod {}\nuri {}\nversion {:?}\n",
                req.method(),
                req.uri(),
                req.version()
            );
            for (k, v) in req.headers() {
                out.push_str(&format!(
                    "header {}: {}\n",
                    k,
                    v.to_str().unwrap_or("<binary>")
                ));
            }
            let n = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes().len())
                .unwrap_or(0);
            out.push_str(&format!("body-bytes {n}\n"));
            Response::builder()
                .header("content-type", "text/plain")
                .body(body(out))
                .unwrap()
        })
        .await
    }
}

/// A loopback address where nothing listens (bound, then closed).
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

/// A minimal config: one TLS listener and a plain one on port 0, one upstream, one catch-all route.
pub fn simple_config(backend: SocketAddr) -> String {
    format!(
        r#"
[[listen]]
addr = "127.0.0.1:0"
tls = true

[[listen]]
addr = "127.0.0.1:0"

[[certificate]]
cert = "{{cert}}"
key = "{{key}}"

[upstream.backend]
servers = ["{backend}"]

[[route]]
name = "all"
path_prefix = "/"
upstream = "backend"
"#
    )
}

// ---------------------------------------------------------------------------
// WebSockets: an echo upstream and clients over HTTP/1.1 and HTTP/2.

use tokio_tungstenite::WebSocketStream;
pub use tokio_tungstenite::tungstenite;
use tungstenite::Message;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

/// No size limits: the tests send 16 MiB messages.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None)
}

/// What the WebSocket upstream saw.
#[derive(Debug)]
pub enum WsEvent {
    /// A handshake arrived with these headers (and this path).
    Handshake(http::HeaderMap, String),
    /// A Close frame arrived (None: no frame, the TCP connection just ended).
    Closed(Option<CloseFrame>),
    /// A Pong arrived (forwarded from the client).
    Pong,
}

/// A WebSocket echo upstream. The text message `die` makes it drop the TCP
/// connection without a Close frame. A handshake for a path starting with
/// `/refuse` is answered 403.
pub struct WsBackend {
    pub addr: SocketAddr,
    pub events: tokio::sync::mpsc::UnboundedReceiver<WsEvent>,
    /// TCP connections accepted so far.
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WsBackend {
    pub async fn start() -> WsBackend {
        use futures_util::{SinkExt, StreamExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let tx_hs = tx.clone();
                    // The error type is tungstenite's, as its callback trait requires.
                    #[allow(clippy::result_large_err)]
                    let callback = move |req: &tungstenite::handshake::server::Request,
                                         mut res: tungstenite::handshake::server::Response| {
                        let _ = tx_hs.send(WsEvent::Handshake(req.headers().clone(), req.uri().path().to_owned()));
                        if req.uri().path().starts_with("/refuse") {
                            let mut refusal = tungstenite::handshake::server::ErrorResponse::new(Some("no".into()));
                            *refusal.status_mut() = http::StatusCode::FORBIDDEN;
                            return Err(refusal);
                        }
                        let wants_chat = req
                            .headers()
                            .get("sec-websocket-protocol")
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|v| v.split(',').any(|p| p.trim() == "chat"));
                        if wants_chat {
                            res.headers_mut().insert("sec-websocket-protocol", http::HeaderValue::from_static("chat"));
                        }
                        Ok(res)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async_with_config(
                        stream,
                        callback,
                        Some(ws_config()),
                    )
                    .await
                    else {
                        return;
                    };
                    while let Some(msg) = ws.next().await {
                        match msg {
                            Ok(Message::Text(t)) if t.as_str() == "die" => return, // drop TCP, no Close
                            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                                if ws.send(m).await.is_err() {
                                    break;
                                }
                            }
                            Ok(Message::Pong(_)) => {
                                let _ = tx.send(WsEvent::Pong);
                            }
                            Ok(Message::Close(frame)) => {
                                let _ = tx.send(WsEvent::Closed(frame));
                                // tungstenite answers the close; drive it out.
                                let _ = ws.flush().await;
                                while ws.next().await.is_some() {}
                                return;
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                    let _ = tx.send(WsEvent::Closed(None));
                });
            }
        });
        WsBackend {
            addr,
            events,
            accepted,
            task,
        }
    }

    /// The next event (skipping the ones `skip` rejects), within [`WAIT`].
    pub async fn next_event(&mut self) -> WsEvent {
        within(self.events.recv()).await.expect("backend event")
    }

    /// Waits for the Close frame (or its absence) of a session.
    pub async fn next_close(&mut self) -> Option<CloseFrame> {
        loop {
            if let WsEvent::Closed(frame) = self.next_event().await {
                return frame;
            }
        }
    }

    pub async fn next_handshake(&mut self) -> (http::HeaderMap, String) {
        loop {
            if let WsEvent::Handshake(headers, path) = self.next_event().await {
                return (headers, path);
            }
        }
    }
}

pub type TlsWs = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;
pub type H2Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Opens `wss://localhost{path}` over HTTP/1.1. `headers` are added to the handshake.
pub async fn ws_h1(
    proxy: &TestProxy,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(TlsWs, http::Response<Option<Vec<u8>>>), tungstenite::Error> {
    ws_h1_at(proxy.tls_addr.unwrap(), &proxy.ca, path, headers).await
}

/// [`ws_h1`] against any TLS address whose certificate `ca` signed.
pub async fn ws_h1_at(
    addr: SocketAddr,
    ca: &TestCa,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(TlsWs, http::Response<Option<Vec<u8>>>), tungstenite::Error> {
    use tungstenite::client::IntoClientRequest;
    let connector = tokio_rustls::TlsConnector::from(ca.client_config(&[b"http/1.1"]));
    let tcp = within(TcpStream::connect(addr)).await.unwrap();
    let tls = within(connector.connect(ServerName::try_from("localhost").unwrap(), tcp))
        .await
        .unwrap();
    let mut req = format!("wss://localhost:{}{path}", addr.port()).into_client_request()?;
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    within(tokio_tungstenite::client_async_with_config(
        req,
        tls,
        Some(ws_config()),
    ))
    .await
}

/// Opens a WebSocket over HTTP/2 (RFC 8441 extended CONNECT) on `client`.
/// Returns the stream and the response head, or the response when it was not 200.
pub async fn ws_h2(
    client: &mut Client,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(H2Ws, http::response::Parts), Fetched> {
    let mut req = http::Request::builder()
        .method("CONNECT")
        .uri(format!("https://localhost{path}"))
        .header("sec-websocket-version", "13")
        .extension(hyper::ext::Protocol::from_static("websocket"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client
        .send(req.body(empty()).unwrap())
        .await
        .expect("response to CONNECT");
    if res.status() != 200 {
        let (head, body) = res.into_parts();
        let body = within(body.collect())
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(Fetched { head, body });
    }
    let (head, body) = res.into_parts();
    let upgraded = within(hyper::upgrade::on(http::Response::from_parts(
        head.clone(),
        body,
    )))
    .await
    .expect("upgrade");
    let ws =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, Some(ws_config()))
            .await;
    Ok((ws, head))
}

/// The next message that is not a Ping or Pong.
pub async fn ws_next<S>(ws: &mut WebSocketStream<S>) -> Message
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    loop {
        match within(ws.next()).await {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => return m,
            Some(Err(e)) => panic!("WebSocket error: {e}"),
            None => panic!("WebSocket ended without a Close frame (a browser would report 1006)"),
        }
    }
}

/// Reads until a Close frame arrives and returns it.
pub async fn ws_expect_close<S>(ws: &mut WebSocketStream<S>) -> CloseFrame
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match ws_next(ws).await {
            Message::Close(Some(frame)) => return frame,
            Message::Close(None) => panic!("Close without a code"),
            _ => continue,
        }
    }
}

// ---------------------------------------------------------------------------
// The real binary, for what only a process shows: its log lines and signals.

/// `ferry run` as a child process, with its stderr lines readable.
pub struct FerryProcess {
    child: std::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// The TLS listener's bound address, read from the `ready` log line.
    pub addr: SocketAddr,
}

impl FerryProcess {
    /// Starts `ferry run -c config` and waits for its `ready ... url=https://` line.
    pub async fn start(config: &std::path::Path) -> FerryProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["run", "-c", config.to_str().unwrap()])
            .env("FERRY_LOG", "info")
            .env_remove("FERRY_CONFIG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ferry binary starts");
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut process = FerryProcess {
            child,
            lines,
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        let ready = process
            .line(|l| l.contains(" ready ") && l.contains("url=https://"))
            .await;
        process.addr = ready
            .split("url=https://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .expect("an address in the ready line");
        process
    }

    /// The next log line for which `pred` holds (earlier ones are skipped).
    pub async fn line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        loop {
            let line = within(self.lines.recv())
                .await
                .expect("ferry's stderr closed");
            if pred(&line) {
                return line;
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (what `docker stop` sends).
    pub fn sigterm(&self) {
        let pid = self.child.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Waits for the process to exit.
    pub async fn wait(mut self) -> std::process::ExitStatus {
        let mut child = std::mem::replace(
            &mut self.child,
            std::process::Command::new("true").spawn().unwrap(),
        );
        within(tokio::task::spawn_blocking(move || child.wait().unwrap()))
            .await
            .unwrap()
    }
}

impl Drop for FerryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the sample `series` (name and labels) in a Prometheus text exposition.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
