//! `ferry route` and the proxy agree: the same requests, explained by
//! `ferry route --format json` and sent through a running ferry to backends
//! that report what they received, give the same route, upstream, origin
//! verdict, answer and forwarded headers. Both call one decision function;
//! this test is what keeps a second copy from creeping back in.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// The backends and the proxy in front of them.
struct Rig {
    proxy: TestProxy,
    ws: WsBackend,
    /// The config as `ferry route` reads it: the proxy's, with its bound ports.
    config: PathBuf,
    access_log: PathBuf,
    _api: Backend,
    _dir: tempfile::TempDir,
}

/// A TLS, a plain and a redirecting listener; a regex WebSocket route with an
/// origin allowlist, a redirect route, and a host-bound API route that edits headers.
async fn rig(trusted_proxies: &str) -> Rig {
    let api = Backend::echo("api").await;
    let ws = WsBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let access_log = dir.path().join("access.log");
    let toml = ProxyToml::new()
        .server(&format!(
            "trusted_proxies = {trusted_proxies}\naccess_log = {{ format = \"json\", path = \"{}\" }}",
            access_log.display()
        ))
        .tls_listener()
        .plain_listener()
        .plain_listener_with("redirect_https = true")
        .upstream("api", &[api.addr])
        .upstream("ws", &[ws.addr])
        .route_keys(
            r#"name = "ws"
path_regex = "^/ws/(chat|news)/"
upstream = "ws"
websocket = { allowed_origins = ["https://app.test"] }"#,
        )
        .route_keys(
            r#"name = "old"
path_prefix = "/old"
redirect = { to = "https://new.test{uri}", status = 301 }"#,
        )
        .route_with(
            "api",
            "/api",
            "api",
            r#"hosts = ["localhost"]
request_headers = { set = { "X-Edge" = "ferry" }, remove = ["X-Secret"] }"#,
        )
        .build();
    let proxy = TestProxy::start(&toml).await;
    // The same file with the ports the listeners got, in [[listen]] order.
    let mut text = TestProxy::fill(&toml, &proxy.ca);
    for addr in [proxy.tls_addr, proxy.plain_addr, proxy.redirect_addr] {
        let bound = format!("addr = \"{}\"", addr.unwrap());
        text = text.replacen("addr = \"127.0.0.1:0\"", &bound, 1);
    }
    let config = dir.path().join("proxy.toml");
    std::fs::write(&config, text).unwrap();
    Rig {
        proxy,
        ws,
        config,
        access_log,
        _api: api,
        _dir: dir,
    }
}

impl Rig {
    fn tls(&self) -> u16 {
        self.proxy.tls_addr.unwrap().port()
    }

    /// `ferry route --format json URL -H ...`, from client 127.0.0.1 (where
    /// the test's own clients connect from).
    async fn explain(&self, url: &str, headers: &[(&str, &str)]) -> Value {
        self.explain_with("GET", url, headers).await
    }

    /// [`explain`](Self::explain) for another method.
    async fn explain_with(&self, method: &str, url: &str, headers: &[(&str, &str)]) -> Value {
        let mut args: Vec<String> = ["route", "--format", "json", "--client", "127.0.0.1", "-X"]
            .map(str::to_owned)
            .to_vec();
        args.push(method.to_owned());
        args.push("-c".to_owned());
        args.push(self.config.display().to_string());
        args.push(url.to_owned());
        for (k, v) in headers {
            args.push("-H".into());
            args.push(format!("{k}: {v}"));
        }
        let out = within(tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
                .args(&args)
                .env_remove("FERRY_CONFIG")
                .output()
                .unwrap()
        }))
        .await
        .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// The proxy's access-log line for the request with this path.
    async fn logged(&self, path: &str) -> Value {
        access_line(&self.access_log, path).await
    }
}

