//! The keep-alive race: an upstream closes an idle pooled connection just as
//! ferry writes a request on it. A request that fails so on a reused
//! connection before any response byte is sent once more on a fresh one
//! when that cannot repeat an effect; never after response bytes, never
//! with a body already sent. Proven byte by byte against a raw upstream that
//! closes exactly at the wrong moment, then statistically against a hyper
//! server and a real uvicorn with a 1 s keep-alive.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use http::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// What the raw upstream does with the second request on a connection
/// (it answers the first one on each connection).
#[derive(Debug, Clone, Copy)]
enum Second {
    /// Reads the head, then closes: the race itself.
    CloseAfterHead,
    /// Reads the whole request, body included, then closes.
    CloseAfterBody,
    /// Reads the request, sends the start of a response head, closes.
    PartialHead,
}

#[derive(Debug, PartialEq, Eq)]
enum Event {
    /// Connection N read the head of its first request (it will answer).
    First(usize),
    /// Connection N read the head of its second request and has closed.
    Closed(usize),
}

async fn race_backend(second: Second) -> (ScriptedBackend, mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let backend = ScriptedBackend::start(move |mut s: ScriptedConn| {
        let tx = tx.clone();
        async move {
            let id = s.id;
            let Some(head) = s.read_head().await else {
                return;
            };
            let _ = tx.send(Event::First(id));
            if s.read_body(&head).await.is_none() {
                return;
            }
            s.respond(&format!("conn {id}")).await;
            let Some(head) = s.read_head().await else {
                return;
            };
            match second {
                Second::CloseAfterHead => {}
                Second::CloseAfterBody => {
                    let _ = s.read_body(&head).await;
                }
                Second::PartialHead => s.write(b"HTTP/1.1 200 O").await,
            }
            drop(s);
            let _ = tx.send(Event::Closed(id));
        }
    })
    .await;
    (backend, rx)
}

/// ferry with a long pool_idle_timeout (so that it reuses what the upstream closes) and an admin.
async fn proxy_for(backend: SocketAddr) -> TestProxy {
    let toml = ProxyToml::new()
        .tls_listener()
        .plain_listener()
        .admin()
        .upstream_with("backend", &[backend], r#"pool_idle_timeout = "30s""#)
        .route("all", "/", "backend")
        .build();
    TestProxy::start(&toml).await
}

async fn metric(proxy: &TestProxy, series: &str) -> f64 {
    let (_, text) = proxy.admin("GET", "/metrics").await;
    sample(&text, series).unwrap_or(0.0)
}

const RETRIED: &str = r#"ferry_upstream_retries_total{upstream="backend",reason="reused_closed"}"#;
const EXCHANGE_ERRORS: &str = r#"ferry_upstream_errors_total{upstream="backend",kind="exchange"}"#;

fn drain(rx: &mut mpsc::UnboundedReceiver<Event>) -> Vec<Event> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

/// The race, made to happen every time: each request that ferry writes on a
/// reused connection is read by the upstream, which then closes without a
/// byte of answer. Every GET still gets its 200, from a fresh connection,
/// and the retries are counted; none counts as an upstream error.
#[tokio::test]
async fn a_get_on_a_connection_the_upstream_just_closed_is_sent_again() {
    let (backend, mut events) = race_backend(Second::CloseAfterHead).await;
    let proxy = proxy_for(backend.addr).await;
    let mut c = proxy.client(Proto::H1).await;
    for i in 0..8 {
        let res = c.get("localhost", &format!("/get/{i}")).await;
        assert_eq!(res.status(), 200, "request {i}: {}", res.text());
        assert!(res.text().starts_with("conn "), "{}", res.text());
    }
    let closed: Vec<usize> = drain(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            Event::Closed(id) => Some(id),
            Event::First(_) => None,
        })
        .collect();
    assert!(
        !closed.is_empty(),
        "ferry never reused a connection: {:?}",
        backend.connections()
    );
    // Each closed request arrived again, whole, on a later connection.
    let conns = backend.connections();
    for &id in &closed {
        let text = conns[id].text();
        let line = text
            .lines()
            .filter(|l| l.starts_with("GET "))
            .nth(1)
            .unwrap();
        let again = conns[id + 1..]
            .iter()
            .filter(|c| c.text().lines().next() == Some(line))
            .count();
        assert_eq!(again, 1, "`{line}` sent again once: {conns:?}");
    }
    assert_eq!(metric(&proxy, RETRIED).await, closed.len() as f64);
    assert_eq!(metric(&proxy, EXCHANGE_ERRORS).await, 0.0);
}

