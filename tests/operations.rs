//! Operating ferry: Prometheus metrics after known traffic, health and
//! readiness, reload through the admin endpoint and `ferry reload`, the JSON
//! access log, and signals.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::tungstenite::Message;
use common::tungstenite::protocol::CloseFrame;
use common::tungstenite::protocol::frame::coding::CloseCode;
use common::*;
use futures_util::SinkExt;
use http::Response;

/// Admin, a TLS listener, and routes `ws`, `broken` (to `dead`, where nothing
/// listens: see [`dead_addr`]) and `all` (for localhost).
fn config(backend: SocketAddr, ws: SocketAddr, dead: SocketAddr) -> ProxyToml {
    ProxyToml::new()
        .admin()
        .server(r#"shutdown_grace = "10s""#)
        .tls_listener()
        .upstream("backend", &[backend])
        .upstream("down", &[dead])
        .upstream("ws", &[ws])
        .route("ws", "/ws", "ws")
        .route("broken", "/broken", "down")
        .route_with("all", "/", "backend", r#"hosts = ["localhost"]"#)
}

#[tokio::test]
async fn metrics_count_known_traffic() {
    let backend = Backend::echo("b").await;
    let mut ws_backend = WsBackend::start().await;
    let dead = dead_addr().await;
    let proxy = TestProxy::start(&config(backend.addr, ws_backend.addr, dead).build()).await;

    let mut c = proxy.client(Proto::H2).await;
    for _ in 0..3 {
        assert_eq!(c.get("localhost", "/").await.status(), 200);
    }
    assert_eq!(c.get("other.test", "/").await.status(), 404);
    assert_eq!(c.get("localhost", "/broken").await.status(), 502);
    let (mut ws, _) = ws_h1(&proxy, "/ws", &[]).await.unwrap();
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::text("hi"));
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
    .await
    .unwrap();
    ws_expect_close(&mut ws).await;
    ws_backend.next_close().await;

    // Counters are written when each response (or session) ends: scrape until they settle.
    let text = within(async {
        loop {
            let (status, text) = proxy.admin("GET", "/metrics").await;
            assert_eq!(status, 200);
            if sample(&text, "ferry_websocket_sessions_total{route=\"ws\",close_code=\"1000\",closed_by=\"client\"}") == Some(1.0) {
                return text;
            }
        }
    })
    .await;
    let expect = [
        (
            "ferry_requests_total{route=\"all\",status_class=\"2xx\"}",
            3.0,
        ),
        (
            "ferry_requests_total{route=\"-\",status_class=\"4xx\"}",
            1.0,
        ),
        (
            "ferry_requests_total{route=\"broken\",status_class=\"5xx\"}",
            1.0,
        ),
        (
            "ferry_requests_total{route=\"ws\",status_class=\"1xx\"}",
            1.0,
        ),
        (
            "ferry_upstream_errors_total{upstream=\"down\",kind=\"connect\"}",
            1.0,
        ),
        (
            "ferry_upstream_request_duration_seconds_count{upstream=\"backend\"}",
            3.0,
        ),
        ("ferry_request_duration_seconds_count{route=\"all\"}", 3.0),
        ("ferry_websocket_sessions_active{route=\"ws\"}", 0.0),
        ("ferry_config_generation", 1.0),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&text, series), Some(value), "{series} in:\n{text}");
    }
    let tls_addr = proxy.tls_addr.unwrap().to_string();
    assert!(
        sample(
            &text,
            &format!("ferry_tls_handshakes_total{{listener=\"{tls_addr}\"}}")
        )
        .unwrap()
            >= 2.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("ferry_connections_active{{listener=\"{tls_addr}\",protocol=\"h2\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    let expiry = text
        .lines()
        .find(|l| l.starts_with("ferry_certificate_expiry_timestamp_seconds{"))
        .expect("expiry gauge");
    let expiry: f64 = expiry.rsplit(' ').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(expiry > now + 300.0 * 86_400.0, "{expiry}");
    // No raw paths or hosts as labels.
    assert!(
        !text.contains("other.test") && !text.contains("/broken\""),
        "{text}"
    );
}

#[tokio::test]
async fn health_readiness_and_admin_reload() {
    let backend = Backend::echo("b").await;
    let ws_backend = WsBackend::start().await;
    let dead = dead_addr().await;
    let mut proxy =
        TestProxy::start_file(&config(backend.addr, ws_backend.addr, dead).build()).await;
    assert_eq!(
        proxy.admin("GET", "/healthz").await,
        (200, "ok\n".to_owned())
    );
    assert_eq!(
        proxy.admin("GET", "/readyz").await,
        (200, "ready: configuration generation 1\n".to_owned())
    );
    assert_eq!(
        proxy.admin("POST", "/reload").await,
        (200, "reloaded: configuration generation 2\n".to_owned())
    );
    assert_eq!(proxy.admin("GET", "/reload").await.0, 405);
    assert_eq!(proxy.admin("GET", "/nope").await.0, 404);

    proxy.rewrite_config(
        &config(backend.addr, ws_backend.addr, dead)
            .build()
            .replace("upstream = \"backend\"", "upstream = \"nope\""),
    );
    let (status, body) = proxy.admin("POST", "/reload").await;
    assert_eq!(status, 500);
    assert!(
        body.contains("unknown upstream `nope`") && body.contains("keeps serving"),
        "{body}"
    );

    // While draining, readiness fails so a load balancer stops sending.
    let (_ws, _) = ws_h1(&proxy, "/ws", &[]).await.unwrap();
    proxy.begin_shutdown();
    within(async {
        loop {
            if proxy.admin("GET", "/readyz").await == (503, "draining\n".to_owned()) {
                break;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn the_json_access_log_has_one_parsable_line_per_request_and_session() {
    let backend = Backend::echo("b").await;
    let ws_backend = WsBackend::start().await;
    let dead = dead_addr().await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("access.log");
    let server = format!(
        "access_log = {{ format = \"json\", path = \"{}\" }}",
        log_path.display()
    );
    let toml = config(backend.addr, ws_backend.addr, dead)
        .server(&server)
        .build();
    let proxy = TestProxy::start(&toml).await;

    let mut c = proxy.client(Proto::H1).await;
    let req = request("POST", "localhost", "/upload?token=secret", false)
        .body(body("12345"))
        .unwrap();
    assert_eq!(c.fetch(req).await.status(), 200);
    let mut h2 = proxy.client(Proto::H2).await;
    assert_eq!(h2.get("localhost", "/x").await.status(), 200);
    assert_eq!(h2.get("localhost", "/broken").await.status(), 502);
    let (mut ws, _) = ws_h2(&mut h2, "/ws", &[("origin", "https://app.test")])
        .await
        .unwrap_or_else(|r| panic!("{}", r.status()));
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::text("hello"));
    ws.close(None).await.unwrap();

    let lines: Vec<serde_json::Value> = within(async {
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect();
            if lines.iter().any(|l| l["type"] == "websocket") {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let upload = lines
        .iter()
        .find(|l| l["path"] == "/upload")
        .expect("upload line");
    for key in [
        "time",
        "client",
        "host",
        "route",
        "upstream",
        "upstream_addr",
        "duration_ms",
        "upstream_ms",
        "tls",
        "http",
    ] {
        assert!(!upload[key].is_null(), "{key} missing: {upload}");
    }
    assert_eq!(upload["method"], "POST");
    assert_eq!(upload["status"], 200);
    assert_eq!(upload["bytes_in"], 5);
    assert_eq!(upload["tls"], "TLSv1.3");
    assert_eq!(upload["http"], "HTTP/1.1");
    assert!(
        upload["query"].is_null(),
        "queries are off by default: {upload}"
    );
    assert!(!upload.to_string().contains("secret"));
    let broken = lines
        .iter()
        .find(|l| l["path"] == "/broken")
        .expect("502 line");
    assert_eq!(broken["status"], 502);
    assert!(
        broken["error"].as_str().unwrap().contains("cannot connect"),
        "{broken}"
    );
    let session = lines.iter().find(|l| l["type"] == "websocket").unwrap();
    assert_eq!(session["route"], "ws");
    assert_eq!(session["http"], "HTTP/2.0");
    assert_eq!(session["origin"], "https://app.test");
    assert_eq!(session["messages_in"], 1);
    assert_eq!(session["closed_by"], "client");
    assert_eq!(session["close_code"], 1005);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_reload_reaches_the_running_process() {
    let backend = Backend::echo("b").await;
    let ws_backend = WsBackend::start().await;
    let dead = dead_addr().await;
    let ca = TestCa::new();
    let path = ca.dir.path().join("proxy.toml");
    // The admin port must be known to `ferry reload`, so bind one and free it first.
    let admin = dead_addr().await;
    let toml = TestProxy::fill(
        &config(backend.addr, ws_backend.addr, dead)
            .admin_at(admin)
            .build(),
        &ca,
    );
    std::fs::write(&path, &toml).unwrap();
    let mut ferry = FerryProcess::start(&path).await;

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["reload", "-c", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "reloaded: configuration generation 2\n"
    );
    ferry
        .line(|l| l.contains("configuration reloaded") && l.contains("trigger=\"admin\""))
        .await;

    // SIGHUP works too.
    let pid = ferry.pid();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    ferry
        .line(|l| {
            l.contains("configuration reloaded")
                && l.contains("SIGHUP")
                && l.contains("generation=3")
        })
        .await;

    ferry.sigterm();
    ferry.line(|l| l.contains("drained cleanly")).await;
    assert_eq!(ferry.wait().await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    // A backend that never answers keeps a request in flight, so the drain would wait.
    let (arrived_tx, arrived_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let backend = Backend::start(move |_req| {
        let _ = arrived_tx.send(());
        futures_util::future::pending::<Response<TestBody>>()
    })
    .await;
    let ws_backend = WsBackend::start().await;
    let dead = dead_addr().await;
    let ca = TestCa::new();
    let path = ca.dir.path().join("proxy.toml");
    let toml = TestProxy::fill(&config(backend.addr, ws_backend.addr, dead).build(), &ca)
        .replace("shutdown_grace = \"10s\"", "shutdown_grace = \"1h\"");
    std::fs::write(&path, &toml).unwrap();
    let mut ferry = FerryProcess::start(&path).await;
    let mut c = Client::tls(ferry.addr, &ca, Proto::H2, "localhost").await;
    let in_flight = tokio::spawn(async move {
        c.send(
            request("GET", "localhost", "/", true)
                .body(empty())
                .unwrap(),
        )
        .await
    });
    // Once the request is at the backend, signal twice.
    let mut arrived_rx = arrived_rx;
    within(arrived_rx.recv()).await.unwrap();
    ferry.sigterm();
    ferry.line(|l| l.contains("shutting down")).await;
    ferry.sigterm();
    assert_eq!(ferry.wait().await.code(), Some(130));
    in_flight.abort();
}
