//! Requests that would make ferry and the upstream disagree about what was
//! asked, written byte by byte over TLS (HTTP/1.1, and HTTP/2 from hand-built
//! frames) against upstreams that record the exact bytes they receive. Each
//! case checks the status, what the upstream got (or that it got nothing),
//! and that a normal request on a new connection is still served.

mod common;

use common::*;

/// An app on `/`, and a `/secret` route sent elsewhere (to `vault`).
struct Rig {
    proxy: TestProxy,
    app: RawBackend,
    vault: RawBackend,
}

async fn start(server_keys: &str) -> Rig {
    let app = RawBackend::start().await;
    let vault = RawBackend::start().await;
    let toml = ProxyToml::new()
        .server(server_keys)
        .tls_listener()
        .upstream("app", &[app.addr])
        .upstream("vault", &[vault.addr])
        .route("secret", "/secret", "vault")
        .route("app", "/", "app")
        .build();
    let proxy = TestProxy::start(&toml).await;
    Rig { proxy, app, vault }
}

impl Rig {
    async fn h1(&self, request: &str) -> RawResponse {
        raw_h1(
            self.proxy.tls_addr.unwrap(),
            Some(&self.proxy.ca),
            request.as_bytes(),
        )
        .await
    }

    async fn h2(&self) -> RawH2 {
        RawH2::connect(self.proxy.tls_addr.unwrap(), &self.proxy.ca).await
    }

    fn received(&self) -> (usize, usize) {
        (self.app.received().len(), self.vault.received().len())
    }

    /// A normal request on a new connection reaches the app.
    async fn still_serves(&self) {
        let before = self.app.received().len();
        let res = self.h1("GET /ok HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert_eq!(res.status, 200, "{res:?}");
        let head = self.app.only_head_since(before);
        assert!(head.starts_with("GET /ok HTTP/1.1\r\n"), "{head}");
    }

    /// `request` gets `status` from ferry and reaches no upstream.
    async fn refused(&self, request: &str, status: u16) {
        let before = self.received();
        let res = self.h1(request).await;
        let shown: String = request.chars().take(100).collect();
        assert_eq!(res.status, status, "{shown:?}: {res:?}");
        assert_eq!(self.received(), before, "{shown:?} was forwarded");
        self.still_serves().await;
    }
}

fn header_lines<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.split("\r\n")
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.eq_ignore_ascii_case(name))
        })
        .collect()
}

#[tokio::test]
async fn duplicate_and_malformed_hosts_are_400_and_never_forwarded() {
    let rig = start("").await;
    for request in [
        "GET / HTTP/1.1\r\nHost: localhost\r\nHost: evil.test\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: localhost@evil.test\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: localhost:abc\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: localhost:\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: localhost:99999\r\n\r\n",
        "GET https://user@localhost/ HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ] {
        rig.refused(request, 400).await;
    }
}

/// RFC 9112 §3.2.2: the absolute-form target's authority is the one asked
/// for; the upstream gets it as its only Host.
#[tokio::test]
async fn an_absolute_form_target_replaces_the_host_header() {
    let rig = start("").await;
    let res = rig
        .h1("GET https://localhost/x HTTP/1.1\r\nHost: other.test\r\n\r\n")
        .await;
    assert_eq!(res.status, 200);
    let head = rig.app.only_head_since(0);
    assert!(head.starts_with("GET /x HTTP/1.1\r\n"), "{head}");
    assert_eq!(header_lines(&head, "host"), ["host: localhost"]);
    assert_eq!(
        header_lines(&head, "x-forwarded-host"),
        ["x-forwarded-host: localhost"]
    );
}

