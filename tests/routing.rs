//! Routing through a real ferry: file order, prefix / exact / regex / host
//! semantics, normalised paths, redirect routes, 404s.

mod common;

use common::*;

async fn start_routes() -> (TestProxy, Vec<Backend>) {
    let ws = Backend::echo("ws").await;
    let api = Backend::echo("api").await;
    let exact = Backend::echo("exact").await;
    let other_host = Backend::echo("other").await;
    let app = Backend::echo("app").await;
    let toml = ProxyToml::new()
        .tls_listener()
        .upstream("ws", &[ws.addr])
        .upstream("api", &[api.addr])
        .upstream("exact", &[exact.addr])
        .upstream("other", &[other_host.addr])
        .upstream("app", &[app.addr])
        // The route table under test, as a user writes it (file order is match order).
        .raw(
            r#"
[[route]]
name = "websockets"
path_regex = "(?i)^/api/v1/(communications|notifications)/ws/"
upstream = "ws"

[[route]]
name = "api"
path_prefix = ["/api", "/auth"]
upstream = "api"

[[route]]
name = "health"
path_exact = "/healthz"
upstream = "exact"

[[route]]
name = "other"
hosts = ["*.other.test", "exact.test"]
upstream = "other"

[[route]]
name = "old"
path_prefix = "/old"
redirect = { to = "https://new.example{uri}", status = 301 }

[[route]]
name = "app"
hosts = ["localhost", "127.0.0.1"]
path_prefix = "/"
upstream = "app"
"#,
        )
        .build();
    let proxy = TestProxy::start(&toml).await;
    (proxy, vec![ws, api, exact, other_host, app])
}

#[tokio::test]
async fn routes_match_in_file_order_with_each_kind_of_condition() {
    let (proxy, _backends) = start_routes().await;
    for proto in [Proto::H1, Proto::H2] {
        let mut c = proxy.client(proto).await;
        let cases: &[(&str, &str, &str)] = &[
            ("localhost", "/api/v1/communications/ws/42", "ws"),
            ("localhost", "/API/V1/notifications/ws/7", "ws"),
            ("localhost", "/api/v1/users", "api"),
            ("localhost", "/api", "api"),
            ("localhost", "/auth/login?next=/", "api"),
            ("localhost", "/apix", "app"),
            ("localhost", "/healthz", "exact"),
            ("localhost", "/healthz/x", "app"),
            ("www.other.test", "/anything", "other"),
            ("a.b.other.test", "/", "other"),
            ("EXACT.test", "/", "other"),
            ("localhost", "/", "app"),
            ("127.0.0.1:8443", "/x", "app"),
            // Dot segments are resolved before matching: this is /api/x.
            ("localhost", "/app/../api/x", "api"),
            ("localhost", "/app/%2e%2e/api/x", "api"),
        ];
        for (host, path, want) in cases {
            let res = c.get(host, path).await;
            assert_eq!(res.status(), 200, "{proto:?} {host}{path}: {}", res.text());
            assert_eq!(
                res.echoed_line("backend").as_deref(),
                Some(*want),
                "{proto:?} {host}{path}"
            );
        }
        // The original path and query are forwarded unchanged.
        let res = c.get("localhost", "/auth/login?next=/&x=%20y").await;
        assert_eq!(
            res.echoed_line("uri").as_deref(),
            Some("/auth/login?next=/&x=%20y")
        );
    }
}

#[tokio::test]
async fn unmatched_requests_get_404_with_a_short_body() {
    let (proxy, _backends) = start_routes().await;
    let mut c = proxy.client(Proto::H1).await;
    // "other.test" itself is not covered by "*.other.test"; the app route needs localhost.
    let res = c.get("other.test", "/").await;
    assert_eq!(res.status(), 404);
    assert_eq!(
        res.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(res.text(), "404 no route for this host and path\n");

    let req = request("GET", "nowhere.test", "/", false)
        .header("accept", "application/json")
        .body(empty())
        .unwrap();
    let res = c.fetch(req).await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(
        res.text(),
        "{\"status\":404,\"error\":\"no route for this host and path\"}\n"
    );
}

#[tokio::test]
async fn redirect_routes_fill_placeholders() {
    let (proxy, _backends) = start_routes().await;
    let mut c = proxy.client(Proto::H2).await;
    let res = c.get("localhost", "/old/page?a=1").await;
    assert_eq!(res.status(), 301);
    assert_eq!(
        res.header("location"),
        Some("https://new.example/old/page?a=1")
    );
}

#[tokio::test]
async fn http11_without_host_is_a_bad_request() {
    let backend = Backend::echo("b").await;
    let proxy = TestProxy::start(&simple_config(backend.addr)).await;
    let mut c = Client::plain(proxy.plain_addr.unwrap()).await;
    let req = http::Request::builder().uri("/").body(empty()).unwrap();
    let res = c.fetch(req).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.text(), "400 missing Host header\n");
}
