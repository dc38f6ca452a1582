//! What the upstream and the client see: forwarded headers, hop-by-hop
//! stripping, Host, HTTP/2 → HTTP/1.1 translation, route header edits.

mod common;

use common::*;
use http::Response;

/// A TLS and a plain listener; route `edited` changes headers both ways, `all` catches the rest.
fn config(backend: std::net::SocketAddr) -> ProxyToml {
    ProxyToml::new()
        .tls_listener()
        .plain_listener()
        .upstream("backend", &[backend])
        .route_with(
            "edited",
            "/edited",
            "backend",
            r#"
request_headers = { set = { "X-Route" = "edited", "Host" = "internal.test" }, add = { "X-Added" = "1" }, remove = ["X-Drop-Me"] }
response_headers = { set = { "X-Frame-Options" = "DENY" }, remove = ["Server"] }"#,
        )
        .route("all", "/", "backend")
}

#[tokio::test]
async fn forwarded_headers_replace_a_spoofed_chain_from_untrusted_clients() {
    let backend = Backend::echo("b").await;
    let proxy = TestProxy::start(&config(backend.addr).build()).await;
    for proto in [Proto::H1, Proto::H2] {
        let mut c = proxy.client(proto).await;
        let req = request("GET", "localhost:8443", "/x", proto == Proto::H2)
            .header("x-forwarded-for", "6.6.6.6")
            .header("x-real-ip", "6.6.6.6")
            .header("x-forwarded-proto", "http")
            .header("x-forwarded-host", "evil.test")
            .body(empty())
            .unwrap();
        let res = c.fetch(req).await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.echoed_all("x-forwarded-for"),
            ["127.0.0.1"],
            "{proto:?}"
        );
        assert_eq!(res.echoed("x-real-ip").as_deref(), Some("127.0.0.1"));
        assert_eq!(res.echoed("x-forwarded-proto").as_deref(), Some("https"));
        assert_eq!(
            res.echoed("x-forwarded-host").as_deref(),
            Some("localhost:8443")
        );
        // The client's Host is kept (HTTP/2's :authority becomes Host).
        assert_eq!(res.echoed_all("host"), ["localhost:8443"], "{proto:?}");
        assert_eq!(
            res.echoed_line("version").as_deref(),
            Some("HTTP/1.1"),
            "{proto:?}"
        );
    }

    // Plain listener: proto is http.
    let mut c = Client::plain(proxy.plain_addr.unwrap()).await;
    let res = c.get("localhost", "/").await;
    assert_eq!(res.echoed("x-forwarded-proto").as_deref(), Some("http"));
}

#[tokio::test]
async fn trusted_proxies_chains_are_appended_to() {
    let backend = Backend::echo("b").await;
    let toml = config(backend.addr)
        .server(r#"trusted_proxies = ["127.0.0.0/8"]"#)
        .build();
    let proxy = TestProxy::start(&toml).await;
    let mut c = proxy.client(Proto::H1).await;
    let req = request("GET", "localhost", "/", false)
        .header("x-forwarded-for", "203.0.113.7, 127.0.0.9")
        .header("x-forwarded-proto", "https")
        .body(empty())
        .unwrap();
    let res = c.fetch(req).await;
    assert_eq!(
        res.echoed("x-forwarded-for").as_deref(),
        Some("203.0.113.7, 127.0.0.9, 127.0.0.1")
    );
    assert_eq!(res.echoed("x-real-ip").as_deref(), Some("203.0.113.7"));
}

#[tokio::test]
async fn hop_by_hop_headers_and_the_ones_connection_names_are_stripped() {
    let backend = Backend::echo("b").await;
    let proxy = TestProxy::start(&config(backend.addr).build()).await;
    let mut c = proxy.client(Proto::H1).await;
    let req = request("GET", "localhost", "/", false)
        .header("connection", "keep-alive, X-Secret")
        .header("x-secret", "hunter2")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("te", "trailers")
        .header("x-end-to-end", "kept")
        .body(empty())
        .unwrap();
    let res = c.fetch(req).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.echoed("x-secret"), None);
    assert_eq!(res.echoed("keep-alive"), None);
    assert_eq!(res.echoed("proxy-connection"), None);
    assert_eq!(res.echoed("te").as_deref(), Some("trailers"));
    assert_eq!(res.echoed("x-end-to-end").as_deref(), Some("kept"));
    // The same keep-alive connection still works.
    assert_eq!(c.get("localhost", "/again").await.status(), 200);
}