/// Waits for the access log's request line for `path` (lines are written
/// by a writer thread once the response body is done).
async fn access_line(log: &Path, path: &str) -> Value {
    within(async {
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let found = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|l| l["type"] == "request" && l["path"] == path);
            if let Some(line) = found {
                return line;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// `ferry route`'s upstream request headers, as (name, value) pairs.
fn explained_headers(json: &Value) -> Vec<(String, String)> {
    let headers = json["upstream_request"]["headers"]
        .as_array()
        .unwrap_or_else(|| panic!("no upstream request in {json:#}"));
    headers
        .iter()
        .map(|pair| {
            let name = pair[0].as_str().unwrap().to_owned();
            (name, pair[1].as_str().unwrap().to_owned())
        })
        .collect()
}

/// The headers an echo backend reported receiving.
fn echoed_headers(res: &Fetched) -> Vec<(String, String)> {
    res.text()
        .lines()
        .filter_map(|l| l.strip_prefix("header "))
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn handshake_headers(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect()
}

/// Both sides' headers agree, but for `except` (a WebSocket key is each
/// client's own nonce; framing headers belong to the HTTP connection).
fn assert_same_headers(
    explained: Vec<(String, String)>,
    received: Vec<(String, String)>,
    except: &[&str],
) {
    let keep = |pairs: Vec<(String, String)>| -> BTreeMap<String, Vec<String>> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            if !except.contains(&k.as_str()) {
                map.entry(k).or_default().push(v);
            }
        }
        map
    };
    assert_eq!(
        keep(explained),
        keep(received),
        "ferry route vs the backend"
    );
}

fn route_name(json: &Value) -> &Value {
    &json["route"]["name"]
}

/// The access log's view and `ferry route`'s agree on route and upstream.
fn assert_same_route(json: &Value, line: &Value) {
    assert_eq!(route_name(json), &line["route"], "route: {json:#}\n{line}");
    assert_eq!(
        json["upstream"], line["upstream"],
        "upstream: {json:#}\n{line}"
    );
}

/// A plain request on each listener kind, with a forwarded chain that only a
/// trusted peer keeps, a header the route removes and one Connection names.
async fn plain_requests_agree(rig: &Rig, trusted: bool) {
    let tls = rig.tls();
    let headers = [
        ("x-forwarded-for", "198.51.100.7"),
        ("x-secret", "s3cret"),
        ("connection", "x-hop"),
        ("x-hop", "1"),
        ("cookie", "a=1"),
    ];
    let cases = [
        (Proto::H1, format!("https://localhost:{tls}/api/one?x=1")),
        (Proto::H2, format!("https://localhost:{tls}/api/two")),
    ];
    for (proto, url) in cases {
        let path = url.split(&format!(":{tls}")).nth(1).unwrap().to_owned();
        let mut c = rig.proxy.client(proto).await;
        let mut req = request(
            "GET",
            &format!("localhost:{tls}"),
            &path,
            proto == Proto::H2,
        );
        for (k, v) in headers {
            // HTTP/2 has no Connection header: it is a protocol error there.
            if proto == Proto::H2 && (k == "connection" || k == "x-hop") {
                continue;
            }
            req = req.header(k, v);
        }
        let res = c.fetch(req.body(empty()).unwrap()).await;
        assert_eq!(res.status(), 200, "{}", res.text());
        let sent: Vec<_> = headers
            .iter()
            .filter(|(k, _)| proto == Proto::H1 || (*k != "connection" && *k != "x-hop"))
            .copied()
            .collect();
        let json = rig.explain(&url, &sent).await;
        assert_eq!(json["result"], "forward", "{json:#}");
        assert_same_headers(explained_headers(&json), echoed_headers(&res), &[]);
        let line = rig.logged(path.split('?').next().unwrap()).await;
        assert_same_route(&json, &line);
        let xff = json["upstream_request"]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p[0] == "x-forwarded-for")
            .map(|p| p[1].clone());
        let expected = if trusted {
            "198.51.100.7, 127.0.0.1"
        } else {
            "127.0.0.1"
        };
        assert_eq!(xff, Some(Value::from(expected)), "trusted={trusted}");
    }

    // The plain listener: X-Forwarded-Proto says http.
    let plain = rig.proxy.plain_addr.unwrap();
    let host = format!("localhost:{}", plain.port());
    let mut c = Client::plain(plain).await;
    let res = c.get(&host, "/api/plain").await;
    let json = rig.explain(&format!("http://{host}/api/plain"), &[]).await;
    assert_same_headers(explained_headers(&json), echoed_headers(&res), &[]);
    assert_eq!(res.echoed("x-forwarded-proto").as_deref(), Some("http"));
}

/// WebSocket handshakes over HTTP/1.1 and HTTP/2, allowed and refused.
async fn websockets_agree(rig: &mut Rig) {
    let tls = rig.tls();
    let origin = ("origin", "https://app.test");
    // HTTP/1.1: the upgrade goes through as the backend sees it.
    let url = format!("wss://localhost:{tls}/ws/chat/1");
    let (ws, res) = ws_h1(&rig.proxy, "/ws/chat/1", &[origin]).await.unwrap();
    assert_eq!(res.status(), 101);
    let (received, _) = rig.ws.next_handshake().await;
    let json = rig.explain(&url, &[origin]).await;
    assert_eq!(json["websocket"]["verdict"], "allowed", "{json:#}");
    assert_eq!(json["websocket"]["origin"], "https://app.test");
    let except = ["sec-websocket-key"];
    assert_same_headers(
        explained_headers(&json),
        handshake_headers(&received),
        &except,
    );
    assert_same_route(&json, &rig.logged("/ws/chat/1").await);
    drop(ws);

    // HTTP/2 (RFC 8441), bridged to the same HTTP/1.1 upgrade.
    let mut h2 = rig.proxy.client(Proto::H2).await;
    let (ws, _) = ws_h2(&mut h2, "/ws/news/2", &[origin])
        .await
        .unwrap_or_else(|r| panic!("{} {}", r.status(), r.text()));
    let (received, _) = rig.ws.next_handshake().await;
    // The h2 client's :authority is plain `localhost`.
    let url = format!("wss://localhost:{tls}/ws/news/2");
    let json = rig.explain(&url, &[origin, ("host", "localhost")]).await;
    assert_same_headers(
        explained_headers(&json),
        handshake_headers(&received),
        &except,
    );
    assert_same_route(&json, &rig.logged("/ws/news/2").await);
    drop(ws);

    // Refused origins: 403 from ferry on both protocols, the backend untouched.
    let accepted = rig.ws.accepted.load(std::sync::atomic::Ordering::SeqCst);
    let evil = ("origin", "https://evil.test");
    let refused = ws_h1(&rig.proxy, "/ws/chat/3", &[evil]).await;
    let status = match refused {
        Err(common::tungstenite::Error::Http(res)) => res.status().as_u16(),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let h2_refused = ws_h2(&mut h2, "/ws/chat/4", &[evil]).await.err().unwrap();
    for (path, status) in [("/ws/chat/3", status), ("/ws/chat/4", h2_refused.status())] {
        let json = rig
            .explain(&format!("wss://localhost:{tls}{path}"), &[evil])
            .await;
        assert_eq!(json["websocket"]["verdict"], "not_allowed", "{json:#}");
        assert_eq!(json["status"], status);
        assert_eq!(json["served"], false);
        let line = rig.logged(path).await;
        assert_eq!(line["status"], status);
        assert_same_route(&json, &line);
    }
    let now = rig.ws.accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(now, accepted, "the upstream is not contacted");
}

/// Redirects (a route's and the redirect_https listener's) and a 404.
async fn answers_agree(rig: &Rig) {
    let tls = rig.tls();
    let mut c = rig.proxy.client(Proto::H1).await;
    let res = c.get(&format!("localhost:{tls}"), "/old/page?q=1").await;
    let json = rig
        .explain(&format!("https://localhost:{tls}/old/page?q=1"), &[])
        .await;
    assert_eq!(json["status"], res.status());
    assert_eq!(json["location"], res.header("location").unwrap());
    assert_eq!(json["location"], "https://new.test/old/page?q=1");
    assert_same_route(&json, &rig.logged("/old/page").await);

    let redirect: SocketAddr = rig.proxy.redirect_addr.unwrap();
    let host = format!("localhost:{}", redirect.port());
    let mut c = Client::plain(redirect).await;
    let res = c.get(&host, "/x?y=1").await;
    let json = rig.explain(&format!("http://{host}/x?y=1"), &[]).await;
    assert_eq!(
        (json["status"].clone(), res.status()),
        (Value::from(308), 308)
    );
    assert_eq!(json["location"], res.header("location").unwrap());
    assert_eq!(json["location"], format!("https://localhost:{tls}/x?y=1"));

    // The API route is for host localhost only.
    let mut c = rig.proxy.client(Proto::H1).await;
    let res = c.get(&format!("other.test:{tls}"), "/api/elsewhere").await;
    let json = rig
        .explain(&format!("https://other.test:{tls}/api/elsewhere"), &[])
        .await;
    assert_eq!(
        (json["status"].clone(), res.status()),
        (Value::from(404), 404)
    );
    assert_eq!(json["route"], Value::Null);
    assert_eq!(rig.logged("/api/elsewhere").await["route"], Value::Null);
}

/// Requests ferry refuses before routing, and a path routed by its
/// normalised spelling: the same answer from `ferry route` and the proxy.
async fn refusals_agree(rig: &Rig) {
    let tls = rig.tls();
    let addr = rig.proxy.tls_addr.unwrap();
    let ca = Some(&rig.proxy.ca);
    // (method, path, extra request headers, status)
    let cases = [
        ("GET", "/api/two-hosts", "Host: evil.test\r\n", 400),
        ("GET", "/api/nul%00", "", 400),
        ("GET", "/api/%5cx", "", 400),
        ("CONNECT", "/api/tunnel", "", 501),
        // Tomcat's `;` path parameter: `/old;x/page` is `/old/page` there.
        ("GET", "/old;x/page", "", 301),
    ];
    for (method, path, extra, status) in cases {
        let target = if method == "CONNECT" {
            format!("localhost:{tls}")
        } else {
            path.to_owned()
        };
        let raw = format!("{method} {target} HTTP/1.1\r\nHost: localhost:{tls}\r\n{extra}\r\n");
        let res = raw_h1(addr, ca, raw.as_bytes()).await;
        assert_eq!(res.status, status, "{raw:?}: {res:?}");
        let mut headers = vec![];
        if !extra.is_empty() {
            headers.push(("host", format!("localhost:{tls}")));
            headers.push(("host", "evil.test".to_owned()));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let url = format!("https://localhost:{tls}{path}");
        let json = rig.explain_with(method, &url, &headers).await;
        assert_eq!(json["status"], status, "{path}: {json:#}");
        if status == 301 {
            assert_eq!(route_name(&json), "old", "{json:#}");
            let location = res.head.lines().find_map(|l| l.strip_prefix("location: "));
            assert_eq!(json["location"].as_str(), location, "{json:#}");
        } else {
            assert_eq!(json["route"], Value::Null, "{json:#}");
            assert_eq!(json["served"], false);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_and_proxy_agree_for_an_untrusted_peer() {
    let mut rig = rig(r#"["10.0.0.0/8"]"#).await;
    plain_requests_agree(&rig, false).await;
    websockets_agree(&mut rig).await;
    answers_agree(&rig).await;
    refusals_agree(&rig).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_and_proxy_agree_for_a_trusted_peer() {
    let mut rig = rig(r#"["127.0.0.0/8"]"#).await;
    plain_requests_agree(&rig, true).await;
    websockets_agree(&mut rig).await;
}
