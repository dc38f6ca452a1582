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

/// The refusal for `head`, from an untrusted client on the TLS listener.
fn refusal(head: Parts) -> Option<(u16, &'static str)> {
    let (d, _) = decide_from("203.0.113.9", ListenerKind::Tls, head);
    match d.action {
        Action::Refuse(e) => Some((e.status().as_u16(), e.public_message())),
        _ => None,
    }
}

fn h2(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut h = head(method, uri, headers);
    h.version = Version::HTTP_2;
    h
}

#[test]
fn hosts_must_be_one_valid_authority() {
    let bad = [
        head(
            "GET",
            "/api",
            &[("host", "app.test"), ("host", "evil.test")],
        ),
        // HTTP/2 without :authority: the same rule for `host`.
        h2(
            "GET",
            "/api",
            &[("host", "app.test"), ("host", "evil.test")],
        ),
        head("GET", "/api", &[("host", "app.test@evil.test")]),
        head("GET", "/api", &[("host", "app.test:abc")]),
        head("GET", "/api", &[("host", "app.test:")]),
        head("GET", "http://u@app.test/api", &[("host", "app.test")]),
        head("GET", "ftp://app.test/api", &[("host", "app.test")]),
        h2("GET", "https://u@app.test/api", &[]),
        // :authority and a host naming another origin.
        h2("GET", "https://app.test/api", &[("host", "evil.test")]),
        h2("GET", "https://app.test/api", &[("host", "app.test:8443")]),
    ];
    for h in bad {
        let what = format!("{:?} {:?} {:?}", h.version, h.uri, h.headers);
        assert_eq!(refusal(h).map(|r| r.0), Some(400), "{what}");
    }
    // The same origin spelled another way is fine on HTTP/2.
    let ok = h2("GET", "https://app.test/api", &[("host", "APP.test:443")]);
    assert_eq!(refusal(ok), None);
    let ok = h2("GET", "/api", &[("host", "app.test")]);
    assert_eq!(refusal(ok), None);
}

/// RFC 9112 §3.2.2: an absolute-form target's authority wins, and the
/// upstream's Host says so.
#[test]
fn an_absolute_form_target_replaces_host() {
    let h = head("GET", "http://app.test/api/x", &[("host", "other.test")]);
    let (d, up) = decide_from("203.0.113.9", ListenerKind::Tls, h);
    assert_eq!(d.route, Some(2), "routed on the target's host");
    let up = forwarded(&d, &up);
    assert_eq!(up.headers["host"], "app.test");
    assert_eq!(up.headers["x-forwarded-host"], "app.test");
    assert_eq!(up.uri, "/api/x");
}

#[test]
fn methods_and_connect() {
    let lower = head("get", "/api", &[("host", "app.test")]);
    assert_eq!(refusal(lower), Some((400, "invalid method")));
    // An unknown upper-case method is the upstream's business.
    assert_eq!(
        refusal(head("PURGE", "/api", &[("host", "app.test")])),
        None
    );

    let connect = head("CONNECT", "app.test:443", &[("host", "app.test:443")]);
    assert_eq!(refusal(connect).map(|r| r.0), Some(501));
    let connect = h2("CONNECT", "app.test:443", &[]);
    assert_eq!(refusal(connect).map(|r| r.0), Some(501));
    for (protocol, refused) in [("websocket", None), ("connect-udp", Some(501))] {
        let mut h = h2("CONNECT", "https://app.test/ws/1", &[]);
        h.extensions
            .insert(hyper::ext::Protocol::from_static(protocol));
        assert_eq!(refusal(h).map(|r| r.0), refused, "{protocol}");
    }
}

#[test]
fn nul_and_backslash_paths_are_refused() {
    for path in ["/api\\x", "/api/%00", "/%5capi", "/api%5C..%5Cold"] {
        let h = head("GET", path, &[("host", "app.test")]);
        assert_eq!(refusal(h).map(|r| r.0), Some(400), "{path}");
    }
    // Path parameters are routed as Tomcat resolves them.
    let h = head("GET", "/api/..;/old/x", &[("host", "app.test")]);
    let (d, _) = decide_from("203.0.113.9", ListenerKind::Tls, h);
    assert_eq!(d.route, Some(0), "routed as /old/x");
}

#[test]
fn edge_only_headers_are_kept_from_trusted_proxies_only() {
    let sent = [
        ("host", "app.test"),
        ("forwarded", "for=1.2.3.4"),
        ("x-forwarded-port", "1"),
        ("x-forwarded-prefix", "/admin"),
        ("true-client-ip", "1.2.3.4"),
        ("cf-connecting-ip", "1.2.3.4"),
        ("x_forwarded_for", "1.2.3.4"),
        ("x-ok", "1"),
    ];
    let (d, up) = decide_from("203.0.113.9", ListenerKind::Tls, head("GET", "/api", &sent));
    let mut names: Vec<&str> = forwarded(&d, &up)
        .headers
        .keys()
        .map(|k| k.as_str())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "host",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-ok",
            "x-real-ip",
            "x-route"
        ]
    );
    let (d, up) = decide_from("10.1.1.1", ListenerKind::Tls, head("GET", "/api", &sent));
    let h = &forwarded(&d, &up).headers;
    for (name, value) in &sent[1..] {
        assert_eq!(h[*name], *value, "{name}");
    }
}

#[test]
fn rfc7239_forwarded_is_appended_when_asked_for() {
    let mut config = config();
    config.server.forwarded_header = true;
    let run = |peer: &str, sent: &[(&str, &str)]| {
        let peer: IpAddr = peer.parse().unwrap();
        let inbound = Inbound {
            peer,
            peer_value: &headers::ip_value(peer),
            listener: ListenerKind::Tls,
            https_port: None,
            client_auth: None,
        };
        let mut h = head("GET", "/api", sent);
        decide(&config, &inbound, &mut h);
        let all: Vec<String> = h
            .headers
            .get_all("forwarded")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        all
    };
    let spoof = [("host", "app.test:8443"), ("forwarded", "for=1.2.3.4")];
    assert_eq!(
        run("2001:db8::7", &spoof),
        ["for=\"[2001:db8::7]\";proto=https;host=\"app.test:8443\""]
    );
    assert_eq!(
        run(
            "10.1.1.1",
            &[("host", "app.test"), ("forwarded", "for=1.2.3.4")]
        ),
        ["for=1.2.3.4, for=10.1.1.1;proto=https;host=app.test"]
    );
}
