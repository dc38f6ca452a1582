//! The decision's steps, one request head at a time.
use super::*;
use crate::config::{OriginPattern, WebSocketConfig};
use http::HeaderMap;

const CONFIG: &str = r#"
[server]
trusted_proxies = ["10.0.0.0/8"]

[[listen]]
addr = "127.0.0.1:8080"

[upstream.backend]
servers = ["backend:8000"]
read_timeout = "30s"

[[route]]
name = "old"
path_prefix = "/old"
redirect = { to = "https://new.test{uri}", status = 301 }

[[route]]
name = "ws"
path_prefix = "/ws"
upstream = "backend"
websocket = { allowed_origins = ["https://app.test"] }

[[route]]
name = "api"
hosts = ["app.test"]
path_prefix = "/api"
upstream = "backend"
read_timeout = "2m"
max_body_size = 10
request_headers = { set = { "X-Route" = "api" } }
"#;

fn config() -> Config {
    Config::parse(CONFIG, "test.toml", std::path::Path::new(".")).unwrap()
}

fn head(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut req = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(()).unwrap().into_parts().0
}

/// The decision, and the head as the upstream would get it (when forwarded).
fn decide_from(peer: &str, listener: ListenerKind, mut head: Parts) -> (Decision, Parts) {
    let peer: IpAddr = peer.parse().unwrap();
    let inbound = Inbound {
        peer,
        peer_value: &headers::ip_value(peer),
        listener,
        https_port: Some(8443),
        client_auth: None,
    };
    let decision = decide(&config(), &inbound, &mut head);
    (decision, head)
}

/// The upstream's head, checking that the request was forwarded.
fn forwarded<'h>(d: &Decision, up: &'h Parts) -> &'h Parts {
    match &d.action {
        Action::Forward(_) => up,
        other => panic!("not forwarded: {other:?}"),
    }
}

#[test]
fn a_plain_request_is_rewritten_for_the_upstream() {
    let h = head(
        "POST",
        "/api/x?q=1",
        &[
            ("host", "App.test"),
            ("connection", "keep-alive, x-drop"),
            ("x-drop", "1"),
            ("x-forwarded-for", "1.2.3.4"),
            ("content-length", "5"),
        ],
    );
    let (d, up) = decide_from("203.0.113.9", ListenerKind::Tls, h);
    assert_eq!(
        (d.route, d.upstream, d.websocket.is_none()),
        (Some(2), Some(0), true)
    );
    let Action::Forward(f) = &d.action else {
        panic!("{d:?}")
    };
    assert_eq!(f.read_timeout, Duration::from_secs(120));
    assert_eq!(up.uri, "/api/x?q=1");
    assert_eq!(up.version, Version::HTTP_11);
    let h = &up.headers;
    assert_eq!(h["host"], "App.test");
    assert_eq!(h["x-forwarded-for"], "203.0.113.9");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-route"], "api");
    assert_eq!(h["content-length"], "5");
    assert!(!h.contains_key("connection") && !h.contains_key("x-drop"));
}

#[test]
fn refusals_and_redirects_are_answered_without_an_upstream() {
    let (d, _) = decide_from("10.0.0.1", ListenerKind::Tls, head("GET", "/", &[]));
    assert!(matches!(
        d.action,
        Action::Refuse(ProxyError::BadRequest(_))
    ));
    assert_eq!(d.host, None);

    let (d, _) = decide_from(
        "10.0.0.1",
        ListenerKind::Tls,
        head("GET", "/nowhere", &[("host", "x.test")]),
    );
    assert!(matches!(d.action, Action::Refuse(ProxyError::NoRoute)));

    let big = head(
        "POST",
        "/api",
        &[("host", "app.test"), ("content-length", "11")],
    );
    let (d, _) = decide_from("10.0.0.1", ListenerKind::Tls, big);
    assert!(matches!(
        d.action,
        Action::Refuse(ProxyError::PayloadTooLarge { limit: 10 })
    ));
    assert_eq!(d.route, Some(2));

    let (d, _) = decide_from(
        "10.0.0.1",
        ListenerKind::Tls,
        head("GET", "/old/a?b=1", &[("host", "x.test")]),
    );
    let Action::Redirect { status, location } = &d.action else {
        panic!("{d:?}")
    };
    assert_eq!(
        (status.as_u16(), location.to_str().unwrap()),
        (301, "https://new.test/old/a?b=1")
    );

    let (d, _) = decide_from(
        "10.0.0.1",
        ListenerKind::RedirectHttps,
        head("GET", "/p?q", &[("host", "x.test:80")]),
    );
    let Action::Redirect { status, location } = &d.action else {
        panic!("{d:?}")
    };
    assert_eq!(
        (status.as_u16(), location.to_str().unwrap()),
        (308, "https://x.test:8443/p?q")
    );
    assert_eq!(d.route, None);
}

