//! The admin listener refuses what a browser could be made to send to it
//! (a foreign Host: DNS rebinding; a foreign Origin or Sec-Fetch-Site:
//! CSRF), requires the bearer token when one is set, and `ferry reload`
//! keeps working through both.

mod common;

use std::net::SocketAddr;

use common::*;

fn config(backend: SocketAddr, admin_keys: &str) -> String {
    ProxyToml::simple(backend)
        .admin()
        .build()
        .replace("[admin]\n", &format!("[admin]\n{admin_keys}\n"))
}

/// `method path` on the admin listener with exactly these headers (a
/// `Host` among them, or none); returns the status, the
/// `WWW-Authenticate` header and the body.
async fn admin_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, String) {
    let mut req = http::Request::builder().method(method).uri(path);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut c = Client::plain(addr).await;
    let res = c.fetch(req.body(empty()).unwrap()).await;
    let auth = res.header("www-authenticate").map(str::to_owned);
    (res.status(), auth, res.text().to_owned())
}

async fn generation(proxy: &TestProxy) -> String {
    proxy.admin("GET", "/readyz").await.1
}

#[tokio::test]
async fn cross_site_and_rebinding_requests_are_refused() {
    let backend = Backend::echo("b").await;
    let proxy = TestProxy::start_file(&config(backend.addr, "")).await;
    let admin = proxy.admin_addr.unwrap();
    let own = admin.to_string();
    let loopback_name = format!("localhost:{}", admin.port());
    let rebound = format!("evil.example:{}", admin.port());
    let rebound_origin = format!("http://{rebound}");

    // What a page on evil.example can make the browser send.
    let attacks: [&[(&str, &str)]; 7] = [
        &[("host", "evil.example"), ("origin", "https://evil.example")],
        // DNS rebinding: the attacker's name now resolves to 127.0.0.1.
        &[("host", &rebound), ("origin", &rebound_origin)],
        &[("host", &rebound)],
        &[("host", "evil.example")],
        // CSRF: the right Host, another site's Origin.
        &[("host", &own), ("origin", "https://evil.example")],
        &[("host", &own), ("origin", "null")],
        &[("host", &own), ("sec-fetch-site", "cross-site")],
    ];
    for headers in attacks {
        let (status, _, body) = admin_raw(admin, "POST", "/reload", headers).await;
        assert_eq!(status, 403, "{headers:?}: {body}");
        // A page's script cannot read the metrics either.
        let (status, _, _) = admin_raw(admin, "GET", "/metrics", headers).await;
        assert_eq!(status, 403, "{headers:?}");
    }
    // No Host at all.
    let (status, _, _) = admin_raw(admin, "POST", "/reload", &[]).await;
    assert_eq!(status, 403);
    assert_eq!(
        generation(&proxy).await,
        "ready: configuration generation 1\n",
        "no refused request reloaded"
    );

    // The listener's own names work, with or without a same-origin Origin.
    let same_origin = format!("http://{own}");
    let (status, _, body) = admin_raw(
        admin,
        "POST",
        "/reload",
        &[("host", &own), ("origin", &same_origin)],
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (200, "reloaded: configuration generation 2\n")
    );
    let (status, _, _) = admin_raw(
        admin,
        "POST",
        "/reload",
        &[("host", &loopback_name), ("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, text) = admin_raw(admin, "GET", "/metrics", &[("host", &loopback_name)]).await;
    assert_eq!(status, 200);
    assert_eq!(sample(&text, "ferry_config_generation"), Some(3.0));
    // Reload changes state: GET is not enough.
    let (status, _, _) = admin_raw(admin, "GET", "/reload", &[("host", &own)]).await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn with_a_token_every_endpoint_but_the_probes_needs_it() {
    let backend = Backend::echo("b").await;
    let proxy =
        TestProxy::start_file(&config(backend.addr, r#"token = "s3cret-admin-token""#)).await;
    let admin = proxy.admin_addr.unwrap();
    let own = admin.to_string();
    let host = ("host", own.as_str());

    for path in ["/metrics", "/reload"] {
        let method = if path == "/reload" { "POST" } else { "GET" };
        let (status, auth, _) = admin_raw(admin, method, path, &[host]).await;
        assert_eq!(status, 401, "{path} without a token");
        assert_eq!(auth.as_deref(), Some("Bearer realm=\"ferry admin\""));
        let wrong = ("authorization", "Bearer s3cret-admin-tokem");
        let (status, _, _) = admin_raw(admin, method, path, &[host, wrong]).await;
        assert_eq!(status, 401, "{path} with a wrong token");
    }
    assert_eq!(
        generation(&proxy).await,
        "ready: configuration generation 1\n"
    );

    let right = ("authorization", "Bearer s3cret-admin-token");
    let (status, _, text) = admin_raw(admin, "GET", "/metrics", &[host, right]).await;
    assert_eq!(status, 200);
    assert!(text.contains("ferry_config_generation 1"), "{text}");
    let (status, _, body) = admin_raw(admin, "POST", "/reload", &[host, right]).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "reloaded: configuration generation 2\n")
    );
    // Probes need no token; the Host check still applies to them.
    let (status, _, _) = admin_raw(admin, "GET", "/healthz", &[host]).await;
    assert_eq!(status, 200);
    let (status, _, _) = admin_raw(admin, "GET", "/readyz", &[host]).await;
    assert_eq!(status, 200);
    let (status, _, _) = admin_raw(admin, "GET", "/healthz", &[("host", "evil.example")]).await;
    assert_eq!(status, 403);
    // The right token does not make a cross-site request acceptable.
    let (status, _, _) = admin_raw(
        admin,
        "POST",
        "/reload",
        &[host, right, ("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_logged_and_ferry_reload_sends_host_and_token() {
    let backend = Backend::echo("b").await;
    let ca = TestCa::new();
    let path = ca.dir.path().join("proxy.toml");
    std::fs::write(ca.dir.path().join("admin.token"), "t0ken-from-a-file\n").unwrap();
    // The admin port must be known to `ferry reload`: bind one and free it.
    // Bound to every interface, so `ferry reload` has to pick loopback.
    let port = dead_addr().await.port();
    let toml = TestProxy::fill(
        &ProxyToml::simple(backend.addr)
            .build()
            .replacen(
                "[[listen]]",
                &format!(
                    "[admin]\naddr = \"0.0.0.0:{port}\"\nallow_remote = true\ntoken_file = \"admin.token\"\n\n[[listen]]"
                ),
                1,
            ),
        &ca,
    );
    std::fs::write(&path, &toml).unwrap();
    let mut ferry = FerryProcess::start(&path).await;
    let admin: SocketAddr = ([127, 0, 0, 1], port).into();

    let (status, _, _) = admin_raw(
        admin,
        "POST",
        "/reload",
        &[
            ("host", "evil.example"),
            ("origin", "https://evil.example"),
            ("authorization", "Bearer t0ken-from-a-file"),
        ],
    )
    .await;
    assert_eq!(status, 403);
    let line = ferry.line(|l| l.contains("admin request refused")).await;
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("evil.example") && line.contains("/reload"),
        "{line}"
    );
    assert!(!line.contains("t0ken"), "the token is never logged: {line}");

    let reload = |token: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.args(["reload", "-c", path.to_str().unwrap()]);
        match token {
            Some(t) => cmd.env("FERRY_ADMIN_TOKEN", t),
            None => cmd.env_remove("FERRY_ADMIN_TOKEN"),
        };
        cmd.output().unwrap()
    };
    // The token from token_file, and Host = the loopback address it connects to.
    let out = reload(None);
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
        .line(|l| l.contains("configuration reloaded") && l.contains("generation=2"))
        .await;
    // $FERRY_ADMIN_TOKEN overrides the config's.
    let out = reload(Some("not-the-token"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401 Unauthorized: wrong bearer token"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = reload(Some("t0ken-from-a-file"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    ferry.sigterm();
    assert_eq!(ferry.wait().await.code(), Some(0));
}

#[test]
fn check_warns_about_a_remote_admin_without_token_and_rejects_bad_tokens() {
    let ca = TestCa::new();
    let path = ca.dir.path().join("proxy.toml");
    let base = ProxyToml::simple("127.0.0.1:9".parse().unwrap()).build();
    let with_admin =
        |keys: &str| base.replacen("[[listen]]", &format!("[admin]\n{keys}\n\n[[listen]]"), 1);
    let check = |toml: &str| {
        std::fs::write(&path, TestProxy::fill(toml, &ca)).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["check", "-c", path.to_str().unwrap()])
            .output()
            .unwrap()
    };

    let out = check(&with_admin("addr = \"0.0.0.0:9901\"\nallow_remote = true"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a warning, not an error: {stderr}");
    assert!(
        stderr.contains("warning: admin.addr: 0.0.0.0:9901 is reachable from other machines and [admin] has no token"),
        "{stderr}"
    );
    let out = check(&with_admin(
        "addr = \"0.0.0.0:9901\"\nallow_remote = true\ntoken = \"a-long-random-token\"",
    ));
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));

    let out = check(&with_admin(
        "addr = \"127.0.0.1:9901\"\ntoken = \"two words\"",
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("admin.token: the token must be visible ASCII without spaces"),
        "{stderr}"
    );
    let out = check(&with_admin(
        "addr = \"127.0.0.1:9901\"\ntoken_file = \"missing.token\"",
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot read admin.token_file"), "{stderr}");
}
