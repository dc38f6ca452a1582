//! Listener behaviour: the https redirect listener, the slow-header guard, and
//! the drain on shutdown.

mod common;

use std::time::Duration;

use common::*;
use http::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// [`simple_config`] with a redirect listener in place of the plain one.
fn with_redirect(backend: std::net::SocketAddr) -> String {
    ProxyToml::new()
        .tls_listener()
        .plain_listener_with("redirect_https = true")
        .upstream("backend", &[backend])
        .route("all", "/", "backend")
        .build()
}

#[tokio::test]
async fn redirect_listener_sends_308_to_the_tls_port_keeping_host_path_and_query() {
    let backend = Backend::echo("b").await;
    let proxy = TestProxy::start(&with_redirect(backend.addr)).await;
    let tls_port = proxy.tls_addr.unwrap().port();
    let mut c = Client::plain(proxy.redirect_addr.expect("redirect listener")).await;
    for method in ["GET", "POST"] {
        let req = request(method, "Example.com:8080", "/a/b?c=d&e", false)
            .body(empty())
            .unwrap();
        let res = c.fetch(req).await;
        assert_eq!(res.status(), 308, "{method}");
        assert_eq!(
            res.header("location").unwrap(),
            format!("https://Example.com:{tls_port}/a/b?c=d&e")
        );
    }
    // Without a Host there is nowhere to redirect to.
    let res = c
        .fetch(http::Request::builder().uri("/").body(empty()).unwrap())
        .await;
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn a_client_that_dribbles_its_headers_is_disconnected() {
    let backend = Backend::echo("b").await;
    let toml = ProxyToml::simple(backend.addr)
        .server(r#"header_read_timeout = "300ms""#)
        .build();
    let proxy = TestProxy::start(&toml).await;
    let mut tcp = within(TcpStream::connect(proxy.plain_addr.unwrap()))
        .await
        .unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    // hyper answers 408 or just closes; either way the connection ends.
    within(tcp.read_to_end(&mut buf)).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_refuses_new_connections() {
    // The backend holds each response until the test releases it.
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let release = std::sync::Arc::new(tokio::sync::Mutex::new(Some(release_rx)));
    let (arrived_tx, arrived_rx) = oneshot::channel::<()>();
    let arrived = std::sync::Arc::new(std::sync::Mutex::new(Some(arrived_tx)));
    let backend = Backend::start(move |_req| {
        let release = release.clone();
        let arrived = arrived.clone();
        async move {
            if let Some(tx) = arrived.lock().unwrap().take() {
                let _ = tx.send(());
            }
            if let Some(rx) = release.lock().await.take() {
                let _ = rx.await;
            }
            Response::new(body("finished"))
        }
    })
    .await;
    let toml = ProxyToml::simple(backend.addr)
        .server(r#"shutdown_grace = "10s""#)
        .build();
    let proxy = TestProxy::start(&toml).await;
    let addr = proxy.tls_addr.unwrap();

    let mut c = proxy.client(Proto::H2).await;
    let in_flight = tokio::spawn(async move { c.get("localhost", "/slow").await });
    within(arrived_rx).await.unwrap();

    let shutdown = tokio::spawn(proxy.shutdown());
    // New connections are refused once the listeners close.
    let refused = within(async {
        loop {
            match TcpStream::connect(addr).await {
                Err(_) => return true,
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    assert!(refused);
    assert!(
        !shutdown.is_finished(),
        "the drain must wait for the in-flight request"
    );

    release_tx.send(()).unwrap();
    let res = within(in_flight).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text(), "finished");
    within(shutdown).await.unwrap();
}

#[tokio::test]
async fn idle_http2_connections_are_closed_but_not_while_a_stream_is_open() {
    let backend = Backend::echo("b").await;
    let mut ws_backend = WsBackend::start().await;
    let toml = ProxyToml::new()
        .server(r#"idle_timeout = "300ms""#)
        .tls_listener()
        .plain_listener()
        .upstream("ws", &[ws_backend.addr])
        .upstream("backend", &[backend.addr])
        .route("ws", "/ws", "ws")
        .route("all", "/", "backend")
        .build();
    let proxy = TestProxy::start(&toml).await;

    // A WebSocket over HTTP/2 keeps its connection busy past the idle timeout.
    let mut busy = proxy.client(Proto::H2).await;
    let (mut ws, _) = ws_h2(&mut busy, "/ws/x", &[])
        .await
        .unwrap_or_else(|r| panic!("{}", r.status()));
    // A plain connection that goes quiet after one request.
    let mut quiet = proxy.client(Proto::H2).await;
    assert_eq!(quiet.get("localhost", "/").await.status(), 200);
    let Client::H2(sender) = &quiet else {
        unreachable!()
    };
    within(async {
        while !sender.is_closed() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // By now the busy connection has been idle-free for longer than 300ms too: still open.
    use futures_util::SinkExt;
    ws.send(common::tungstenite::Message::text("still here"))
        .await
        .unwrap();
    assert_eq!(
        ws_next(&mut ws).await,
        common::tungstenite::Message::text("still here")
    );
    let Client::H2(busy_sender) = &busy else {
        unreachable!()
    };
    assert!(!busy_sender.is_closed());
    drop(ws_backend.events.try_recv());
}
