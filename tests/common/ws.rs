//! WebSockets: an echo upstream that reports what it saw, and clients over
//! HTTP/1.1 and HTTP/2 (RFC 8441).

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
pub use tokio_tungstenite::tungstenite;
use tungstenite::Message;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::ca::TestCa;
use super::clients::{Client, Fetched, empty};
use super::proxy::TestProxy;
use super::within;

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

    /// The next event, within [`WAIT`](super::WAIT).
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