#[tokio::test]
async fn h2c_upgrade_is_never_forwarded() {
    let backend = Backend::echo("b").await;
    let proxy = TestProxy::start(&config(backend.addr).build()).await;
    let mut c = Client::plain(proxy.plain_addr.unwrap()).await;
    let req = request("GET", "localhost", "/", false)
        .header("connection", "Upgrade, HTTP2-Settings")
        .header("upgrade", "h2c")
        .header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA")
        .body(empty())
        .unwrap();
    let res = c.fetch(req).await;
    assert_eq!(res.status(), 200, "a plain request, not a 101");
    assert_eq!(res.echoed("upgrade"), None);
    assert_eq!(res.echoed("http2-settings"), None);
    assert_eq!(res.echoed("connection"), None);
}

#[tokio::test]
async fn upstream_hop_by_hop_response_headers_are_stripped_and_others_pass_untouched() {
    let backend = Backend::start(|_req| async {
        Response::builder()
            .header("connection", "x-internal")
            .header("x-internal", "secret")
            .header("keep-alive", "timeout=5")
            .header("cache-control", "private, max-age=0")
            .header("set-cookie", "a=1; Secure")
            .header("set-cookie", "b=2; HttpOnly")
            .header("server", "uvicorn")
            .body(body("hello"))
            .unwrap()
    })
    .await;
    let proxy = TestProxy::start(&config(backend.addr).build()).await;
    for proto in [Proto::H1, Proto::H2] {
        let mut c = proxy.client(proto).await;
        let res = c.get("localhost", "/").await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.text(), "hello");
        assert_eq!(res.header("x-internal"), None, "{proto:?}");
        assert_eq!(res.header("keep-alive"), None, "{proto:?}");
        assert_eq!(res.header("cache-control"), Some("private, max-age=0"));
        let cookies: Vec<_> = res.head.headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1; Secure", "b=2; HttpOnly"]);
        assert_eq!(res.header("server"), Some("uvicorn"));

        // A route's response_headers apply on top.
        let res = c.get("localhost", "/edited").await;
        assert_eq!(res.header("x-frame-options"), Some("DENY"));
        assert_eq!(res.header("server"), None);
    }
}

#[tokio::test]
async fn route_request_headers_set_add_and_remove() {
    let backend = Backend::echo("b").await;
    let proxy = TestProxy::start(&config(backend.addr).build()).await;
    let mut c = proxy.client(Proto::H2).await;
    let req = request("GET", "localhost", "/edited", true)
        .header("x-drop-me", "x")
        .header("x-added", "0")
        .body(empty())
        .unwrap();
    let res = c.fetch(req).await;
    assert_eq!(res.echoed("x-route").as_deref(), Some("edited"));
    assert_eq!(res.echoed_all("x-added"), ["0", "1"]);
    assert_eq!(res.echoed("x-drop-me"), None);
    assert_eq!(res.echoed_all("host"), ["internal.test"]);
}

#[tokio::test]
async fn http2_cookies_reach_http11_upstreams_as_one_header() {
    let backend = Backend::echo("b").await;
    let proxy = TestProxy::start(&config(backend.addr).build()).await;
    let mut c = proxy.client(Proto::H2).await;
    let req = request("POST", "localhost", "/submit?q=1", true)
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(body("payload"))
        .unwrap();
    let res = c.fetch(req).await;
    assert_eq!(res.echoed_all("cookie"), ["a=1; b=2"]);
    assert_eq!(res.echoed_line("method").as_deref(), Some("POST"));
    assert_eq!(res.echoed_line("uri").as_deref(), Some("/submit?q=1"));
    assert_eq!(res.echoed_line("body-bytes").as_deref(), Some("7"));
}
