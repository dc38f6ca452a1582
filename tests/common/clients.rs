//! Real HTTP clients (HTTP/1.1 or HTTP/2, over TLS or plain TCP), request
//! and body helpers, responses read whole, and the metrics `sample` parser.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::ca::TestCa;
use super::within;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
}

impl Proto {
    /// The ALPN list a client of this protocol offers.
    pub fn alpn(self) -> &'static [&'static [u8]] {
        match self {
            Proto::H1 => &[b"http/1.1"],
            Proto::H2 => &[b"h2"],
        }
    }
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
        Self::tls_with(addr, ca.client_config(proto.alpn()), proto, sni).await
    }

    /// TLS over a connection the test opened (and perhaps wrote a PROXY protocol header on).
    pub async fn tls_over(tcp: TcpStream, ca: &TestCa, proto: Proto, sni: &str) -> Client {
        Self::tls_with_over(tcp, ca.client_config(proto.alpn()), proto, sni).await
    }

    /// [`tls`](Self::tls) with a client config of the test's own (a client
    /// certificate, say); it must offer `proto`'s ALPN.
    pub async fn tls_with(
        addr: SocketAddr,
        config: std::sync::Arc<rustls::ClientConfig>,
        proto: Proto,
        sni: &str,
    ) -> Client {
        let tcp = within(TcpStream::connect(addr)).await.unwrap();
        Self::tls_with_over(tcp, config, proto, sni).await
    }

    async fn tls_with_over(
        tcp: TcpStream,
        config: std::sync::Arc<rustls::ClientConfig>,
        proto: Proto,
        sni: &str,
    ) -> Client {
        let alpn = proto.alpn();
        let connector = tokio_rustls::TlsConnector::from(config);
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
        Self::plain_over(tcp).await
    }

    /// HTTP/1.1 over a connection the test opened (and perhaps wrote a PROXY protocol header on).
    pub async fn plain_over(tcp: TcpStream) -> Client {
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

/// The value of the sample `series` (name and labels) in a Prometheus text exposition.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