/// With `send_proxy_protocol`, the request sent again keeps its client: the
/// fresh connection's PROXY header names it, as the first one's did.
#[tokio::test]
async fn a_request_sent_again_keeps_its_proxy_protocol_client() {
    let (backend, mut events) = race_backend(Second::CloseAfterHead).await;
    let toml = ProxyToml::new()
        .plain_listener()
        .admin()
        .upstream_with(
            "backend",
            &[backend.addr],
            "pool_idle_timeout = \"30s\"\nsend_proxy_protocol = \"v1\"",
        )
        .route("all", "/", "backend")
        .build();
    let proxy = TestProxy::start(&toml).await;
    let mut c = Client::plain(proxy.plain_addr.unwrap()).await;
    for i in 0..8 {
        assert_eq!(c.get("localhost", &format!("/get/{i}")).await.status(), 200);
    }
    let conns = backend.connections();
    let closed: Vec<usize> = drain(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            Event::Closed(id) => Some(id),
            Event::First(_) => None,
        })
        .collect();
    assert!(
        !closed.is_empty(),
        "ferry never reused a connection: {conns:?}"
    );
    for conn in &conns {
        assert!(
            conn.text().starts_with("PROXY TCP4 127.0.0.1 "),
            "{conns:?}"
        );
    }
}

/// A POST whose body had not started when the upstream closed is sent again
/// too: the upstream had a head waiting for its body, not a request. The
/// body, sent by the client only after the close, reaches the fresh connection.
#[tokio::test]
async fn a_post_whose_body_had_not_started_is_sent_again() {
    let (backend, mut events) = race_backend(Second::CloseAfterHead).await;
    let proxy = proxy_for(backend.addr).await;
    let mut tcp = within(tokio::net::TcpStream::connect(proxy.plain_addr.unwrap()))
        .await
        .unwrap();
    for attempt in 0..10 {
        tcp.write_all(b"GET /warm HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .unwrap();
        assert!(read_response(&mut tcp).await.starts_with("HTTP/1.1 200"));
        drain(&mut events);
        tcp.write_all(b"POST /submit HTTP/1.1\r\nhost: localhost\r\ncontent-length: 5\r\n\r\n")
            .await
            .unwrap();
        let event = within(events.recv()).await.unwrap();
        // Only now does the body leave the client.
        tcp.write_all(b"hello").await.unwrap();
        let res = read_response(&mut tcp).await;
        assert!(res.starts_with("HTTP/1.1 200"), "attempt {attempt}: {res}");
        if let Event::Closed(id) = event {
            let conns = backend.connections();
            assert_eq!(conns[id].requests("POST /submit"), 1);
            assert!(!conns[id].text().contains("hello"), "{conns:?}");
            let resent: Vec<_> = conns[id + 1..]
                .iter()
                .filter(|c| c.text().starts_with("POST /submit ") && c.text().ends_with("hello"))
                .collect();
            assert_eq!(resent.len(), 1, "{conns:?}");
            assert_eq!(metric(&proxy, RETRIED).await, 1.0);
            return;
        }
        // The POST went to a fresh connection (ferry had not pooled the
        // previous one yet): nothing raced; try again.
    }
    panic!("ferry never sent the POST on a reused connection");
}

/// A POST whose body went out is never sent again: ferry keeps no copy of
/// it, and the upstream may have acted. The client gets the 502.
#[tokio::test]
async fn a_post_whose_body_was_sent_is_not_sent_again() {
    let (backend, _events) = race_backend(Second::CloseAfterBody).await;
    let proxy = proxy_for(backend.addr).await;
    let mut c = proxy.client(Proto::H1).await;
    let mut sent = 0;
    for attempt in 0..10 {
        assert_eq!(c.get("localhost", "/warm").await.status(), 200);
        sent += 1;
        let req = request("POST", "localhost", "/submit", false)
            .body(body("hello"))
            .unwrap();
        let res = c.fetch(req).await;
        if res.status() == 502 {
            let posts: usize = backend
                .connections()
                .iter()
                .map(|c| c.requests("POST /submit"))
                .sum();
            assert_eq!(posts, sent, "a POST was sent twice");
            assert_eq!(metric(&proxy, RETRIED).await, 0.0);
            return;
        }
        assert_eq!(res.status(), 200, "attempt {attempt}");
    }
    panic!("ferry never sent the POST on a reused connection");
}

/// After the first byte of a response, nothing is sent again, even a GET:
/// the upstream has started to answer it.
#[tokio::test]
async fn a_request_whose_response_had_started_is_not_sent_again() {
    let (backend, _events) = race_backend(Second::PartialHead).await;
    let proxy = proxy_for(backend.addr).await;
    let mut c = proxy.client(Proto::H1).await;
    for i in 0..10 {
        let path = format!("/get/{i}");
        let res = c.get("localhost", &path).await;
        if res.status() == 502 {
            let seen: usize = backend
                .connections()
                .iter()
                .map(|c| c.requests(&format!("GET {path}")))
                .sum();
            assert_eq!(seen, 1, "{path} was sent again");
            assert_eq!(metric(&proxy, RETRIED).await, 0.0);
            return;
        }
        assert_eq!(res.status(), 200);
    }
    panic!("ferry never sent a request on a reused connection");
}

/// One HTTP/1.1 response with a Content-Length, read whole.
async fn read_response(tcp: &mut tokio::net::TcpStream) -> String {
    within(async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    return text;
                }
            }
        }
    })
    .await
}