#[tokio::test]
async fn http2_host_fields_must_agree_with_the_authority() {
    let rig = start("").await;
    let get = |extra: &'static [(&'static str, &'static str)]| {
        let mut fields = vec![(":method", "GET"), (":scheme", "https"), (":path", "/")];
        fields.extend_from_slice(extra);
        fields
    };
    let cases: [&[(&str, &str)]; 4] = [
        // No :authority, and two host fields.
        &[("host", "localhost"), ("host", "evil.test")],
        // :authority and a host naming another origin.
        &[(":authority", "localhost"), ("host", "evil.test")],
        &[(":authority", "localhost"), ("host", "localhost:8443")],
        // Userinfo in :authority.
        &[(":authority", "user@localhost")],
    ];
    for extra in cases {
        let before = rig.received();
        let mut h2 = rig.h2().await;
        let outcome = h2.request(&get(extra)).await;
        assert_eq!(outcome, H2Outcome::Status(400), "{extra:?}");
        assert_eq!(rig.received(), before, "{extra:?} was forwarded");
        rig.still_serves().await;
    }
    // The same origin spelled two ways is one origin; one host without
    // :authority is the authority.
    let before = rig.app.received().len();
    let mut h2 = rig.h2().await;
    let same = get(&[(":authority", "localhost"), ("host", "LOCALHOST:443")]);
    assert_eq!(h2.request(&same).await, H2Outcome::Status(200));
    let only_host = get(&[("host", "localhost")]);
    assert_eq!(h2.request(&only_host).await, H2Outcome::Status(200));
    assert_eq!(rig.app.received().len(), before + 2);
}

#[tokio::test]
async fn lower_case_methods_are_400_on_both_protocols() {
    let rig = start("").await;
    rig.refused("get / HTTP/1.1\r\nHost: localhost\r\n\r\n", 400)
        .await;
    rig.refused(
        "Post / HTTP/1.1\r\nHost: localhost\r\ncontent-length: 0\r\n\r\n",
        400,
    )
    .await;
    let before = rig.received();
    let mut h2 = rig.h2().await;
    let fields = [
        (":method", "get"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", "/"),
    ];
    assert_eq!(h2.request(&fields).await, H2Outcome::Status(400));
    assert_eq!(rig.received(), before);
    rig.still_serves().await;
}

/// Content-Length that is not one decimal number is 400 (hyper's parser
/// answers these; pinned so that a limit never turns them into 431).
#[tokio::test]
async fn absurd_content_lengths_are_400() {
    let rig = start("").await;
    for value in ["99999999999999999999", "+5", "-1", "5, 6", "5, 5", "0x5"] {
        let request =
            format!("POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: {value}\r\n\r\nhello");
        rig.refused(&request, 400).await;
    }
}

fn big_request(header_bytes: usize) -> String {
    format!(
        "GET /big HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(header_bytes)
    )
}

async fn h2_big(rig: &Rig, header_bytes: usize) -> H2Outcome {
    let big = "a".repeat(header_bytes);
    let fields = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", "/big"),
        ("x-big", big.as_str()),
    ];
    rig.h2().await.request(&fields).await
}

/// `server.max_header_size` (16 KiB by default) bounds the request head on
/// HTTP/1.1 as on HTTP/2: 431 above it, and the upstream never sees it.
#[tokio::test]
async fn one_header_size_limit_for_both_protocols() {
    let rig = start("").await;
    rig.refused(&big_request(20_000), 431).await;
    rig.refused(&big_request(420_000), 431).await;
    assert_eq!(h2_big(&rig, 20_000).await, H2Outcome::Status(431));
    assert_eq!(rig.received().0, 2, "only the still-serves requests");
    // Under the limit, on both.
    let res = rig.h1(&big_request(12_000)).await;
    assert_eq!(res.status, 200);
    assert_eq!(h2_big(&rig, 12_000).await, H2Outcome::Status(200));

    // A larger limit lets larger heads through, and still stops at it.
    let rig = start("max_header_size = \"64KiB\"").await;
    assert_eq!(rig.h1(&big_request(40_000)).await.status, 200);
    assert_eq!(h2_big(&rig, 40_000).await, H2Outcome::Status(200));
    let head = rig.app.heads().remove(0);
    assert!(head.len() > 40_000);
    rig.refused(&big_request(70_000), 431).await;
    assert_eq!(h2_big(&rig, 70_000).await, H2Outcome::Status(431));
}

