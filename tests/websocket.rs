//! WebSockets through ferry, over HTTP/1.1 and HTTP/2 (RFC 8441), with no
//! configuration: echo of every kind of message, origin checks, timeouts,
//! and sessions that end with a proper Close frame instead of a 1006.

mod common;

use std::sync::atomic::Ordering;

use common::tungstenite::Message;
use common::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use common::tungstenite::protocol::frame::{Frame, FrameHeader};
use common::*;
use futures_util::SinkExt;

/// One upstream behind route `ws` (with `websocket` keys, if any) and route `other`.
fn config(backend: std::net::SocketAddr, websocket: &str) -> String {
    ProxyToml::new()
        .server(r#"shutdown_grace = "10s""#)
        .tls_listener()
        .upstream("backend", &[backend])
        .route_with("ws", "/ws", "backend", websocket)
        .route("other", "/", "backend")
        .build()
}

/// Text, binary, a 16 MiB message, a fragmented message, ping/pong and a
/// close with code and reason, over any transport.
async fn exercise<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws_next(ws).await, Message::text("hello"));

    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(ws_next(ws).await, Message::binary(vec![0u8, 1, 2, 255]));

    let big: Vec<u8> = (0..16 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    match ws_next(ws).await {
        Message::Binary(got) => assert!(got[..] == big[..], "16 MiB echo differs"),
        other => panic!("expected binary, got {other:?}"),
    }

    // A message in three fragments, with a ping between them.
    let frag = |fin, opcode, data: &'static [u8]| {
        let header = FrameHeader {
            is_final: fin,
            opcode,
            ..FrameHeader::default()
        };
        Message::Frame(Frame::from_payload(header, bytes::Bytes::from_static(data)))
    };
    ws.send(frag(false, OpCode::Data(Data::Text), b"frag"))
        .await
        .unwrap();
    ws.send(Message::Ping(bytes::Bytes::from_static(b"mid")))
        .await
        .unwrap();
    ws.send(frag(false, OpCode::Data(Data::Continue), b"men"))
        .await
        .unwrap();
    ws.send(frag(true, OpCode::Data(Data::Continue), b"ted"))
        .await
        .unwrap();
    assert_eq!(ws_next(ws).await, Message::text("fragmented"));

    // Ping: the upstream answers with a pong carrying the payload.
    ws.send(Message::Ping(bytes::Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    let pong = loop {
        use futures_util::StreamExt;
        match within(ws.next()).await.unwrap().unwrap() {
            Message::Pong(p) => break p,
            _ => continue,
        }
    };
    assert_eq!(&pong[..], b"are you there");
}

#[tokio::test]
async fn echo_over_http11_and_a_clean_close_both_ways() {
    let mut backend = WsBackend::start().await;
    let proxy = TestProxy::start(&config(backend.addr, "")).await;

    let (mut ws, res) = ws_h1(&proxy, "/ws/chat", &[("origin", "https://app.test")])
        .await
        .unwrap();
    assert_eq!(res.status(), 101);
    let (headers, path) = backend.next_handshake().await;
    assert_eq!(path, "/ws/chat");
    assert_eq!(headers["origin"], "https://app.test");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "https");
    assert_eq!(headers["connection"], "upgrade");
    assert_eq!(headers["upgrade"], "websocket");

    exercise(&mut ws).await;

    ws.close(Some(common::tungstenite::protocol::CloseFrame {
        code: CloseCode::Normal,
        reason: "done here".into(),
    }))
    .await
    .unwrap();
    let echoed = ws_expect_close(&mut ws).await;
    assert_eq!(echoed.code, CloseCode::Normal);
    let at_backend = backend
        .next_close()
        .await
        .expect("a Close frame reached the upstream");
    assert_eq!(at_backend.code, CloseCode::Normal);
    assert_eq!(at_backend.reason.as_str(), "done here");
}

