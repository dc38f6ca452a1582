//! `compress = true`: responses compressed by the client's Accept-Encoding
//! (gzip, br, zstd) over real TLS HTTP/1.1 and HTTP/2 against a real
//! upstream, the cases that must stay untouched, and streaming: each event an
//! upstream writes is decodable by the client before the next one is written.

mod common;

use std::io::Read;

use bytes::Bytes;
use common::tungstenite::Message;
use common::*;
use futures_util::SinkExt;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::mpsc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A JSON body of about 8 KiB, as an API sends it.
fn json() -> String {
    let items: Vec<String> = (0..120)
        .map(|i| format!(r#"{{"id":{i},"name":"item {i}","active":{}}}"#, i % 3 == 0))
        .collect();
    format!(r#"{{"items":[{}]}}"#, items.join(","))
}

/// One upstream handing each streamed response's sender to the test.
struct Upstream {
    backend: Backend,
    /// A `/stream/...` request's body: the test writes it, one piece at a time.
    streams: mpsc::UnboundedReceiver<mpsc::Sender<Bytes>>,
}

async fn upstream() -> Upstream {
    let (streams_tx, streams) = mpsc::unbounded_channel();
    let backend = Backend::start(move |req: Request<Incoming>| {
        let streams_tx = streams_tx.clone();
        async move {
            // Route `plain` (no compression) reaches the same answers.
            let path = req.uri().path();
            let path = path.strip_prefix("/plain").unwrap_or(path).to_owned();
            let res = Response::builder();
            let (res, bytes) = match path.as_str() {
                "/json" => (res.header("content-type", "application/json"), json()),
                "/small" => (res.header("content-type", "text/plain"), "x".repeat(512)),
                "/png" => (res.header("content-type", "image/png"), json()),
                "/encoded" => (
                    res.header("content-type", "application/json")
                        .header("content-encoding", "gzip"),
                    json(),
                ),
                "/no-transform" => (
                    res.header("content-type", "application/json")
                        .header("cache-control", "public, no-transform"),
                    json(),
                ),
                "/etag" => (
                    res.header("content-type", "application/json")
                        .header("etag", "\"v1\"")
                        .header("vary", "Origin"),
                    json(),
                ),
                "/204" => (
                    res.status(204).header("content-type", "application/json"),
                    String::new(),
                ),
                "/304" => (
                    res.status(304)
                        .header("content-type", "application/json")
                        .header("etag", "\"v1\""),
                    String::new(),
                ),
                "/206" => (
                    res.status(206)
                        .header("content-type", "application/json")
                        .header("content-range", "bytes 0-1999/9999"),
                    json()[..2000].to_owned(),
                ),
                _ if path.starts_with("/stream/") => {
                    let content_type = if path.ends_with("/sse") {
                        "text/event-stream"
                    } else {
                        "application/json"
                    };
                    let (tx, rx) = mpsc::channel::<Bytes>(1);
                    streams_tx.send(tx).unwrap();
                    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
                        let bytes = rx.recv().await?;
                        Some((Ok::<_, BoxError>(Frame::data(bytes)), rx))
                    });
                    return Response::builder()
                        .header("content-type", content_type)
                        .body(BodyExt::boxed(StreamBody::new(frames)))
                        .unwrap();
                }
                _ => (res.status(404), String::new()),
            };
            res.body(body(bytes)).unwrap()
        }
    })
    .await;
    Upstream { backend, streams }
}

/// A TLS listener, route `api` with `compress = true` (and a WebSocket
/// upstream under `/ws`), and route `plain` without.
async fn proxy(upstream: &Upstream, ws: Option<&WsBackend>) -> TestProxy {
    let mut toml = ProxyToml::new()
        .tls_listener()
        .upstream("backend", &[upstream.backend.addr]);
    if let Some(ws) = ws {
        toml = toml
            .upstream("ws", &[ws.addr])
            .route_with("ws", "/ws", "ws", "compress = true");
    }
    let toml = toml.route("plain", "/plain", "backend").route_with(
        "api",
        "/",
        "backend",
        "compress = true",
    );
    TestProxy::start(&toml.build()).await
}

async fn get(c: &mut Client, path: &str, headers: &[(&str, &str)]) -> Fetched {
    get_as(c, "GET", path, headers).await
}

async fn get_as(c: &mut Client, method: &str, path: &str, headers: &[(&str, &str)]) -> Fetched {
    let mut req = request(method, "localhost", path, c.is_h2());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    c.fetch(req.body(empty()).unwrap()).await
}

/// Decodes a whole body.
fn decode(coding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .expect("gzip decodes");
        }
        "br" => {
            brotli::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .expect("br decodes");
        }
        "zstd" => out = zstd::stream::decode_all(data).expect("zstd decodes"),
        other => panic!("unexpected coding {other}"),
    }
    out
}