/// Issue 13's path table: a path that some upstream framework reads as
/// `/secret` is routed as `/secret` (to the vault, the original spelling
/// forwarded), or refused.
#[tokio::test]
async fn no_spelling_of_a_path_reaches_another_route() {
    let rig = start("").await;
    // (sent, who receives it: "vault", "app", or a status ferry answers)
    let cases = [
        ("/secret;x", "vault"),
        ("/public/..;/secret", "vault"),
        ("/secret;jsessionid=1/x", "vault"),
        ("/secret%2fx", "vault"),
        ("/secret%3bx", "vault"),
        ("/public/%2e%2e/secret", "vault"),
        ("/public%2F..%2Fsecret", "vault"),
        ("//secret", "vault"),
        ("/%73ecret", "vault"),
        ("/\\secret", "400"),
        ("/public\\..\\secret", "400"),
        ("/%5csecret", "400"),
        ("/public%5C..%5Csecret", "400"),
        ("/secret%00", "400"),
        // Routing is case-sensitive, as in nginx.
        ("/SECRET", "app"),
        ("/secretx", "app"),
    ];
    for (path, expect) in cases {
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        if let Ok(status) = expect.parse::<u16>() {
            rig.refused(&request, status).await;
            continue;
        }
        let (app, vault) = rig.received();
        let res = rig.h1(&request).await;
        assert_eq!(res.status, 200, "{path}: {res:?}");
        let head = match expect {
            "vault" => rig.vault.only_head_since(vault),
            _ => rig.app.only_head_since(app),
        };
        // The upstream gets the client's spelling, unchanged.
        assert!(
            head.starts_with(&format!("GET {path} HTTP/1.1\r\n")),
            "{path}: {head}"
        );
    }
}

const EDGE_ONLY: &str = "Forwarded: for=6.6.6.6\r\n\
    X-Forwarded-Port: 1\r\n\
    X-Forwarded-Prefix: /admin\r\n\
    X-Forwarded-Server: evil\r\n\
    True-Client-IP: 6.6.6.6\r\n\
    CF-Connecting-IP: 6.6.6.6\r\n\
    X-Real-IP: 6.6.6.6\r\n\
    X_Forwarded_For: 6.6.6.6\r\n\
    X-Ok: kept\r\n";

#[tokio::test]
async fn headers_only_the_edge_may_set_are_dropped_from_untrusted_peers() {
    let rig = start("trusted_proxies = [\"10.0.0.0/8\"]").await;
    let request = format!("GET / HTTP/1.1\r\nHost: localhost\r\n{EDGE_ONLY}\r\n");
    assert_eq!(rig.h1(&request).await.status, 200);
    let head = rig.app.only_head_since(0);
    assert!(!head.contains("6.6.6.6"), "{head}");
    for name in [
        "forwarded",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-forwarded-server",
        "true-client-ip",
        "cf-connecting-ip",
        "x_forwarded_for",
    ] {
        assert!(header_lines(&head, name).is_empty(), "{name}: {head}");
    }
    assert_eq!(header_lines(&head, "x-real-ip"), ["x-real-ip: 127.0.0.1"]);
    assert_eq!(header_lines(&head, "x-ok"), ["x-ok: kept"]);

    // From a trusted proxy they pass; RFC 7239 Forwarded is appended to.
    let rig = start("trusted_proxies = [\"127.0.0.0/8\"]\nforwarded_header = true").await;
    assert_eq!(rig.h1(&request).await.status, 200);
    let head = rig.app.only_head_since(0);
    for line in EDGE_ONLY.split("\r\n").filter(|l| !l.is_empty()) {
        let (name, _) = line.split_once(':').unwrap();
        if name != "Forwarded" && name != "X-Real-IP" {
            assert_eq!(header_lines(&head, name).len(), 1, "{name}: {head}");
        }
    }
    assert_eq!(
        header_lines(&head, "forwarded"),
        ["forwarded: for=6.6.6.6, for=127.0.0.1;proto=https;host=localhost"]
    );
}

/// Extended CONNECT for anything but a WebSocket, and plain CONNECT on
/// either protocol: 501, and nothing reaches an upstream.
#[tokio::test]
async fn connect_other_than_websocket_is_501_and_not_forwarded() {
    let rig = start("").await;
    let mut h2 = rig.h2().await;
    let extended = [
        (":method", "CONNECT"),
        (":protocol", "connect-udp"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", "/secret"),
    ];
    assert_eq!(h2.request(&extended).await, H2Outcome::Status(501));
    let plain = [(":method", "CONNECT"), (":authority", "localhost:443")];
    assert_eq!(h2.request(&plain).await, H2Outcome::Status(501));
    assert_eq!(rig.received(), (0, 0));
    rig.still_serves().await;
    rig.refused(
        "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n",
        501,
    )
    .await;
}