#[tokio::test]
async fn echo_over_http2_extended_connect() {
    let mut backend = WsBackend::start().await;
    let plain = Backend::echo("plain").await;
    let toml = ProxyToml::new()
        .server(r#"shutdown_grace = "10s""#)
        .tls_listener()
        .upstream("backend", &[backend.addr])
        .upstream("plain", &[plain.addr])
        .route("ws", "/ws", "backend")
        .route("other", "/", "plain")
        .build();
    let proxy = TestProxy::start(&toml).await;
    let mut client = proxy.client(Proto::H2).await;

    // Two sessions and a plain request share one HTTP/2 connection.
    let (mut a, head) = ws_h2(
        &mut client,
        "/ws/a",
        &[
            ("origin", "https://app.test"),
            ("sec-websocket-protocol", "chat"),
        ],
    )
    .await
    .unwrap_or_else(|res| panic!("status {}: {}", res.status(), res.text()));
    assert_eq!(head.headers["sec-websocket-protocol"], "chat");
    assert!(head.headers.get("sec-websocket-accept").is_none());
    let (headers, _) = backend.next_handshake().await;
    // The upstream saw an ordinary HTTP/1.1 handshake made by ferry.
    assert_eq!(headers["sec-websocket-version"], "13");
    assert!(headers.contains_key("sec-websocket-key"));
    assert_eq!(headers["host"], "localhost");
    assert_eq!(headers["origin"], "https://app.test");

    let (mut b, _) = ws_h2(&mut client, "/ws/b", &[])
        .await
        .unwrap_or_else(|r| panic!("{}", r.status()));
    let res = client.get("localhost", "/plain").await;
    assert_eq!(res.echoed_line("backend").as_deref(), Some("plain"));

    exercise(&mut a).await;
    b.send(Message::text("b")).await.unwrap();
    assert_eq!(ws_next(&mut b).await, Message::text("b"));

    a.close(Some(common::tungstenite::protocol::CloseFrame {
        code: CloseCode::Away,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    assert_eq!(ws_expect_close(&mut a).await.code, CloseCode::Away);
}

#[tokio::test]
async fn many_sessions_on_one_http2_connection_talk_at_once_without_mixing_bytes() {
    let backend = WsBackend::start().await;
    let proxy = TestProxy::start(&config(backend.addr, "")).await;
    let mut client = proxy.client(Proto::H2).await;
    let mut sessions = Vec::new();
    for i in 0..8 {
        let (ws, _) = ws_h2(&mut client, &format!("/ws/{i}"), &[])
            .await
            .unwrap_or_else(|r| panic!("{}", r.status()));
        sessions.push(ws);
    }
    // Every session sends at the same time, so their frames meet in ferry's
    // writes to the one connection; sizes run from 1 byte to past the 64 KiB
    // that ferry buffers before writing without waiting for a flush.
    let talk = |i: usize, mut ws: H2Ws| async move {
        for n in 0..40usize {
            let len = [1, 125, 126, 4_000, 70_000][n % 5] + i;
            let msg: Vec<u8> = (0..len).map(|b| (b * 7 + i + n) as u8).collect();
            ws.send(Message::binary(msg.clone())).await.unwrap();
            match ws_next(&mut ws).await {
                Message::Binary(got) => {
                    assert!(got[..] == msg[..], "session {i}, message {n} differs")
                }
                other => panic!("session {i}: expected binary, got {other:?}"),
            }
        }
        ws.close(None).await.unwrap();
    };
    within(futures_util::future::join_all(
        sessions.into_iter().enumerate().map(|(i, ws)| talk(i, ws)),
    ))
    .await;
}

#[tokio::test]
async fn origins_are_checked_before_the_upstream_is_contacted() {
    let mut backend = WsBackend::start().await;
    let proxy = TestProxy::start(&config(
        backend.addr,
        r#"websocket = { allowed_origins = ["https://app.test", "https://*.app.test", "http://localhost:5173"] }"#,
    ))
    .await;

    for origin in [
        "https://app.test",
        "https://www.app.test",
        "http://localhost:5173",
    ] {
        let (mut ws, _) = ws_h1(&proxy, "/ws", &[("origin", origin)])
            .await
            .unwrap_or_else(|e| panic!("{origin}: {e}"));
        ws.send(Message::text("hi")).await.unwrap();
        assert_eq!(ws_next(&mut ws).await, Message::text("hi"));
    }
    // Non-browser clients send no Origin: allowed unless require_origin.
    let (mut ws, _) = ws_h1(&proxy, "/ws", &[]).await.unwrap();
    ws.send(Message::text("cli")).await.unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::text("cli"));

    let before = backend.accepted.load(Ordering::SeqCst);
    for origin in [
        "https://evil.test",
        "https://app.test.evil.test",
        "http://app.test",
        "null",
    ] {
        match ws_h1(&proxy, "/ws", &[("origin", origin)]).await {
            Err(common::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 403, "{origin}"),
            other => panic!("{origin}: expected 403, got {other:?}"),
        }
    }
    let mut h2 = proxy.client(Proto::H2).await;
    let refused = ws_h2(&mut h2, "/ws", &[("origin", "https://evil.test")])
        .await
        .expect_err("refused");
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.text(), "403 origin not allowed\n");
    assert_eq!(
        backend.accepted.load(Ordering::SeqCst),
        before,
        "the upstream was contacted"
    );
    drop(backend.events.try_recv());
}

#[tokio::test]
async fn require_origin_refuses_handshakes_without_one() {
    let backend = WsBackend::start().await;
    let proxy = TestProxy::start(&config(
        backend.addr,
        r#"websocket = { require_origin = true }"#,
    ))
    .await;
    match ws_h1(&proxy, "/ws", &[]).await {
        Err(common::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 0);
    assert!(
        ws_h1(&proxy, "/ws", &[("origin", "https://any.test")])
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn an_upstream_refusal_reaches_the_client_as_is() {
    let backend = WsBackend::start().await;
    let proxy = TestProxy::start(&config(backend.addr, "")).await;
    match ws_h1(&proxy, "/refuse", &[]).await {
        Err(common::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 403),
        other => panic!("expected the upstream's 403, got {other:?}"),
    }
    let mut h2 = proxy.client(Proto::H2).await;
    let res = ws_h2(&mut h2, "/refuse", &[]).await.expect_err("refused");
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn idle_sessions_are_closed_with_1001_on_both_sides() {
    let mut backend = WsBackend::start().await;
    let proxy = TestProxy::start(&config(
        backend.addr,
        r#"websocket = { idle_timeout = "300ms" }"#,
    ))
    .await;
    let (mut ws, _) = ws_h1(&proxy, "/ws", &[]).await.unwrap();
    // Traffic keeps it open past the timeout...
    for _ in 0..4 {
        ws.send(Message::text("tick")).await.unwrap();
        assert_eq!(ws_next(&mut ws).await, Message::text("tick"));
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    // ...silence closes it.
    let close = ws_expect_close(&mut ws).await;
    assert_eq!(close.code, CloseCode::Away);
    assert_eq!(close.reason.as_str(), "idle for 300ms");
    let at_backend = backend
        .next_close()
        .await
        .expect("the upstream got a Close frame");
    assert_eq!(at_backend.code, CloseCode::Away);
}

#[tokio::test]
async fn ping_interval_pings_the_client_and_forwards_its_pong() {
    let mut backend = WsBackend::start().await;
    let proxy = TestProxy::start(&config(
        backend.addr,
        r#"websocket = { ping_interval = "100ms" }"#,
    ))
    .await;
    let (mut ws, _) = ws_h1(&proxy, "/ws", &[]).await.unwrap();
    let ping = {
        use futures_util::StreamExt;
        match within(ws.next()).await.unwrap().unwrap() {
            Message::Ping(p) => p,
            other => panic!("expected a ping first, got {other:?}"),
        }
    };
    assert!(ping.is_empty());
    // tungstenite answers the ping when it next writes or flushes.
    ws.flush().await.unwrap();
    loop {
        if let WsEvent::Pong = backend.next_event().await {
            break;
        }
    }
}

#[tokio::test]
async fn an_upstream_that_vanishes_gets_the_client_a_1011_not_a_1006() {
    let backend = WsBackend::start().await;
    let proxy = TestProxy::start(&config(backend.addr, "")).await;
    let (mut ws, _) = ws_h1(&proxy, "/ws", &[]).await.unwrap();
    ws.send(Message::text("die")).await.unwrap();
    let close = ws_expect_close(&mut ws).await;
    assert_eq!(close.code, CloseCode::Error);
    assert_eq!(close.reason.as_str(), "upstream went away");

    let mut h2 = proxy.client(Proto::H2).await;
    let (mut ws, _) = ws_h2(&mut h2, "/ws", &[])
        .await
        .unwrap_or_else(|r| panic!("{}", r.status()));
    ws.send(Message::text("die")).await.unwrap();
    assert_eq!(ws_expect_close(&mut ws).await.code, CloseCode::Error);
}

#[tokio::test]
async fn a_client_that_vanishes_gets_the_upstream_a_1001() {
    let mut backend = WsBackend::start().await;
    let proxy = TestProxy::start(&config(backend.addr, "")).await;
    let (mut ws, _) = ws_h1(&proxy, "/ws", &[]).await.unwrap();
    ws.send(Message::text("x")).await.unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::text("x"));
    drop(ws); // TCP closes, no Close frame
    let close = backend
        .next_close()
        .await
        .expect("the upstream got a Close frame");
    assert_eq!(close.code, CloseCode::Away);
    assert_eq!(close.reason.as_str(), "client went away");
}

#[tokio::test]
async fn shutdown_closes_sessions_with_1001_on_both_sides() {
    let mut backend = WsBackend::start().await;
    let proxy = TestProxy::start(&config(backend.addr, "")).await;
    let (mut ws1, _) = ws_h1(&proxy, "/ws", &[]).await.unwrap();
    let mut h2 = proxy.client(Proto::H2).await;
    let (mut ws2, _) = ws_h2(&mut h2, "/ws", &[])
        .await
        .unwrap_or_else(|r| panic!("{}", r.status()));
    for ws in [&mut ws1] {
        ws.send(Message::text("x")).await.unwrap();
        assert_eq!(ws_next(ws).await, Message::text("x"));
    }
    ws2.send(Message::text("y")).await.unwrap();
    assert_eq!(ws_next(&mut ws2).await, Message::text("y"));

    let shutdown = tokio::spawn(proxy.shutdown());
    for close in [
        ws_expect_close(&mut ws1).await,
        ws_expect_close(&mut ws2).await,
    ] {
        assert_eq!(close.code, CloseCode::Away);
        assert_eq!(close.reason.as_str(), "ferry is shutting down");
    }
    for _ in 0..2 {
        let close = backend
            .next_close()
            .await
            .expect("the upstream got a Close frame");
        assert_eq!(close.code, CloseCode::Away);
    }
    drop((ws1, ws2, h2));
    within(shutdown).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_sessions() {
    let backend = WsBackend::start().await;
    let proxy = std::sync::Arc::new(TestProxy::start(&config(backend.addr, "")).await);
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let proxy = proxy.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ws, _) = ws_h1(&proxy, "/ws", &[]).await.unwrap();
            let msg = format!("session {i}");
            ws.send(Message::text(msg.clone())).await.unwrap();
            assert_eq!(ws_next(&mut ws).await, Message::text(msg));
            ws
        }));
    }
    let mut open = Vec::new();
    for t in tasks {
        open.push(within(t).await.unwrap());
    }
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 1000);
    // All still open: each echoes once more.
    for (i, ws) in open.iter_mut().enumerate().step_by(97) {
        ws.send(Message::text(format!("again {i}"))).await.unwrap();
        assert_eq!(ws_next(ws).await, Message::text(format!("again {i}")));
    }
}

#[tokio::test]
async fn max_lifetime_closes_even_busy_sessions() {
    let mut backend = WsBackend::start().await;
    let proxy = TestProxy::start(&config(
        backend.addr,
        r#"websocket = { max_lifetime = "400ms" }"#,
    ))
    .await;
    let (mut ws, _) = ws_h1(&proxy, "/ws", &[]).await.unwrap();
    let close = within(async {
        loop {
            ws.send(Message::text("busy")).await.unwrap();
            match ws_next(&mut ws).await {
                Message::Close(Some(frame)) => return frame,
                _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    assert_eq!(close.code, CloseCode::Away);
    assert_eq!(close.reason.as_str(), "max lifetime 400ms reached");
    assert_eq!(
        backend.next_close().await.expect("a Close frame").code,
        CloseCode::Away
    );
}

#[tokio::test]
async fn websocket_over_http2_can_be_turned_off_per_listener() {
    let backend = WsBackend::start().await;
    let toml = ProxyToml::new()
        .server(r#"shutdown_grace = "10s""#)
        .tls_listener_with("websocket_over_http2 = false")
        .upstream("backend", &[backend.addr])
        .route("ws", "/ws", "backend")
        .route("other", "/", "backend")
        .build();
    let proxy = TestProxy::start(&toml).await;
    // Not advertised, so an extended CONNECT is refused by the HTTP/2 layer...
    let mut h2 = proxy.client(Proto::H2).await;
    let req = http::Request::builder()
        .method("CONNECT")
        .uri("https://localhost/ws")
        .extension(hyper::ext::Protocol::from_static("websocket"))
        .body(empty())
        .unwrap();
    let refused = h2.send(req).await;
    assert!(
        refused.is_err() || refused.as_ref().unwrap().status() != 200,
        "{refused:?}"
    );
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 0);
    // ...while HTTP/1.1 WebSockets work as always.
    let (mut ws, _) = ws_h1(&proxy, "/ws", &[]).await.unwrap();
    ws.send(Message::text("h1")).await.unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::text("h1"));
}