/// What a client can decode of a stream that has not ended yet.
fn decode_so_far(coding: &str, data: &[u8]) -> Vec<u8> {
    let mut reader: Box<dyn Read + '_> = match coding {
        "gzip" => Box::new(flate2::read::GzDecoder::new(data)),
        "br" => Box::new(brotli::Decompressor::new(data, 4096)),
        "zstd" => Box::new(zstd::stream::read::Decoder::new(data).unwrap()),
        other => panic!("unexpected coding {other}"),
    };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = reader.read(&mut buf) {
        out.extend_from_slice(&buf[..n]);
    }
    out
}

fn vary(res: &Fetched) -> Vec<String> {
    res.head
        .headers
        .get_all("vary")
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|v| v.trim().to_owned())
        .collect()
}

fn assert_identity(res: &Fetched, expected: &[u8], what: &str) {
    assert_eq!(res.header("content-encoding"), None, "{what}");
    assert_eq!(&res.body[..], expected, "{what}");
}

#[tokio::test]
async fn each_coding_decodes_to_the_upstreams_bytes() {
    let up = upstream().await;
    let proxy = proxy(&up, None).await;
    for proto in [Proto::H1, Proto::H2] {
        let mut c = proxy.client(proto).await;
        for coding in ["gzip", "br", "zstd"] {
            let res = get(&mut c, "/json", &[("accept-encoding", coding)]).await;
            assert_eq!(res.status(), 200);
            assert_eq!(res.header("content-encoding"), Some(coding), "{proto:?}");
            assert_eq!(vary(&res), ["Accept-Encoding"]);
            assert_eq!(res.header("content-length"), None, "{proto:?} {coding}");
            assert!(res.body.len() < json().len() / 3, "{coding} compresses");
            assert_eq!(
                decode(coding, &res.body),
                json().as_bytes(),
                "{proto:?} {coding}"
            );
        }
        // A browser's list: ties go to br.
        let res = get(
            &mut c,
            "/json",
            &[("accept-encoding", "gzip, deflate, br, zstd")],
        )
        .await;
        assert_eq!(res.header("content-encoding"), Some("br"));
    }
}

#[tokio::test]
async fn q_values_choose_the_coding() {
    let up = upstream().await;
    let proxy = proxy(&up, None).await;
    let mut c = proxy.client(Proto::H2).await;
    let res = get(
        &mut c,
        "/json",
        &[("accept-encoding", "gzip;q=1, br;q=0.5")],
    )
    .await;
    assert_eq!(res.header("content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &res.body), json().as_bytes());
    let res = get(
        &mut c,
        "/json",
        &[("accept-encoding", "br;q=0, zstd;q=0.2")],
    )
    .await;
    assert_eq!(res.header("content-encoding"), Some("zstd"));
    let res = get(&mut c, "/json", &[("accept-encoding", "br;q=0")]).await;
    assert_identity(&res, json().as_bytes(), "br refused, nothing else offered");
    // The answer depended on Accept-Encoding all the same.
    assert_eq!(vary(&res), ["Accept-Encoding"]);
}

#[tokio::test]
async fn identity_without_accept_encoding_or_compress_or_a_small_or_binary_body() {
    let up = upstream().await;
    let proxy = proxy(&up, None).await;
    for proto in [Proto::H1, Proto::H2] {
        let mut c = proxy.client(proto).await;
        let res = get(&mut c, "/json", &[]).await;
        assert_identity(&res, json().as_bytes(), "no Accept-Encoding");
        assert_eq!(vary(&res), ["Accept-Encoding"]);
        assert_eq!(
            res.header("content-length"),
            Some(&*json().len().to_string())
        );

        // compress = false (the default) on route `plain`: nothing changes.
        let res = get(&mut c, "/plain", &[("accept-encoding", "gzip, br")]).await;
        assert_eq!(res.status(), 404);
        let res = get(&mut c, "/plain/json", &[("accept-encoding", "gzip, br")]).await;
        assert_eq!(res.header("content-encoding"), None);
        assert!(vary(&res).is_empty());

        let gzip = [("accept-encoding", "gzip, br, zstd")];
        let res = get(&mut c, "/small", &gzip).await;
        assert_identity(&res, "x".repeat(512).as_bytes(), "512 bytes");
        assert_eq!(res.header("content-length"), Some("512"));
        let res = get(&mut c, "/png", &gzip).await;
        assert_identity(&res, json().as_bytes(), "image/png");
    }
}

#[tokio::test]
async fn the_upstreams_own_coding_and_no_transform_are_left_alone() {
    let up = upstream().await;
    let proxy = proxy(&up, None).await;
    let mut c = proxy.client(Proto::H1).await;
    let all = [("accept-encoding", "gzip, br, zstd")];
    let res = get(&mut c, "/encoded", &all).await;
    // Passed through as the upstream sent it (its bytes, its header).
    assert_eq!(res.header("content-encoding"), Some("gzip"));
    assert_eq!(&res.body[..], json().as_bytes());
    assert_eq!(
        res.header("content-length"),
        Some(&*json().len().to_string())
    );
    let res = get(&mut c, "/no-transform", &all).await;
    assert_identity(&res, json().as_bytes(), "no-transform");
    assert!(vary(&res).is_empty());
}

#[tokio::test]
async fn head_204_304_206_are_untouched() {
    let up = upstream().await;
    let proxy = proxy(&up, None).await;
    let all = [("accept-encoding", "gzip, br, zstd")];
    for proto in [Proto::H1, Proto::H2] {
        let mut c = proxy.client(proto).await;
        let res = get_as(&mut c, "HEAD", "/json", &all).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.header("content-encoding"), None, "HEAD");
        assert_eq!(
            res.header("content-length"),
            Some(&*json().len().to_string())
        );
        for (path, status) in [("/204", 204), ("/304", 304)] {
            let res = get(&mut c, path, &all).await;
            assert_eq!(res.status(), status);
            assert_eq!(res.header("content-encoding"), None, "{path}");
            assert!(res.body.is_empty());
        }
        let res = get(&mut c, "/304", &all).await;
        assert_eq!(res.header("etag"), Some("\"v1\""));
        let res = get(&mut c, "/206", &all).await;
        assert_eq!(res.status(), 206);
        assert_identity(&res, &json().as_bytes()[..2000], "206");
        assert_eq!(res.header("content-range"), Some("bytes 0-1999/9999"));
    }
}

#[tokio::test]
async fn a_strong_etag_turns_weak_and_vary_is_extended() {
    let up = upstream().await;
    let proxy = proxy(&up, None).await;
    for proto in [Proto::H1, Proto::H2] {
        let mut c = proxy.client(proto).await;
        let res = get(&mut c, "/etag", &[("accept-encoding", "gzip")]).await;
        assert_eq!(res.header("content-encoding"), Some("gzip"));
        assert_eq!(res.header("etag"), Some("W/\"v1\""));
        assert_eq!(vary(&res), ["Origin", "Accept-Encoding"]);
        // Uncompressed, the strong ETag still names these bytes.
        let res = get(&mut c, "/etag", &[]).await;
        assert_eq!(res.header("etag"), Some("\"v1\""));
        assert_eq!(vary(&res), ["Origin", "Accept-Encoding"]);
    }
}

#[tokio::test]
async fn websockets_on_a_compress_route_still_work() {
    let up = upstream().await;
    let ws_backend = WsBackend::start().await;
    let proxy = proxy(&up, Some(&ws_backend)).await;
    let gzip = [("accept-encoding", "gzip, br")];

    let (mut ws, res) = ws_h1(&proxy, "/ws/chat", &gzip).await.unwrap();
    assert_eq!(res.status(), 101);
    assert_eq!(res.headers().get("content-encoding"), None);
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::text("hello"));

    let mut c = proxy.client(Proto::H2).await;
    let (mut ws, head) = ws_h2(&mut c, "/ws/chat", &gzip).await.ok().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.headers.get("content-encoding"), None);
    ws.send(Message::text("over h2")).await.unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::text("over h2"));
}

