//! Failures a user sees: 502 for an upstream that is down or not resolvable,
//! 504 for one that is too slow, an aborted body when it stalls mid-response.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::future;
use http::Response;
use http_body_util::BodyExt;

#[tokio::test]
async fn upstream_down_is_502_and_recovers_without_restart() {
    let addr = dead_addr().await;
    let proxy = TestProxy::start(&simple_config(addr)).await;
    for proto in [Proto::H1, Proto::H2] {
        let mut c = proxy.client(proto).await;
        let res = c.get("localhost", "/").await;
        assert_eq!(res.status(), 502, "{proto:?}");
        assert_eq!(res.text(), "502 upstream unavailable\n");
        assert_eq!(res.header("cache-control"), Some("no-store"));
    }

    // The backend comes up on that address later (docker-compose start order).
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("rebind the same port");
    let _backend = Backend::serve_on(listener, |_req| async { Response::new(body("up")) });
    let mut c = proxy.client(Proto::H1).await;
    let res = c.get("localhost", "/").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text(), "up");
}

#[tokio::test]
async fn unresolvable_upstream_names_do_not_stop_startup() {
    let toml = ProxyToml::new()
        .tls_listener()
        .plain_listener()
        .upstream("backend", &["no-such-backend.invalid:8000"])
        .route("all", "/", "backend")
        .build();
    let proxy = TestProxy::start(&toml).await;
    let mut c = proxy.client(Proto::H1).await;
    let req = request("GET", "localhost", "/", false)
        .header("accept", "application/json")
        .body(empty())
        .unwrap();
    let res = c.fetch(req).await;
    assert_eq!(res.status(), 502);
    assert_eq!(
        res.text(),
        "{\"status\":502,\"error\":\"upstream unavailable\"}\n"
    );
}

#[tokio::test]
async fn slow_upstream_is_504_after_the_routes_read_timeout() {
    let backend = Backend::start(|_req| future::pending::<Response<TestBody>>()).await;
    let toml = ProxyToml::simple_with(backend.addr, r#"read_timeout = "300ms""#).build();
    let proxy = TestProxy::start(&toml).await;
    for proto in [Proto::H1, Proto::H2] {
        let mut c = proxy.client(proto).await;
        let started = Instant::now();
        let res = c.get("localhost", "/slow").await;
        assert_eq!(res.status(), 504, "{proto:?}");
        assert_eq!(res.text(), "504 upstream timed out\n");
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "504 came before the timeout"
        );
    }
}

#[tokio::test]
async fn upstream_stalling_mid_body_aborts_the_response() {
    let backend = Backend::start(|_req| async {
        let (tx, rx) = tokio::sync::mpsc::channel::<
            Result<hyper::body::Frame<bytes::Bytes>, Box<dyn std::error::Error + Send + Sync>>,
        >(1);
        tokio::spawn(async move {
            tx.send(Ok(hyper::body::Frame::data(bytes::Bytes::from_static(
                b"first chunk",
            ))))
            .await
            .unwrap();
            // Then silence, while keeping the stream open.
            future::pending::<()>().await;
            drop(tx);
        });
        let stream = tokio_stream_from(rx);
        Response::new(http_body_util::StreamBody::new(stream).boxed())
    })
    .await;
    let toml = ProxyToml::simple_with(backend.addr, r#"read_timeout = "300ms""#).build();
    let proxy = TestProxy::start(&toml).await;
    for proto in [Proto::H1, Proto::H2] {
        let mut c = proxy.client(proto).await;
        let res = c
            .send(
                request("GET", "localhost", "/", proto == Proto::H2)
                    .body(empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let mut body = res.into_body();
        let first = within(body.frame())
            .await
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap();
        assert_eq!(&first[..], b"first chunk");
        // The next read fails (the client sees a truncated response, not a hang).
        let next = within(async {
            loop {
                match body.frame().await {
                    Some(Ok(_)) => continue,
                    other => return other,
                }
            }
        })
        .await;
        assert!(
            matches!(next, Some(Err(_))),
            "{proto:?}: expected an aborted body, got {next:?}"
        );
    }
}

/// A `Stream` over an mpsc receiver (no tokio-stream dependency needed).
fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A client that hangs up in the middle of its upload failed, not the
/// upstream: the request is logged as a 400 "request body ended early"
/// (info, the client's side), never as a 502 blamed on the backend.
#[tokio::test]
async fn a_client_gone_mid_upload_is_its_own_failure_not_the_upstreams() {
    use tokio::io::AsyncWriteExt;
    let backend = Backend::start(|req: http::Request<hyper::body::Incoming>| async move {
        // Waits for the whole body, which never comes.
        let _ = req.into_body().collect().await;
        Response::new(body("ok"))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let toml = ProxyToml::simple(backend.addr)
        .server(&format!(
            "access_log = {{ format = \"json\", path = \"{}\" }}",
            log.display()
        ))
        .build();
    let proxy = TestProxy::start(&toml).await;
    let mut tcp = within(tokio::net::TcpStream::connect(proxy.plain_addr.unwrap()))
        .await
        .unwrap();
    let head = "POST /upload HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100000\r\n\r\n";
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&[b'x'; 1000]).await.unwrap();
    drop(tcp);

    let line: serde_json::Value = within(async {
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains("\"/upload\"")) {
                return serde_json::from_str(line).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(line["status"], 400, "{line}");
    assert_eq!(
        line["error"], "bad request: request body ended early",
        "{line}"
    );
    assert_eq!(line["route"], "all");
}
