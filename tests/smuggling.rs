//! Request smuggling and HTTP/2 abuse, by raw bytes over real TLS.
//!
//! ferry re-frames every request it forwards (hyper parses the client's
//! message, ferry writes a new one upstream), so a desync needs ferry's parser
//! to disagree with itself. These tests pin the framings an attacker would try
//! and assert what the upstream received: never a second, smuggled request.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// What the upstream saw: one `METHOD PATH body=N` line per request.
type Seen = Arc<Mutex<Vec<String>>>;

async fn recording_backend() -> (Backend, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let backend = Backend::start(move |req: Request<Incoming>| {
        let log = log.clone();
        async move {
            let line = format!("{} {}", req.method(), req.uri());
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            let line = match body {
                Ok(b) => format!("{line} body={}", String::from_utf8_lossy(&b)),
                Err(e) => format!("{line} body-error={e}"),
            };
            log.lock().unwrap().push(line);
            Response::new(body_of("ok"))
        }
    })
    .await;
    (backend, seen)
}

fn body_of(s: &'static str) -> TestBody {
    body(s)
}

async fn start() -> (TestProxy, Seen, Backend) {
    let (backend, seen) = recording_backend().await;
    let proxy = TestProxy::start(&ProxyToml::simple(backend.addr).build()).await;
    (proxy, seen, backend)
}

async fn tls(proxy: &TestProxy, alpn: &[u8]) -> TlsStream<TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(proxy.ca.client_config(&[alpn]));
    let tcp = within(TcpStream::connect(proxy.tls_addr.unwrap()))
        .await
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    within(connector.connect(name, tcp)).await.unwrap()
}

