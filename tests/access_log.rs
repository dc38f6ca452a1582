//! Every request leaves one access-log record and one count: requests
//! hyper's HTTP/1.1 parser refuses (400, 414, 431), requests the client
//! abandons (HTTP/2 stream resets before and during the response), and
//! ordinary ones — and every JSON record of a kind has the same keys.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Response;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A ferry with a JSON access log in a temp file, the admin listener, a TLS
/// and a plain listener, and route `all` for localhost only (another host
/// gets a 404 with no route).
struct Logged {
    proxy: TestProxy,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

async fn start(backend: SocketAddr) -> Logged {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let server = format!(
        "access_log = {{ format = \"json\", path = \"{}\" }}",
        log.display()
    );
    let toml = ProxyToml::new()
        .admin()
        .server(&server)
        // Room for the 70 KB URI of the 414 case (the default is 16 KiB).
        .server(r#"max_header_size = "128KiB""#)
        .tls_listener()
        .plain_listener()
        .upstream("backend", &[backend])
        .route_with("all", "/", "backend", r#"hosts = ["localhost"]"#)
        .build();
    let proxy = TestProxy::start(&toml).await;
    Logged {
        proxy,
        log,
        _dir: dir,
    }
}

/// The records in `log` once `done` holds for them (the writer batches, so
/// the file is read until it does).
async fn records(
    log: &Path,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    within(async {
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect();
            if done(&lines) {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

fn keys(record: &serde_json::Value) -> BTreeSet<String> {
    record
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {record}"))
        .keys()
        .cloned()
        .collect()
}

/// Writes `head` to the plain listener and reads the answer until ferry
/// closes. Writing may fail once ferry has answered and closed (a head
/// larger than it reads); the answer is read all the same.
async fn raw(addr: SocketAddr, head: Vec<u8>) -> String {
    let stream = within(TcpStream::connect(addr)).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&head).await;
        let _ = wr.flush().await;
        wr
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    within(async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    String::from_utf8_lossy(&answer).into_owned()
}

async fn metric(proxy: &TestProxy, series: &str) -> Option<f64> {
    let (status, text) = proxy.admin("GET", "/metrics").await;
    assert_eq!(status, 200);
    sample(&text, series)
}

const UNROUTED_4XX: &str = "ferry_requests_total{route=\"-\",status_class=\"4xx\"}";

#[tokio::test]
async fn requests_the_parser_refuses_get_a_record_and_a_count() {
    let backend = Backend::echo("b").await;
    let ferry = start(backend.addr).await;
    let plain = ferry.proxy.plain_addr.unwrap();
    let listener = plain.to_string();
    assert_eq!(metric(&ferry.proxy, UNROUTED_4XX).await, Some(0.0));

    // A request line that is no request line.
    let answer = raw(plain, b"GARBAGE\x01\r\n\r\n".to_vec()).await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    // A URI over hyper's 64 KiB limit.
    let long = format!(
        "GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(70_000)
    );
    let answer = raw(plain, long.into_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 414 "), "{answer}");
    // A head of 512 KiB: over `server.max_header_size` (and hyper's read buffer).
    let mut big = b"GET / HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    for i in 0..64 {
        big.extend_from_slice(format!("x-filler-{i}: {}\r\n", "f".repeat(8 * 1024)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    let answer = raw(plain, big).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");

    let lines = records(&ferry.log, |l| l.len() >= 3).await;
    assert_eq!(lines.len(), 3, "one record per refused request: {lines:?}");
    for (record, status) in lines.iter().zip([400, 414, 431]) {
        assert_eq!(record["type"], "request", "{record}");
        assert_eq!(record["status"], status, "{record}");
        assert_eq!(record["listener"], listener.as_str(), "{record}");
        assert!(
            record["client"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{record}"
        );
        assert!(record["method"].is_null() && record["path"].is_null());
        assert_eq!(record["http"], "HTTP/1.1");
        assert_eq!(record["aborted"], false);
        let error = record["error"].as_str().unwrap();
        assert!(error.contains("HTTP/1.1 parser"), "{record}");
        assert!(!error.contains("filler"), "no request bytes in the log");
    }
    assert!(lines[1]["error"].as_str().unwrap().contains("URI too long"));
    assert!(lines[2]["error"].as_str().unwrap().contains("too large"));
    assert_eq!(metric(&ferry.proxy, UNROUTED_4XX).await, Some(3.0));

    // The connection that follows is served as usual.
    let mut c = Client::plain(plain).await;
    assert_eq!(c.get("localhost", "/").await.status(), 200);
}

/// A backend that answers `/stream` with a head and one chunk, then nothing
/// more, `/stall` never, and anything else with `ok`; each request it sees
/// is reported on `arrived`.
async fn streaming_backend() -> (Backend, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (tx, arrived) = tokio::sync::mpsc::unbounded_channel();
    let backend = Backend::start(move |req: http::Request<hyper::body::Incoming>| {
        let tx = tx.clone();
        async move {
            let path = req.uri().path().to_owned();
            let _ = tx.send(path.clone());
            match path.as_str() {
                "/stream" => {
                    let first = futures_util::stream::once(async {
                        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(
                            Bytes::from_static(b"first chunk\n"),
                        ))
                    });
                    let rest = futures_util::stream::pending();
                    let stream = futures_util::StreamExt::chain(first, rest);
                    Response::new(StreamBody::new(stream).boxed())
                }
                "/stall" => futures_util::future::pending().await,
                _ => Response::new(body("ok\n")),
            }
        }
    })
    .await;
    (backend, arrived)
}

#[tokio::test]
async fn http2_streams_the_client_resets_are_logged_once_as_aborted() {
    let (backend, mut arrived) = streaming_backend().await;
    let ferry = start(backend.addr).await;
    let mut c = ferry.proxy.client(Proto::H2).await;

    // Reset mid-response: the head and a first chunk arrived, then the
    // client drops the body (hyper sends RST_STREAM(CANCEL)).
    let res = c
        .send(
            request("GET", "localhost", "/stream", true)
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut res_body = res.into_body();
    let frame = within(res_body.frame()).await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "first chunk\n");
    drop(res_body);

    // Reset before the response: the backend has the request and never
    // answers; the client gives up.
    let mut sender = match &c {
        Client::H2(s) => s.clone(),
        Client::H1(_) => unreachable!(),
    };
    let waiting = tokio::spawn(async move {
        let req = request("GET", "localhost", "/stall", true)
            .body(empty())
            .unwrap();
        sender.send_request(req).await
    });
    assert_eq!(within(arrived.recv()).await.as_deref(), Some("/stream"));
    assert_eq!(within(arrived.recv()).await.as_deref(), Some("/stall"));
    waiting.abort();

    let lines = records(&ferry.log, |l| l.len() >= 2).await;
    let stream = lines.iter().find(|l| l["path"] == "/stream").unwrap();
    assert_eq!(stream["status"], 200, "{stream}");
    assert_eq!(stream["aborted"], true, "{stream}");
    assert_eq!(stream["bytes_out"], 12, "{stream}");
    assert!(
        stream["error"].is_null(),
        "not an upstream failure: {stream}"
    );
    let stall = lines.iter().find(|l| l["path"] == "/stall").unwrap();
    assert!(stall["status"].is_null(), "no answer was sent: {stall}");
    assert_eq!(stall["aborted"], true, "{stall}");
    assert_eq!(stall["route"], "all");
    assert_eq!(stall["http"], "HTTP/2.0");

    // Once each: a served request after them is the third and last record.
    assert_eq!(c.get("localhost", "/ok").await.status(), 200);
    let lines = records(&ferry.log, |l| l.iter().any(|l| l["path"] == "/ok")).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[2]["aborted"], false);

    let all = "ferry_requests_total{route=\"all\",status_class=";
    assert_eq!(
        metric(&ferry.proxy, &format!("{all}\"aborted\"}}")).await,
        Some(1.0)
    );
    assert_eq!(
        metric(&ferry.proxy, &format!("{all}\"2xx\"}}")).await,
        Some(2.0)
    );
    assert_eq!(
        metric(&ferry.proxy, "ferry_requests_aborted_total{route=\"all\"}").await,
        Some(2.0)
    );
}

#[tokio::test]
async fn every_request_record_has_the_same_keys() {
    let (backend, _arrived) = streaming_backend().await;
    let ferry = start(backend.addr).await;
    let plain = ferry.proxy.plain_addr.unwrap();

    let mut h2 = ferry.proxy.client(Proto::H2).await;
    assert_eq!(h2.get("localhost", "/ok").await.status(), 200);
    assert_eq!(h2.get("other.test", "/nothing").await.status(), 404);
    let mut h1 = Client::plain(plain).await;
    assert_eq!(h1.get("localhost", "/ok?q=1").await.status(), 200);
    let head = request("HEAD", "localhost", "/ok", false)
        .body(empty())
        .unwrap();
    assert_eq!(h1.fetch(head).await.status(), 200);
    // No Host at all: 400 before routing.
    let answer = raw(
        plain,
        b"GET /nohost HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let answer = raw(plain, b"\x16\x03\x01garbage\r\n\r\n".to_vec()).await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");

    let lines = records(&ferry.log, |l| l.len() >= 6).await;
    let ok = &lines[0];
    let not_found = lines.iter().find(|l| l["status"] == 404).unwrap();
    assert!(not_found["route"].is_null(), "{not_found}");
    assert!(not_found["upstream"].is_null(), "{not_found}");
    assert_eq!(
        keys(not_found),
        keys(ok),
        "a 404 with no route has the keys of a 200"
    );
    for record in &lines {
        assert_eq!(keys(record), keys(ok), "{record} vs {ok}");
        assert_eq!(record["aborted"], false, "{record}");
    }
    assert!(lines.iter().all(|l| l["query"].is_null()), "query is off");
    let expected: BTreeSet<String> = [
        "time",
        "type",
        "client",
        "listener",
        "method",
        "host",
        "path",
        "query",
        "route",
        "upstream",
        "upstream_addr",
        "status",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "upstream_ms",
        "tls",
        "http",
        "aborted",
        "error",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(keys(ok), expected);
}
