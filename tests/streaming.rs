//! Bodies stream through without being buffered whole, in both directions,
//! over HTTP/1.1 and HTTP/2; a slow upload is not mistaken for a slow upstream;
//! trailers survive.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

const CHUNK: usize = 64 * 1024;

/// Resident set size of this process (test + ferry + backend), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

/// A body of `total` bytes made lazily, chunk by chunk.
fn generated(total: usize) -> TestBody {
    let chunks =
        (0..total.div_ceil(CHUNK)).map(move |i| {
            let len = CHUNK.min(total - i * CHUNK);
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(Bytes::from(
                vec![(i % 251) as u8; len],
            )))
        });
    BodyExt::boxed(StreamBody::new(futures_util::stream::iter(chunks)))
}

/// Counts a body's bytes without keeping them.
async fn drain(mut body: hyper::body::Incoming) -> u64 {
    let mut n = 0u64;
    while let Some(frame) = within(body.frame()).await {
        if let Ok(data) = frame.unwrap().into_data() {
            n += data.len() as u64;
        }
    }
    n
}

#[tokio::test]
async fn large_bodies_stream_both_ways_with_bounded_memory() {
    const SIZE: usize = 256 * 1024 * 1024;
    // Upload: the backend counts what arrives. Download: it generates SIZE bytes.
    let backend = Backend::start(|req: http::Request<hyper::body::Incoming>| async move {
        if req.uri().path() == "/download" {
            return Response::new(generated(SIZE));
        }
        let n = drain(req.into_body()).await;
        Response::new(body(n.to_string()))
    })
    .await;
    let proxy = TestProxy::start(&simple_config(backend.addr)).await;
    let before = rss();
    for proto in [Proto::H1, Proto::H2] {
        let mut c = proxy.client(proto).await;
        let req = request("POST", "localhost", "/upload", proto == Proto::H2)
            .body(generated(SIZE))
            .unwrap();
        let res = c.fetch(req).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.text(), SIZE.to_string(), "{proto:?} upload");

        let res = c
            .send(
                request("GET", "localhost", "/download", proto == Proto::H2)
                    .body(empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            drain(res.into_body()).await,
            SIZE as u64,
            "{proto:?} download"
        );
    }
    let grown = rss().saturating_sub(before);
    // 1 GiB went through; buffering even one body whole would add 256 MiB.
    assert!(
        grown < 64 * 1024 * 1024,
        "RSS grew by {} MiB",
        grown / (1024 * 1024)
    );
}

#[tokio::test]
async fn a_slow_upload_is_not_an_upstream_timeout() {
    let backend = Backend::start(|req: http::Request<hyper::body::Incoming>| async move {
        let n = drain(req.into_body()).await;
        Response::new(body(n.to_string()))
    })
    .await;
    // read_timeout 300ms; the client takes ~1s to send its body, 100ms a chunk.
    let toml = ProxyToml::simple_with(backend.addr, r#"read_timeout = "300ms""#).build();
    let proxy = TestProxy::start(&toml).await;
    let mut c = proxy.client(Proto::H1).await;
    let chunks = futures_util::stream::iter(0..10).then(|_| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(Bytes::from_static(
            b"0123456789",
        )))
    });
    let req = request("POST", "localhost", "/", false)
        .body(BodyExt::boxed(StreamBody::new(chunks)))
        .unwrap();
    let res = c.fetch(req).await;
    assert_eq!(res.status(), 200, "{}", res.text());
    assert_eq!(res.text(), "100");
}

#[tokio::test]
async fn response_trailers_reach_http2_clients() {
    let backend = Backend::start(|_req| async {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let frames = vec![
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(Bytes::from_static(
                b"payload",
            ))),
            Ok(Frame::trailers(trailers)),
        ];
        Response::builder()
            .header("trailer", "grpc-status")
            .body(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(
                frames,
            ))))
            .unwrap()
    })
    .await;
    let proxy = TestProxy::start(&simple_config(backend.addr)).await;
    let mut c = proxy.client(Proto::H2).await;
    let req = request("GET", "localhost", "/", true)
        .header("te", "trailers")
        .body(empty())
        .unwrap();
    let res = c.send(req).await.unwrap();
    let collected = within(res.into_body().collect()).await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers arrived");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert_eq!(&collected.to_bytes()[..], b"payload");
}

#[tokio::test]
async fn bodies_over_max_body_size_get_413() {
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    let backend = Backend::start(move |req: http::Request<hyper::body::Incoming>| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            let n = drain(req.into_body()).await;
            Response::new(body(n.to_string()))
        }
    })
    .await;
    let toml = ProxyToml::simple_with(backend.addr, r#"max_body_size = "1KB""#).build();
    let proxy = TestProxy::start(&toml).await;
    for proto in [Proto::H1, Proto::H2] {
        let mut c = proxy.client(proto).await;
        let h2 = proto == Proto::H2;
        // Declared too large: refused before the upstream is contacted.
        let before = hits.load(std::sync::atomic::Ordering::SeqCst);
        let req = request("POST", "localhost", "/", h2)
            .header("content-length", "2000")
            .body(body(vec![b'x'; 2000]))
            .unwrap();
        let res = c.fetch(req).await;
        assert_eq!(res.status(), 413, "{proto:?}");
        assert_eq!(res.text(), "413 request body too large\n");
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            before,
            "{proto:?}: the upstream was contacted"
        );
        // Streamed without a length: cut off once it passes the limit.
        let mut c = proxy.client(proto).await;
        let res = c
            .fetch(
                request("POST", "localhost", "/", h2)
                    .body(generated(5_000))
                    .unwrap(),
            )
            .await;
        assert_eq!(res.status(), 413, "{proto:?}");
        // Within the limit: through.
        let mut c = proxy.client(proto).await;
        let res = c
            .fetch(
                request("POST", "localhost", "/", h2)
                    .body(generated(1_000))
                    .unwrap(),
            )
            .await;
        assert_eq!(res.status(), 200, "{proto:?}");
        assert_eq!(res.text(), "1000");
    }
}
