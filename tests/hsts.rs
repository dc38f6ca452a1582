//! `Strict-Transport-Security` as a browser sees it: on every response over
//! TLS (HTTP/1.1 and HTTP/2, ferry's own errors too), the route's value over
//! `server.hsts`, once even when the upstream sent its own, and never over
//! plain HTTP — the redirect to https included (RFC 6797 §7.2).

mod common;

use common::*;
use http::{Request, Response};
use hyper::body::Incoming;

const GLOBAL: &str = "max-age=63072000; includeSubDomains";

async fn start() -> (TestProxy, Backend) {
    // An upstream that sets its own HSTS on /own.
    let backend = Backend::start(|req: Request<Incoming>| async move {
        let mut res = Response::builder();
        if req.uri().path() == "/own" {
            res = res.header("strict-transport-security", "max-age=1");
        }
        res.body(body("ok")).unwrap()
    })
    .await;
    let toml = ProxyToml::new()
        .server(&format!("hsts = \"{GLOBAL}\""))
        .tls_listener()
        .plain_listener()
        .plain_listener_with("redirect_https = true")
        .upstream("backend", &[backend.addr])
        .route_with(
            "short",
            "/short",
            "backend",
            "hosts = [\"localhost\"]\nhsts = \"max-age=60\"",
        )
        .route_with("app", "/", "backend", "hosts = [\"localhost\"]")
        .build();
    (TestProxy::start(&toml).await, backend)
}

fn hsts(res: &Fetched) -> Vec<&str> {
    res.head
        .headers
        .get_all("strict-transport-security")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

#[tokio::test]
async fn hsts_is_on_every_tls_response_and_never_on_plain_http() {
    let (proxy, _backend) = start().await;
    for proto in [Proto::H1, Proto::H2] {
        let mut c = proxy.client(proto).await;
        let res = c.get("localhost", "/").await;
        assert_eq!((res.status(), hsts(&res)), (200, vec![GLOBAL]), "{proto:?}");
        // The route's own value wins over server.hsts.
        let res = c.get("localhost", "/short").await;
        assert_eq!(hsts(&res), ["max-age=60"], "{proto:?}");
        // The upstream's is replaced, not doubled.
        let res = c.get("localhost", "/own").await;
        assert_eq!(hsts(&res), [GLOBAL], "{proto:?}");
        // ferry's own answers too (404: no route for this host).
        let res = c.get("other.test", "/").await;
        assert_eq!((res.status(), hsts(&res)), (404, vec![GLOBAL]), "{proto:?}");
    }

    // Plain HTTP: a browser must ignore HSTS there (RFC 6797 §8.1), so ferry never sends it.
    let mut c = Client::plain(proxy.plain_addr.unwrap()).await;
    let res = c.get("localhost", "/").await;
    assert_eq!((res.status(), hsts(&res)), (200, vec![]));
    let res = c.get("localhost", "/own").await;
    assert_eq!(
        hsts(&res),
        ["max-age=1"],
        "the upstream's own passes untouched"
    );
    let mut c = Client::plain(proxy.redirect_addr.unwrap()).await;
    let res = c.get("localhost", "/").await;
    assert_eq!((res.status(), hsts(&res)), (308, vec![]));
}

#[test]
fn check_refuses_an_hsts_without_max_age() {
    let dir = tempfile::tempdir().unwrap();
    let toml = ProxyToml::new()
        .server("hsts = \"includeSubDomains\"")
        .plain_listener()
        .upstream("backend", &["127.0.0.1:9"])
        .route("all", "/", "backend")
        .build();
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, toml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["check", "-c", path.to_str().unwrap()])
        .env_remove("FERRY_CONFIG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("server.hsts: `includeSubDomains` must start with `max-age=`"),
        "{err}"
    );
}
