//! Reload while serving: no failed requests, WebSockets untouched, new
//! certificates for the next handshake, a broken config changes nothing.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use common::tungstenite::Message;
use common::*;
use futures_util::SinkExt;

/// Routes `/v` to backend `a` or `b` (the generation marker), everything on one TLS listener.
fn config(
    a: std::net::SocketAddr,
    b: std::net::SocketAddr,
    target: &str,
    ws: std::net::SocketAddr,
) -> String {
    ProxyToml::new()
        .tls_listener()
        .upstream("a", &[a])
        .upstream("b", &[b])
        .upstream("ws", &[ws])
        .route("ws", "/ws", "ws")
        .route("v", "/", target)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_rewrites_under_load_fail_no_request_and_take_effect() {
    let a = Backend::echo("a").await;
    let b = Backend::echo("b").await;
    let mut wsb = WsBackend::start().await;
    let proxy = Arc::new(TestProxy::start_file(&config(a.addr, b.addr, "a", wsb.addr)).await);

    // A WebSocket opened before any reload.
    let (mut ws, _) = ws_h1(&proxy, "/ws", &[]).await.unwrap();

    // Clients on kept-alive HTTP/1.1 and HTTP/2 connections, sending until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut loops = Vec::new();
    for proto in [Proto::H1, Proto::H2, Proto::H1, Proto::H2] {
        let (proxy, stop, ok, failed) = (proxy.clone(), stop.clone(), ok.clone(), failed.clone());
        loops.push(tokio::spawn(async move {
            let mut c = proxy.client(proto).await;
            while !stop.load(Ordering::Relaxed) {
                let res = c
                    .fetch(
                        request("GET", "localhost", "/", proto == Proto::H2)
                            .body(empty())
                            .unwrap(),
                    )
                    .await;
                if res.status() == 200 {
                    ok.fetch_add(1, Ordering::Relaxed)
                } else {
                    failed.fetch_add(1, Ordering::Relaxed)
                };
            }
        }));
    }

    let mut slowest = std::time::Duration::ZERO;
    for i in 0..20 {
        let target = if i % 2 == 0 { "b" } else { "a" };
        let started = Instant::now();
        proxy.rewrite_config(&config(a.addr, b.addr, target, wsb.addr));
        // The watcher notices the rename and reloads: wait until the new route answers.
        let mut c = proxy.client(Proto::H2).await;
        within(async {
            loop {
                if c.get("localhost", "/")
                    .await
                    .echoed_line("backend")
                    .as_deref()
                    == Some(target)
                {
                    break;
                }
            }
        })
        .await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(proxy.reloader.generation(), i + 2);
    }
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        within(l).await.unwrap();
    }
    eprintln!(
        "20 reloads; slowest took effect after {slowest:?}; {} requests served",
        ok.load(Ordering::Relaxed)
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during reloads"
    );
    assert!(ok.load(Ordering::Relaxed) > 0);

    // The WebSocket opened before the reloads still echoes.
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::text("still here"));
    drop(wsb.events.try_recv());
}

#[tokio::test]
async fn a_broken_config_keeps_the_old_one_serving() {
    let a = Backend::echo("a").await;
    let b = Backend::echo("b").await;
    let wsb = WsBackend::start().await;
    let proxy = TestProxy::start_file(&config(a.addr, b.addr, "a", wsb.addr)).await;
    // Route `v` names an upstream that does not exist.
    let broken = config(a.addr, b.addr, "nope", wsb.addr);
    proxy.rewrite_config(&broken);
    let err = proxy
        .reloader
        .reload("test")
        .await
        .expect_err("the broken config is refused");
    assert!(err.to_string().contains("unknown upstream `nope`"), "{err}");
    assert_eq!(proxy.reloader.generation(), 1);
    let mut c = proxy.client(Proto::H1).await;
    assert_eq!(
        c.get("localhost", "/")
            .await
            .echoed_line("backend")
            .as_deref(),
        Some("a")
    );

    // An unreadable certificate is refused the same way.
    let missing_cert =
        config(a.addr, b.addr, "b", wsb.addr).replace("{cert}", "/nonexistent/cert.pem");
    proxy.rewrite_config(&missing_cert);
    let err = proxy.reloader.reload("test").await.expect_err("refused");
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    assert_eq!(
        c.get("localhost", "/")
            .await
            .echoed_line("backend")
            .as_deref(),
        Some("a")
    );
}

#[tokio::test]
async fn a_certificate_replaced_by_rename_is_served_to_the_next_handshake() {
    let a = Backend::echo("a").await;
    let proxy = TestProxy::start_file(&simple_config(a.addr)).await;
    let serial =
        |conn: &rustls::ClientConnection| conn.peer_certificates().unwrap()[0].as_ref().to_vec();
    let connect = || async {
        let tcp = within(tokio::net::TcpStream::connect(proxy.tls_addr.unwrap()))
            .await
            .unwrap();
        let connector = tokio_rustls::TlsConnector::from(proxy.ca.client_config(&[b"http/1.1"]));
        within(connector.connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        ))
        .await
        .unwrap()
    };
    let before = serial(connect().await.get_ref().1);

    // A renewed certificate arrives the way certbot or docker cp deliver it: by rename.
    let renewed = proxy.ca.leaf("renewed", &["localhost", "127.0.0.1"]);
    let dir = proxy.ca.dir.path();
    std::fs::rename(&renewed.1, dir.join("localhost-key.pem")).unwrap();
    std::fs::rename(&renewed.0, dir.join("localhost.pem")).unwrap();
    let after = within(async {
        loop {
            let now = serial(connect().await.get_ref().1);
            if now != before {
                return now;
            }
        }
    })
    .await;
    assert_ne!(before, after);
    assert_eq!(proxy.reloader.generation(), 2);
}
