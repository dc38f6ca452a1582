//! A real browser through ferry: headless Chromium loads a page over https
//! and opens `wss://` to an echo upstream. Chromium switches WebSockets to
//! HTTP/2 (RFC 8441) as soon as ferry advertises it, so this proves that path
//! end to end; a route whose origin allowlist excludes the page must fail.
//!
//! Driven over the DevTools protocol (navigate, then poll `document.title`):
//! `--dump-dom --virtual-time-budget` races WebSocket handshakes.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::tungstenite::Message;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http::Response;

const PAGE: &str = r#"<!doctype html>
<title>loading</title>
<script>
  const target = new URLSearchParams(location.search).get('ws');
  const ws = new WebSocket('wss://' + location.host + target);
  ws.onopen = () => ws.send('hello from the browser');
  ws.onmessage = (e) => { document.title = 'ok:' + e.data; ws.close(1000, 'done'); };
  ws.onclose = (e) => { if (!document.title.startsWith('ok:')) document.title = 'fail:' + e.code; };
</script>"#;

/// Chromium, killed on drop.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    devtools_port: u16,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromium() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(str::to_owned)
}

async fn launch(binary: &str) -> Browser {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--ignore-certificate-errors",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    // Chromium announces its DevTools endpoint on stderr.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<u16>();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("DevTools listening on ws://127.0.0.1:") {
                if let (Some(tx), Some(port)) = (
                    tx.take(),
                    rest.split('/').next().and_then(|p| p.parse().ok()),
                ) {
                    let _ = tx.send(port);
                }
            }
        }
    });
    let devtools_port = within(rx)
        .await
        .expect("chromium printed its DevTools port");
    Browser {
        child,
        _profile: profile,
        devtools_port,
    }
}