/// The upstream writes `pieces` one at a time, each only after the client
/// decoded the one before: if ferry held compressed bytes back, this waits
/// until `within` fails the test.
async fn streams_piece_by_piece(path: &str, pieces: &[&str]) {
    let mut up = upstream().await;
    let proxy = proxy(&up, None).await;
    for proto in [Proto::H1, Proto::H2] {
        for coding in ["gzip", "br", "zstd"] {
            let mut c = proxy.client(proto).await;
            let req = request("GET", "localhost", path, c.is_h2())
                .header("accept-encoding", coding)
                .body(empty())
                .unwrap();
            let res = c.send(req).await.unwrap();
            assert_eq!(res.headers()["content-encoding"], coding);
            let tx = within(up.streams.recv()).await.unwrap();
            let mut body = res.into_body();
            let mut received = Vec::new();
            let mut expected = String::new();
            for piece in pieces {
                tx.send(Bytes::from(piece.to_string())).await.unwrap();
                expected.push_str(piece);
                while decode_so_far(coding, &received) != expected.as_bytes() {
                    let frame = within(body.frame())
                        .await
                        .unwrap_or_else(|| panic!("{proto:?} {coding}: ended before {piece:?}"))
                        .unwrap();
                    if let Ok(data) = frame.into_data() {
                        received.extend_from_slice(&data);
                    }
                }
            }
            drop(tx);
            while let Some(frame) = within(body.frame()).await {
                if let Ok(data) = frame.unwrap().into_data() {
                    received.extend_from_slice(&data);
                }
            }
            assert_eq!(
                decode(coding, &received),
                expected.as_bytes(),
                "{proto:?} {coding}"
            );
        }
    }
}

#[tokio::test]
async fn server_sent_events_arrive_one_by_one_compressed() {
    streams_piece_by_piece(
        "/stream/sse",
        &[
            "event: tick\ndata: {\"n\":1}\n\n",
            "event: tick\ndata: {\"n\":2}\n\n",
            ": keep-alive\n\n",
            "event: tick\ndata: {\"n\":3}\n\n",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_long_poll_that_trickles_arrives_as_written() {
    streams_piece_by_piece(
        "/stream/poll",
        &[
            "{\"events\":[",
            "{\"id\":1,\"type\":\"created\"}",
            ",{\"id\":2}",
            "]}",
        ],
    )
    .await;
}