/// Writes `raw`, then reads until ferry closes the connection.
async fn exchange(proxy: &TestProxy, raw: &str) -> String {
    let mut stream = tls(proxy, b"http/1.1").await;
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    // A reset or missing close_notify after the response is fine: the bytes are what count.
    let _ = within(stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status codes of the responses in `response`, in order (bodies here
/// are short and never contain a status line).
fn statuses(response: &str) -> Vec<&str> {
    response
        .match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| response.get(at + 9..at + 12))
        .collect()
}

/// A normal request on a new connection still works after the attack.
async fn still_serves(proxy: &TestProxy) {
    let reply = exchange(
        proxy,
        "GET /after HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&reply), ["200"], "{reply}");
}

#[tokio::test]
async fn content_length_with_transfer_encoding_uses_chunked_and_closes() {
    let (proxy, seen, _backend) = start().await;
    // CL.TE: a front end trusting Content-Length would pass "0\r\n\r\nGET /smuggled…" as body.
    let reply = exchange(
        &proxy,
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 40\r\n\
         Transfer-Encoding: chunked\r\n\r\n\
         0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    // RFC 9112 §6.3: chunked wins, the connection closes after the response,
    // so the trailing bytes are never read as a request.
    assert_eq!(statuses(&reply), ["200"], "{reply}");
    assert_eq!(*seen.lock().unwrap(), ["POST /upload body="]);
    still_serves(&proxy).await;
    assert!(!seen.lock().unwrap().iter().any(|l| l.contains("smuggled")));
}

#[tokio::test]
async fn obfuscated_or_conflicting_framing_is_refused_and_nothing_reaches_the_upstream() {
    let (proxy, seen, _backend) = start().await;
    let cases = [
        // TE.CL with a transfer coding hyper does not know.
        "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        // chunked not last.
        "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        // Two different lengths.
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        // A signed length.
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: +4\r\n\r\nabcd",
        // Whitespace before the colon (RFC 9112 §5.1: must be rejected).
        "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        // Obsolete line folding.
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\n  folded\r\n\r\n",
        // HTTP/1.0 with chunked (not defined before 1.1).
        "POST / HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    for raw in cases {
        let reply = exchange(&proxy, raw).await;
        let got = statuses(&reply);
        assert_eq!(got, ["400"], "expected a 400 for {raw:?}, got {reply}");
        assert!(
            seen.lock().unwrap().is_empty(),
            "{raw:?} reached the upstream: {:?}",
            seen.lock().unwrap()
        );
    }
    still_serves(&proxy).await;
}

#[tokio::test]
async fn pipelined_requests_are_forwarded_one_by_one_in_order() {
    let (proxy, seen, _backend) = start().await;
    let reply = exchange(
        &proxy,
        "POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nxyz\
         GET /b HTTP/1.1\r\nHost: localhost\r\n\r\n\
         POST /c HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         2\r\nhi\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&reply), ["200", "200", "200"], "{reply}");
    assert_eq!(
        *seen.lock().unwrap(),
        ["POST /a body=xyz", "GET /b body=", "POST /c body=hi"]
    );
}

// --- HTTP/2, frame by frame -------------------------------------------------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// An HPACK block for `GET https://localhost/` (static table entries and one literal).
fn get_block() -> Vec<u8> {
    let mut b = vec![0x82, 0x87, 0x84]; // :method GET, :scheme https, :path /
    b.push(0x01); // :authority, literal without indexing (name index 1)
    b.push(9);
    b.extend_from_slice(b"localhost");
    b
}

/// Reads frames until GOAWAY or the end of the connection; returns the
/// GOAWAY's error code, if one came.
async fn goaway_or_close(stream: &mut TlsStream<TcpStream>) -> Option<u32> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            if buf[3] == GOAWAY && len >= 8 {
                return Some(u32::from_be_bytes(buf[13..17].try_into().unwrap()));
            }
            buf.drain(..9 + len);
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test]
async fn an_endless_continuation_sequence_is_cut_off() {
    let (proxy, seen, _backend) = start().await;
    let mut stream = tls(&proxy, b"h2").await;
    stream.write_all(PREFACE).await.unwrap();
    stream.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    stream
        .write_all(&frame(HEADERS, 0, 1, &get_block()))
        .await
        .unwrap();
    // Each CONTINUATION adds a 1 KiB literal header; ferry's HTTP/2 limit is
    // 16 KiB for the whole list. Stop writing at 4 MiB: by then the
    // connection must have been closed.
    let mut literal = vec![0x00, 0x03, b'x', b'-', b'a', 0x7f, 0x81, 0x07];
    literal.extend(std::iter::repeat_n(b'v', 1024)); // 0x7f 0x81 0x07 = 1024
    let mut sent = 0usize;
    let cut = within(async {
        while sent < 4 << 20 {
            if stream
                .write_all(&frame(CONTINUATION, 0, 1, &literal))
                .await
                .is_err()
            {
                return true;
            }
            sent += literal.len();
        }
        false
    })
    .await;
    let code = if cut {
        None
    } else {
        within(goaway_or_close(&mut stream)).await
    };
    assert!(
        cut || code.is_some(),
        "ferry read {sent} bytes of CONTINUATION without closing the connection"
    );
    assert!(seen.lock().unwrap().is_empty());
    still_serves(&proxy).await;
}

#[tokio::test]
async fn rapid_reset_is_answered_with_goaway() {
    let (proxy, seen, _backend) = start().await;
    let mut stream = tls(&proxy, b"h2").await;
    stream.write_all(PREFACE).await.unwrap();
    stream.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    // CVE-2023-44487: open and cancel streams as fast as possible.
    let streams = 5000u32;
    let mut burst = Vec::new();
    for i in 0..streams {
        let id = 1 + 2 * i;
        burst.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &get_block()));
        burst.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes())); // CANCEL
    }
    // The write may fail part-way when ferry closes the connection: that is the point.
    let _ = within(stream.write_all(&burst)).await;
    let code = within(goaway_or_close(&mut stream)).await;
    let reached = seen.lock().unwrap().len();
    assert!(
        code.is_some() || reached < streams as usize,
        "all {streams} reset streams were served without a GOAWAY"
    );
    assert!(
        reached < streams as usize / 2,
        "{reached} of {streams} cancelled requests reached the upstream"
    );
    still_serves(&proxy).await;
}
