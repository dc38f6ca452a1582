//! A client's broken request body is the client's failure: a bad chunk
//! line, an upload that stops before its Content-Length, an HTTP/2 stream
//! reset mid-body, a body past max_body_size. The client gets 400 (413),
//! the access log has it; the upstream server keeps its place in rotation
//! (passive health untouched, `ferry_upstream_errors_total` unchanged), and
//! the upstream connection that carried the broken upload is closed, never
//! reused. Sent over raw sockets (TCP, and TLS for HTTP/2 frames by hand).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A broken upload.
#[derive(Debug, Clone, Copy)]
enum Bad {
    /// Chunked, a valid `hello` chunk, then this chunk line.
    Chunk(&'static str, &'static [u8]),
    /// 1000 of 100000 declared bytes, then the client shuts down its write
    /// side (`half_close`) or hangs up.
    CutShort { half_close: bool },
    /// Chunked past the `/big` route's `max_body_size` (1000 bytes).
    TooLarge,
    /// HTTP/2: HEADERS, a DATA frame, then RST_STREAM(CANCEL).
    H2Reset,
}

const KINDS: &[Bad] = &[
    Bad::Chunk("zz", b"zz\r\nhello\r\n"),
    Bad::Chunk("-1", b"-1\r\n"),
    Bad::Chunk("overflow", b"fffffffffffffffff\r\n"),
    Bad::Chunk("bare-lf", b"5\nhello\r\n"),
    Bad::CutShort { half_close: true },
    Bad::CutShort { half_close: false },
    Bad::TooLarge,
    Bad::H2Reset,
];

impl Bad {
    fn name(self) -> &'static str {
        match self {
            Bad::Chunk(name, _) => name,
            Bad::CutShort { half_close: true } => "half-close",
            Bad::CutShort { half_close: false } => "hang-up",
            Bad::TooLarge => "too-large",
            Bad::H2Reset => "h2-reset",
        }
    }

    /// The status ferry answers (and logs) for it.
    fn status(self) -> u16 {
        match self {
            Bad::TooLarge => 413,
            _ => 400,
        }
    }

    fn path(self, n: usize) -> String {
        let route = if matches!(self, Bad::TooLarge) {
            "big"
        } else {
            "upload"
        };
        format!("/{route}/{}/{n}", self.name())
    }

    /// Sends the broken upload; returns what the client read back (empty
    /// when it hung up or reset).
    async fn send(self, proxy: &TestProxy, backends: &[&ScriptedBackend], n: usize) -> String {
        let path = self.path(n);
        match self {
            Bad::Chunk(_, line) => {
                let mut tcp = connect(proxy).await;
                let head = format!(
                    "POST {path} HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n"
                );
                tcp.write_all(head.as_bytes()).await.unwrap();
                tcp.write_all(line).await.unwrap();
                read_answer(&mut tcp).await
            }
            Bad::CutShort { half_close } => {
                let mut tcp = connect(proxy).await;
                let head = format!(
                    "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100000\r\n\r\n"
                );
                tcp.write_all(head.as_bytes()).await.unwrap();
                tcp.write_all(&[b'x'; 1000]).await.unwrap();
                if half_close {
                    tcp.shutdown().await.unwrap();
                    read_answer(&mut tcp).await
                } else {
                    drop(tcp);
                    String::new()
                }
            }
            Bad::TooLarge => {
                let mut tcp = connect(proxy).await;
                let head = format!(
                    "POST {path} HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n"
                );
                tcp.write_all(head.as_bytes()).await.unwrap();
                for _ in 0..2 {
                    tcp.write_all(b"3e8\r\n").await.unwrap();
                    tcp.write_all(&[b'x'; 1000]).await.unwrap();
                    tcp.write_all(b"\r\n").await.unwrap();
                }
                tcp.write_all(b"0\r\n\r\n").await.unwrap();
                read_answer(&mut tcp).await
            }
            Bad::H2Reset => {
                let tcp = connect_tls(proxy).await;
                let (mut h2, conn) = within(h2::client::handshake(tcp)).await.unwrap();
                let conn = tokio::spawn(conn);
                let req = http::Request::post(format!("https://localhost{path}"))
                    .body(())
                    .unwrap();
                let (response, mut stream) = h2.send_request(req, false).unwrap();
                stream
                    .send_data(Bytes::from_static(b"hello"), false)
                    .unwrap();
                // Mid-body for real: the upstream has the start of it.
                within(async {
                    while !backends
                        .iter()
                        .flat_map(|b| b.connections())
                        .any(|c| c.text().contains(&path) && c.text().ends_with("hello\r\n"))
                    {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
                .await;
                stream.send_reset(h2::Reason::CANCEL);
                let _ = within(response).await;
                drop(h2);
                conn.abort();
                String::new()
            }
        }
    }
}

async fn connect(proxy: &TestProxy) -> TcpStream {
    within(TcpStream::connect(proxy.plain_addr.unwrap()))
        .await
        .unwrap()
}

async fn connect_tls(proxy: &TestProxy) -> tokio_rustls::client::TlsStream<TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(proxy.ca.client_config(&[b"h2"]));
    let tcp = within(TcpStream::connect(proxy.tls_addr.unwrap()))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    within(connector.connect(name, tcp)).await.unwrap()
}

/// ferry's answer: until a whole response (with its Content-Length) came,
/// or ferry closed the connection.
async fn read_answer(tcp: &mut TcpStream) -> String {
    let mut out = Vec::new();
    within(async {
        let mut chunk = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&out).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end].lines().find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .and_then(|v| v.trim().parse::<usize>().ok())
                });
                if length.is_some_and(|n| out.len() >= end + 4 + n) {
                    return;
                }
            }
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// An upstream server that answers each whole request with `backend NAME`.
async fn server(name: &'static str) -> ScriptedBackend {
    ScriptedBackend::start(move |mut s: ScriptedConn| async move {
        while s.read_request().await.is_some() {
            s.respond(&format!("backend {name}")).await;
        }
        // A request that never ended: stay until ferry closes.
        s.wait_for_close().await;
    })
    .await
}