#[test]
fn websocket_handshakes_are_checked_and_stay_upgrades() {
    let ws = |origin: &str| {
        head(
            "GET",
            "/ws/1",
            &[
                ("host", "x.test"),
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("origin", origin),
                ("content-length", "0"),
            ],
        )
    };
    let (d, up) = decide_from("10.0.0.1", ListenerKind::Plain, ws("https://app.test"));
    let w = d.websocket.clone().unwrap();
    assert_eq!(w.handshake, Handshake::Http1);
    assert_eq!(w.origin, OriginCheck::Allowed("https://app.test".into()));
    let h = &forwarded(&d, &up).headers;
    assert_eq!(
        (
            h["connection"].to_str().unwrap(),
            h["upgrade"].to_str().unwrap()
        ),
        ("upgrade", "websocket")
    );
    assert!(!h.contains_key("content-length"));
    assert_eq!(h["x-forwarded-proto"], "http");

    let (d, _) = decide_from("10.0.0.1", ListenerKind::Plain, ws("https://evil.test"));
    assert!(matches!(
        d.action,
        Action::Refuse(ProxyError::OriginNotAllowed { .. })
    ));
    assert_eq!(
        d.websocket.unwrap().origin.origin(),
        Some("https://evil.test")
    );

    // An h2c upgrade is not a WebSocket: stripped and proxied as a plain request.
    let h2c = head(
        "GET",
        "/ws/1",
        &[
            ("host", "x.test"),
            ("connection", "upgrade"),
            ("upgrade", "h2c"),
        ],
    );
    let (d, up) = decide_from("10.0.0.1", ListenerKind::Plain, h2c);
    assert!(d.websocket.is_none());
    assert!(!forwarded(&d, &up).headers.contains_key("upgrade"));
}

#[test]
fn origin_checks() {
    let mut ws = WebSocketConfig::default();
    let mut h = HeaderMap::new();
    assert_eq!(OriginCheck::check(&ws, &h), OriginCheck::NotSent);
    ws.require_origin = true;
    assert_eq!(OriginCheck::check(&ws, &h), OriginCheck::Missing);
    h.insert(
        header::ORIGIN,
        HeaderValue::from_static("https://APP.test:443"),
    );
    assert_eq!(
        OriginCheck::check(&ws, &h),
        OriginCheck::Unrestricted("https://APP.test:443".into())
    );
    ws.allowed_origins = vec![OriginPattern::parse("https://app.test").unwrap()];
    assert_eq!(
        OriginCheck::check(&ws, &h),
        OriginCheck::Allowed("https://APP.test:443".into())
    );
    h.insert(
        header::ORIGIN,
        HeaderValue::from_static("https://evil.test"),
    );
    let verdict = OriginCheck::check(&ws, &h);
    assert!(matches!(
        verdict.refusal(),
        Some(ProxyError::OriginNotAllowed { .. })
    ));
}

#[test]
fn trusted_peers_keep_their_forwarded_chain() {
    let h = head(
        "GET",
        "/api",
        &[("host", "app.test"), ("x-forwarded-for", "198.51.100.7")],
    );
    let (d, up) = decide_from("10.1.1.1", ListenerKind::Tls, h);
    let h = &forwarded(&d, &up).headers;
    assert_eq!(h["x-forwarded-for"], "198.51.100.7, 10.1.1.1");
    assert_eq!(h["x-real-ip"], "198.51.100.7");
}