/// ferry for [`spaced_load`]: client N's requests (`/cN/...`) go to
/// upstream `cN`, all of them at `backend`, so that each client has a pool
/// of its own and a connection's idle time is that client's spacing.
async fn proxy_per_client(backend: SocketAddr, clients: usize) -> TestProxy {
    let mut toml = ProxyToml::new().tls_listener().admin();
    for c in 0..clients {
        let name = format!("c{c}");
        toml = toml
            .upstream_with(&name, &[backend], r#"pool_idle_timeout = "30s""#)
            .route(&name, &format!("/{name}/"), &name);
    }
    TestProxy::start(&toml.build()).await
}

/// The sum of every sample of `metric` whose labels contain `label`.
async fn metric_sum(proxy: &TestProxy, metric: &str, label: &str) -> f64 {
    let (_, text) = proxy.admin("GET", "/metrics").await;
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

/// `clients` concurrent clients (of [`proxy_per_client`]), each sending
/// `each` GETs spaced by about `spacing` (±10 ms, varied per request);
/// returns the statuses that were not 200.
async fn spaced_load(
    proxy: &TestProxy,
    clients: usize,
    each: usize,
    spacing: Duration,
) -> Vec<u16> {
    let mut tasks = Vec::new();
    for client in 0..clients {
        let mut c = proxy.client(Proto::H1).await;
        tasks.push(tokio::spawn(async move {
            let mut bad = Vec::new();
            // Start the clients apart, so that their idle times differ.
            tokio::time::sleep(Duration::from_millis(37 * client as u64)).await;
            for i in 0..each {
                let res = c.get("localhost", &format!("/c{client}/{i}")).await;
                if res.status() != 200 {
                    bad.push(res.status());
                }
                // A cheap spread of -10..=10 ms around the spacing.
                let jitter = (client * 7 + i * 13) % 21;
                tokio::time::sleep(
                    spacing + Duration::from_millis(jitter as u64) - Duration::from_millis(10),
                )
                .await;
            }
            bad
        }));
    }
    let mut bad = Vec::new();
    for t in tasks {
        bad.extend(t.await.unwrap());
    }
    bad
}

/// A hyper server whose idle keep-alive connections close after 1 s (its
/// header read timeout), ferry pooling them for longer: requests spaced
/// around that second race the close. None may fail.
#[tokio::test]
async fn a_hyper_backend_with_a_one_second_keep_alive_never_causes_a_502() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(Response::new(body("ok")))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(1))
                    .keep_alive(true)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let proxy = proxy_per_client(addr, 12).await;
    let started = Instant::now();
    let bad = spaced_load(&proxy, 12, 20, Duration::from_secs(1)).await;
    task.abort();
    report_load(&proxy, 240, started, &bad).await;
}

/// Prints what the load met, and checks that every request got its 200
/// and no exchange failed.
async fn report_load(proxy: &TestProxy, requests: usize, started: Instant, bad: &[u16]) {
    let retries = "ferry_upstream_retries_total";
    let closed = metric_sum(proxy, retries, r#"reason="reused_closed""#).await;
    let unsent = metric_sum(proxy, retries, r#"reason="reused_unsent""#).await;
    eprintln!(
        "{requests} requests in {:?}: sent again {closed} times after the upstream closed a \
         connection as ferry wrote on it, {unsent} times when it was found closed first",
        started.elapsed()
    );
    assert!(
        bad.is_empty(),
        "{} of {requests} not 200: {bad:?}",
        bad.len()
    );
    let errors = metric_sum(proxy, "ferry_upstream_errors_total", "").await;
    assert_eq!(errors, 0.0, "upstream errors");
}

/// The ASGI app uvicorn serves: 200 `ok` to everything.
const ASGI_APP: &str = r#"
async def app(scope, receive, send):
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})
"#;

/// uvicorn, killed on drop.
struct Uvicorn(std::process::Child);

impl Drop for Uvicorn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The scenario's server as a new user would start it, with a 1 s
/// keep-alive (`--timeout-keep-alive 1`); ferry's pool keeps connections
/// longer, so requests spaced around 1 s race uvicorn's close. No 502.
#[tokio::test]
async fn a_real_uvicorn_with_a_one_second_keep_alive_never_causes_a_502() {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/venv/bin/python");
    if !python.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is missing: .ci/run creates it (python3 -m venv .ci/venv && .ci/venv/bin/pip install uvicorn); this test must run in CI",
            python.display()
        );
        eprintln!(
            "SKIPPED: no uvicorn venv at {} (.ci/run creates it)",
            python.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.py"), ASGI_APP).unwrap();
    // A free port: bound, then released for uvicorn.
    let port = dead_addr().await.port();
    let child = std::process::Command::new(&python)
        .args(["-m", "uvicorn", "--app-dir"])
        .arg(dir.path())
        .args(["app:app", "--host", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .args([
            "--timeout-keep-alive",
            "1",
            "--lifespan",
            "off",
            "--no-access-log",
            "--log-level",
            "warning",
        ])
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("uvicorn starts");
    let _uvicorn = Uvicorn(child);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    within(async {
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    let proxy = proxy_per_client(addr, 12).await;
    let started = Instant::now();
    let bad = spaced_load(&proxy, 12, 25, Duration::from_secs(1)).await;
    report_load(&proxy, 300, started, &bad).await;
}