/// Which backend a normal GET on a new connection reached.
async fn normal_get(proxy: &TestProxy) -> String {
    let mut c = Client::plain(proxy.plain_addr.unwrap()).await;
    let res = c.get("localhost", "/normal").await;
    assert_eq!(res.status(), 200, "{}", res.text());
    res.text().to_owned()
}

/// The connection of `backends` that received the head of `path`, and the
/// bytes it received from that head on.
fn carrier(backends: &[&ScriptedBackend], path: &str) -> Option<(ConnLog, String)> {
    let line = format!("POST {path} HTTP/1.1\r\n");
    backends.iter().flat_map(|b| b.connections()).find_map(|c| {
        let text = c.text();
        let at = text.find(&line)?;
        Some((c.clone(), text[at..].to_owned()))
    })
}

#[tokio::test]
async fn broken_uploads_never_take_a_server_out_of_rotation() {
    let (a, b) = (server("a").await, server("b").await);
    let backends = [&a, &b];
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let toml = ProxyToml::new()
        .server(&format!(
            "access_log = {{ format = \"json\", path = \"{}\" }}",
            log.display()
        ))
        .admin()
        .tls_listener()
        .plain_listener()
        .upstream_with(
            "backend",
            &[a.addr, b.addr],
            "max_fails = 1\nfail_timeout = \"10m\"",
        )
        .route_with("big", "/big/", "backend", "max_body_size = 1000")
        .route("all", "/", "backend")
        .build();
    let proxy = TestProxy::start(&toml).await;

    for &bad in KINDS {
        for n in 0..3 {
            let path = bad.path(n);
            let answer = bad.send(&proxy, &backends, n).await;
            // The client hears its 400 (413) unless it hung up or reset.
            if !matches!(bad, Bad::CutShort { half_close: false } | Bad::H2Reset) {
                let status = format!("HTTP/1.1 {} ", bad.status());
                assert!(answer.starts_with(&status), "{path}: {answer}");
            }
            // The upstream connection that carried it is closed by ferry,
            // with nothing after the broken body: no end chunk, no next request.
            within(async {
                loop {
                    if carrier(&backends, &path).is_some_and(|(conn, _)| conn.peer_closed) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
            let (_, after) = carrier(&backends, &path).unwrap();
            assert_eq!(
                after.matches(" HTTP/1.1\r\n").count(),
                1,
                "{path} reused: {after:?}"
            );
            assert!(
                !after.ends_with("0\r\n\r\n"),
                "{path}: the broken body was ended: {after:?}"
            );
            // Both servers still in rotation: two normal requests reach both.
            let mut reached = [normal_get(&proxy).await, normal_get(&proxy).await];
            reached.sort();
            assert_eq!(reached, ["backend a", "backend b"], "after {path}");
        }
    }

    let (_, metrics) = proxy.admin("GET", "/metrics").await;
    let errors: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("ferry_upstream_errors_total{"))
        .collect();
    assert!(
        errors.is_empty(),
        "counted against the upstream: {errors:?}"
    );

    // The access log blames the client, once per broken HTTP/1.1 upload.
    let lines: Vec<serde_json::Value> = within(async {
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let h1 = KINDS.iter().filter(|k| !matches!(k, Bad::H2Reset)).count();
            let broken = lines
                .iter()
                .filter(|l| {
                    l["path"]
                        .as_str()
                        .is_some_and(|p| !p.starts_with("/normal"))
                })
                .count();
            if broken >= 3 * h1 {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    for bad in KINDS.iter().filter(|k| !matches!(k, Bad::H2Reset)) {
        for n in 0..3 {
            let path = bad.path(n);
            let line = lines
                .iter()
                .find(|l| l["path"] == path.as_str())
                .unwrap_or_else(|| panic!("no access log line for {path}"));
            assert_eq!(line["status"], bad.status(), "{line}");
            let error = line["error"].as_str().unwrap();
            let expected = match bad {
                Bad::TooLarge => {
                    "the request body is larger than this route's max_body_size (1000 bytes)"
                }
                _ => "bad request: request body ended early",
            };
            assert_eq!(error, expected, "{line}");
        }
    }
}
