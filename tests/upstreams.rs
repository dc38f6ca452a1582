//! Upstreams that survive real life: several servers and balancing, a dead
//! server taken out with no client-visible errors, no retry once bytes were
//! sent, and pooled connections that never race the backend's keep-alive close.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use http::Response;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// Admin (for the metrics), a TLS listener, and one unnamed catch-all route
/// to `[upstream.backend]`, which each test adds.
fn config() -> ProxyToml {
    ProxyToml::new()
        .admin()
        .tls_listener()
        .route_keys("path_prefix = \"/\"\nupstream = \"backend\"")
}

#[tokio::test]
async fn round_robin_spreads_by_weight() {
    let (a, b, c) = (
        Backend::echo("a").await,
        Backend::echo("b").await,
        Backend::echo("c").await,
    );
    let servers = format!(
        r#"servers = ["{}", "{}", {{ addr = "{}", weight = 2 }}]"#,
        a.addr, b.addr, c.addr
    );
    let proxy = TestProxy::start(&config().upstream_keys("backend", &servers).build()).await;
    let mut client = proxy.client(Proto::H2).await;
    let mut seen = std::collections::HashMap::new();
    for _ in 0..40 {
        let res = client.get("localhost", "/").await;
        *seen.entry(res.echoed_line("backend").unwrap()).or_insert(0) += 1;
    }
    assert_eq!(seen["a"], 10);
    assert_eq!(seen["b"], 10);
    assert_eq!(seen["c"], 20);
}

#[tokio::test]
async fn least_requests_sends_new_work_to_the_idle_server() {
    // `slow` holds every request until released; `fast` answers at once.
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let slow = Backend::start(move |_req| {
        let mut rx = release_rx.clone();
        async move {
            let _ = rx.wait_for(|r| *r).await;
            Response::new(body("slow"))
        }
    })
    .await;
    let fast = Backend::echo("fast").await;
    let toml = config()
        .upstream_with(
            "backend",
            &[slow.addr, fast.addr],
            r#"balance = "least_requests""#,
        )
        .build();
    let proxy = Arc::new(TestProxy::start(&toml).await);
    // The first request lands on `slow` (tie, first in turn) and stays there.
    let mut c = proxy.client(Proto::H2).await;
    let held = tokio::spawn(async move { c.get("localhost", "/held").await });
    let mut probe = proxy.client(Proto::H2).await;
    let mut fast_hits = 0;
    for _ in 0..20 {
        let res = probe.get("localhost", "/").await;
        if res.echoed_line("backend").as_deref() == Some("fast") {
            fast_hits += 1;
        }
    }
    assert!(
        fast_hits >= 19,
        "the busy server kept getting work: {fast_hits}/20 went to the idle one"
    );
    release_tx.send(true).unwrap();
    assert_eq!(within(held).await.unwrap().text(), "slow");
}

#[tokio::test]
async fn a_dead_server_costs_no_client_errors_and_is_taken_out() {
    let live = Backend::echo("live").await;
    let dead = dead_addr().await;
    let toml = config()
        .upstream_with(
            "backend",
            &[dead, live.addr],
            "max_fails = 3\nfail_timeout = \"1m\"",
        )
        .build();
    let proxy = TestProxy::start(&toml).await;
    let mut client = proxy.client(Proto::H1).await;
    for i in 0..60 {
        let res = client.get("localhost", &format!("/{i}")).await;
        assert_eq!(res.status(), 200, "request {i}: {}", res.text());
    }
    let (_, metrics) = proxy.admin("GET", "/metrics").await;
    // Three refused connects took it out; after that it was not tried again.
    assert_eq!(
        sample(
            &metrics,
            "ferry_upstream_errors_total{upstream=\"backend\",kind=\"connect\"}"
        ),
        Some(3.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn no_retry_once_the_request_reached_a_server() {
    // `eater` reads the request and hangs up without answering.
    let eater = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let eater_addr = eater.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = eater.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
            });
        }
    });
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let other = Backend::start(move |_req| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Response::new(body("other")) }
    })
    .await;
    let toml = config()
        .upstream("backend", &[eater_addr, other.addr])
        .build();
    let proxy = TestProxy::start(&toml).await;
    let mut client = proxy.client(Proto::H1).await;
    // Round robin from a fresh start: eater, other, eater.
    let post = request("POST", "localhost", "/once", false)
        .body(body("payload"))
        .unwrap();
    assert_eq!(
        client.fetch(post).await.status(),
        502,
        "the POST reached `eater` and was not sent again"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    assert_eq!(client.get("localhost", "/").await.status(), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // Idempotent or not: once bytes went out, no retry.
    assert_eq!(client.get("localhost", "/again").await.status(), 502);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_never_race_the_backends_keepalive_close() {
    // A backend that closes idle keep-alive connections after 1s (like
    // uvicorn's 5s, shortened); ferry's pool drops idle ones after 500ms.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(body("ok")))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(1))
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let toml = config()
        .upstream_with("backend", &[addr], r#"pool_idle_timeout = "500ms""#)
        .build();
    let proxy = Arc::new(TestProxy::start(&toml).await);
    let failures = Arc::new(AtomicUsize::new(0));
    for burst in 0..3 {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (proxy, failures) = (proxy.clone(), failures.clone());
            tasks.push(tokio::spawn(async move {
                let mut c = proxy.client(Proto::H1).await;
                for _ in 0..(10_000 / 24) {
                    if c.get("localhost", "/").await.status() != 200 {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
        }
        for t in tasks {
            within(t).await.unwrap();
        }
        if burst < 2 {
            // Idle just past the backend's keep-alive: its connections close under the pool.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "502s from reusing connections the backend had closed"
    );
}

#[tokio::test]
async fn active_health_checks_take_a_server_out_and_bring_it_back() {
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = healthy.clone();
    let sick = Backend::start(move |req: http::Request<hyper::body::Incoming>| {
        let ok = flag.load(Ordering::SeqCst);
        async move {
            if req.uri().path() == "/health" {
                let mut res = Response::new(body(if ok { "up" } else { "down" }));
                if !ok {
                    *res.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                }
                return res;
            }
            Response::new(body("sick"))
        }
    })
    .await;
    let well = Backend::start(|_req| async { Response::new(body("well")) }).await;
    let health = r#"health = { path = "/health", interval = "100ms", timeout = "1s", healthy = 2, unhealthy = 2 }"#;
    let toml = config()
        .upstream_with("backend", &[sick.addr, well.addr], health)
        .build();
    let proxy = TestProxy::start(&toml).await;
    let mut client = proxy.client(Proto::H1).await;

    // Failing checks take `sick` out: only `well` answers, twenty times in a row.
    within(async {
        let mut streak = 0;
        while streak < 20 {
            streak = if client.get("localhost", "/").await.text() == "well" {
                streak + 1
            } else {
                0
            };
        }
    })
    .await;
    // Passing checks bring it back.
    healthy.store(true, Ordering::SeqCst);
    within(async { while client.get("localhost", "/").await.text() != "sick" {} }).await;
}