/// Navigates the first page target to `url` and waits for the page to set
/// its title to `ok:...` or `fail:...`.
async fn outcome(browser: &Browser, url: &str) -> String {
    let addr = format!("127.0.0.1:{}", browser.devtools_port)
        .parse()
        .unwrap();
    let mut http = Client::plain(addr).await;
    let list = http
        .get(
            &format!("127.0.0.1:{}", browser.devtools_port),
            "/json/list",
        )
        .await;
    let targets: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    let page = targets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "page")
        .expect("a page target");
    let ws_url = page["webSocketDebuggerUrl"].as_str().unwrap().to_owned();
    let (mut cdp, _) = within(tokio_tungstenite::connect_async(ws_url.as_str()))
        .await
        .unwrap();

    let mut id = 0;
    let mut call = async |method: &str, params: serde_json::Value| -> serde_json::Value {
        id += 1;
        let msg = serde_json::json!({ "id": id, "method": method, "params": params });
        cdp.send(Message::text(msg.to_string())).await.unwrap();
        loop {
            let reply = within(cdp.next()).await.expect("CDP reply").unwrap();
            if let Message::Text(text) = reply {
                let v: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                if v["id"] == id {
                    return v;
                }
            }
        }
    };
    call("Page.navigate", serde_json::json!({ "url": url })).await;
    within(async {
        loop {
            let v = call(
                "Runtime.evaluate",
                serde_json::json!({ "expression": "document.title", "returnByValue": true }),
            )
            .await;
            let title = v["result"]["result"]["value"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            if title.starts_with("ok:") || title.starts_with("fail:") {
                return title;
            }
            // The page decides when; poll its state (there is no event for a title change).
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await
}

/// A TLS listener with a `localhost` certificate from `ca`.
fn tls_config(ca: &TestCa) -> ProxyToml {
    let (cert, key) = ca.leaf("localhost", &["localhost", "127.0.0.1"]);
    ProxyToml::new().tls_listener().certificate(&cert, &key)
}

/// ferry (the real binary) on `config`, Chromium, and the https base URL.
async fn start(ca: &TestCa, config: &str, binary: &str) -> (FerryProcess, Browser, String) {
    let path = ca.dir.path().join("proxy.toml");
    std::fs::write(&path, config).unwrap();
    let ferry = FerryProcess::start(&path).await;
    let browser = launch(binary).await;
    let base = format!("https://localhost:{}", ferry.addr.port());
    (ferry, browser, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_opens_a_websocket_through_ferry_over_http2() {
    let Some(binary) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is not installed: .ci/run installs it (apt-get install -y chromium); this test must run in CI"
        );
        eprintln!("SKIPPED: chromium is not installed (apt-get install -y chromium)");
        return;
    };
    let ws_backend = WsBackend::start().await;
    let page = Backend::start(|_req| async {
        Response::builder()
            .header("content-type", "text/html; charset=utf-8")
            .body(body(PAGE))
            .unwrap()
    })
    .await;
    let ca = TestCa::new();
    let config = tls_config(&ca)
        .upstream("ws", &[ws_backend.addr])
        .upstream("page", &[page.addr])
        .route("ws", "/ws", "ws")
        .route_with(
            "locked",
            "/locked",
            "ws",
            r#"websocket = { allowed_origins = ["https://nowhere.test"] }"#,
        )
        .route("page", "/", "page")
        .build();
    let (mut ferry, browser, base) = start(&ca, &config, &binary).await;

    let title = outcome(&browser, &format!("{base}/?ws=/ws/echo")).await;
    assert_eq!(title, "ok:hello from the browser");
    let session = ferry
        .line(|l| l.contains("WebSocket session ended") && l.contains("route=ws"))
        .await;
    assert!(
        session.contains("protocol=\"h2\""),
        "Chromium should have used RFC 8441: {session}"
    );
    assert!(
        session.contains("closed_by=\"client\"") && session.contains("close_code=1000"),
        "{session}"
    );
    assert!(session.contains(&format!("origin=\"{base}\"")), "{session}");

    // The page's origin is not allowed on /locked: the handshake gets 403 and
    // the browser reports failure, and ferry says why.
    let title = outcome(&browser, &format!("{base}/?ws=/locked/x")).await;
    assert_eq!(title, "fail:1006");
    let refused = ferry
        .line(|l| l.contains("WebSocket handshake refused"))
        .await;
    assert!(refused.contains("route=locked"), "{refused}");
}

/// The SPA's entry point, as Vite builds it: a hashed module under /assets/.
const SPA_INDEX: &str = r#"<!doctype html>
<title>loading</title>
<div id="root"></div>
<script type="module" src="/assets/index-Bq3c9TqL.js"></script>"#;

/// The SPA's code: it reads the deep link it was opened on, asks the API who
/// the user is, and opens a WebSocket, all through the same ferry.
const SPA_JS: &str = r#"
const fail = (why) => { document.title = 'fail:' + why; };
fetch('/api/v1/me', { headers: { accept: 'application/json' } })
  .then((r) => (r.ok ? r.json() : Promise.reject('api ' + r.status)))
  .then((me) => {
    const ws = new WebSocket('wss://' + location.host + '/ws/echo');
    ws.onopen = () => ws.send('hi ' + me.user);
    ws.onmessage = (e) => {
      document.title = 'ok:' + location.pathname + ':' + e.data;
      ws.close(1000, 'done');
    };
    ws.onclose = (e) => { if (!document.title.startsWith('ok:')) fail('ws ' + e.code); };
  })
  .catch(fail);
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_loads_the_spa_from_a_static_route_and_talks_to_the_api_and_websocket() {
    let Some(binary) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is not installed: .ci/run installs it (apt-get install -y chromium); this test must run in CI"
        );
        eprintln!("SKIPPED: chromium is not installed (apt-get install -y chromium)");
        return;
    };
    let dist = tempfile::tempdir().unwrap();
    std::fs::write(dist.path().join("index.html"), SPA_INDEX).unwrap();
    std::fs::create_dir(dist.path().join("assets")).unwrap();
    std::fs::write(dist.path().join("assets/index-Bq3c9TqL.js"), SPA_JS).unwrap();
    let ws_backend = WsBackend::start().await;
    let api = Backend::start(|req: http::Request<hyper::body::Incoming>| async move {
        let body = if req.uri().path() == "/api/v1/me" {
            r#"{"user":"ada"}"#
        } else {
            r#"{"detail":"Not Found"}"#
        };
        Response::builder()
            .header("content-type", "application/json")
            .body(common::body(body))
            .unwrap()
    })
    .await;
    let ca = TestCa::new();
    let config = tls_config(&ca)
        .upstream("ws", &[ws_backend.addr])
        .upstream("api", &[api.addr])
        .route("ws", "/ws", "ws")
        .route("api", "/api", "api")
        .route_keys(&format!(
            "name = \"app\"\npath_prefix = \"/\"\nstatic = {{ root = \"{}\", spa = true }}",
            dist.path().display()
        ))
        .build();
    let (mut ferry, browser, base) = start(&ca, &config, &binary).await;

    // A deep link opened directly (a reload of a client-side route) gets the
    // index, whose hashed script runs and reaches the API and the WebSocket.
    let title = outcome(&browser, &format!("{base}/users/42")).await;
    assert_eq!(title, "ok:/users/42:hi ada");
    let script = ferry
        .line(|l| l.contains("/assets/index-Bq3c9TqL.js") && l.contains("route=app"))
        .await;
    assert!(script.contains("status=200"), "{script}");
    let session = ferry
        .line(|l| l.contains("WebSocket session ended") && l.contains("route=ws"))
        .await;
    assert!(session.contains("close_code=1000"), "{session}");

    // And from the root, the same app.
    let title = outcome(&browser, &format!("{base}/")).await;
    assert_eq!(title, "ok:/:hi ada");
}
