//! The `ferry` binary as an operator uses it: `check` verdicts and messages,
//! `run` with its log lines, and SIGTERM.

mod common;

use std::path::Path;
use std::process::Command;

use common::tungstenite::Message;
use common::tungstenite::protocol::CloseFrame;
use common::tungstenite::protocol::frame::coding::CloseCode;
use common::*;
use futures_util::SinkExt;

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

fn ferry(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new(FERRY)
        .args(args)
        .current_dir(cwd)
        .env_remove("FERRY_CONFIG")
        .env("FERRY_LOG", "info")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn valid_config(ca: &TestCa) -> String {
    let (cert, key) = ca.leaf("site", &["app.test", "www.app.test"]);
    format!(
        r#"
[[listen]]
addr = "127.0.0.1:0"
tls = true

[[certificate]]
cert = "{}"
key = "{}"

[upstream.backend]
servers = ["backend:8000"]

[[route]]
name = "api"
hosts = ["app.test"]
path_prefix = ["/api", "/auth"]
upstream = "backend"

[[route]]
name = "api-v1"
hosts = ["app.test"]
path_prefix = "/api/v1"
upstream = "backend"
"#,
        cert.display(),
        key.display()
    )
}

#[test]
fn check_accepts_a_valid_config_and_explains_it() {
    let ca = TestCa::new();
    let path = ca.dir.path().join("proxy.toml");
    std::fs::write(&path, valid_config(&ca)).unwrap();
    let out = ferry(&["check", "-c", path.to_str().unwrap()], ca.dir.path());
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("names: app.test, www.app.test"), "{stdout}");
    assert!(stdout.contains("1. api"), "{stdout}");
    assert!(
        stdout.ends_with("proxy.toml: configuration OK\n"),
        "{stdout}"
    );
    // The second route sits behind the first: a warning naming both.
    assert!(
        stderr.contains("route `api-v1` can never match: route `api` before it"),
        "{stderr}"
    );
}

#[test]
fn check_reports_every_problem_with_file_line_key_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[listen]]\naddr = \"0.0.0.0:443\"\n\n[upstream.backend]\nservers = [\"b:8000\"]\nconect_timeout = \"5s\"\n\n[[route]]\npath_prefix = \"/\"\nupstrem = \"backend\"\n",
    )
    .unwrap();
    let out = ferry(&["check", "-c", path.to_str().unwrap()], dir.path());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bad.toml has 2 problems"), "{stderr}");
    assert!(
        stderr.contains(
            "bad.toml:6:1: upstream.backend.conect_timeout: unknown key `conect_timeout`"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("help: did you mean `connect_timeout`?"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad.toml:10:1: route[0].upstrem: unknown key `upstrem`"),
        "{stderr}"
    );

    let missing = ferry(&["check", "-c", "/nonexistent/proxy.toml"], dir.path());
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("cannot read config file /nonexistent/proxy.toml"));
}

/// `server.max_header_size` and `server.forwarded_header`: a size out of
/// range, a size that is not one, and a flag that is not a boolean.
#[test]
fn check_reports_bad_request_limits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("limits.toml");
    let body = "[[listen]]\naddr = \"127.0.0.1:0\"\n\n[upstream.b]\nservers = [\"b:8000\"]\n\n[[route]]\npath_prefix = \"/\"\nupstream = \"b\"\n";
    for (server, expect) in [
        (
            "max_header_size = \"100\"",
            "limits.toml:2:19: server.max_header_size: `100` is out of range",
        ),
        (
            "max_header_size = \"16 parsecs\"",
            "limits.toml:2:19: server.max_header_size: `16 parsecs` is not a size",
        ),
        ("forwarded_header = \"yes\"", "limits.toml:2:20"),
    ] {
        std::fs::write(&path, format!("[server]\n{server}\n\n{body}")).unwrap();
        let out = ferry(&["check", "-c", path.to_str().unwrap()], dir.path());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expect), "{server}: {stderr}");
    }
    std::fs::write(
        &path,
        format!("[server]\nmax_header_size = \"64KiB\"\n\n{body}"),
    )
    .unwrap();
    let out = ferry(&["check", "-c", path.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn check_catches_a_key_that_does_not_match_its_certificate() {
    let ca = TestCa::new();
    let (cert, _) = ca.leaf("one", &["app.test"]);
    let (_, other_key) = ca.leaf("two", &["app.test"]);
    let config = valid_config(&ca)
        .lines()
        .map(|l| {
            if l.starts_with("cert =") {
                format!("cert = \"{}\"", cert.display())
            } else if l.starts_with("key =") {
                format!("key = \"{}\"", other_key.display())
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = ca.dir.path().join("proxy.toml");
    std::fs::write(&path, config).unwrap();
    let out = ferry(&["check", "-c", path.to_str().unwrap()], ca.dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("does not match the certificate"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_example_config_passes_check_without_its_container_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = ferry(&["check", "--no-files", "-c", "proxy.toml.example"], root);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Without --no-files the missing certificate is reported, with the way out.
    let out = ferry(&["check", "-c", "proxy.toml.example"], root);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot read /etc/ferry/tls/fullchain.pem"),
        "{stderr}"
    );
    assert!(stderr.contains("--no-files"), "{stderr}");
}

#[test]
fn without_any_config_file_the_embedded_default_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let out = ferry(&["check"], dir.path());
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("https://127.0.0.1:8443 -> http://127.0.0.1:8000"),
        "{stdout}"
    );
    assert!(
        stdout.contains("names: localhost, 127.0.0.1, ::1"),
        "{stdout}"
    );
    for file in ["ca.pem", "ca-key.pem", "localhost.pem", "localhost-key.pem"] {
        assert!(dir.path().join("certs-dev").join(file).exists(), "{file}");
    }
}

#[test]
fn version_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let out = ferry(&["--version"], dir.path());
    assert_eq!(
        text(&out.stdout),
        format!("ferry {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = ferry(&["--help"], dir.path());
    assert!(text(&out.stdout).contains("ferry check -c proxy.toml"));
}

/// Runs the binary, serves real requests, logs them, and drains on SIGTERM.
/// (Multi-threaded: the log reader blocks while the client's connection task runs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_logs_each_request_and_exits_zero_after_sigterm() {
    let backend = Backend::echo("b").await;
    let dead = dead_addr().await;
    let ws_backend = WsBackend::start().await;
    let ca = TestCa::new();
    let (cert, key) = ca.leaf("localhost", &["localhost"]);
    let config = ProxyToml::new()
        .tls_listener()
        .certificate(&cert, &key)
        .upstream("backend", &[backend.addr])
        .upstream("down", &[dead])
        .upstream("ws", &[ws_backend.addr])
        .route("ws", "/ws", "ws")
        .route("broken", "/broken", "down")
        .route("all", "/", "backend")
        .build();
    let path = ca.dir.path().join("proxy.toml");
    std::fs::write(&path, &config).unwrap();

    let mut ferry = FerryProcess::start(&path).await;
    let addr = ferry.addr;

    let mut c = Client::tls(addr, &ca, Proto::H2, "localhost").await;
    assert_eq!(
        c.get("localhost", "/hello?token=secret").await.status(),
        200
    );
    let line = ferry.line(|l| l.contains("path=/hello")).await;
    for field in [
        "method=GET",
        "host=localhost",
        "route=all",
        "upstream=backend",
        "status=200",
        "bytes=",
        "duration_ms=",
    ] {
        assert!(line.contains(field), "{field} missing in: {line}");
    }
    assert!(
        !line.contains("secret"),
        "query strings are not logged: {line}"
    );

    assert_eq!(c.get("localhost", "/broken").await.status(), 502);
    let line = ferry.line(|l| l.contains("path=/broken")).await;
    assert!(
        line.contains("WARN") && line.contains("status=502"),
        "{line}"
    );
    assert!(
        line.contains(&format!("cannot connect to upstream `down` at {dead}")),
        "{line}"
    );

    // A WebSocket session gets one line at its end, saying how it ended.
    let (mut ws, _) = ws_h1_at(addr, &ca, "/ws/chat", &[("origin", "https://app.test")])
        .await
        .unwrap();
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::text("hello"));
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    ws_expect_close(&mut ws).await;
    let line = ferry.line(|l| l.contains("WebSocket session ended")).await;
    for field in [
        "route=ws",
        "path=/ws/chat",
        "origin=\"https://app.test\"",
        "protocol=\"h1\"",
        "messages_up=1",
        "messages_down=1",
        "closed_by=\"client\"",
        "close_code=1000",
        "close_reason=bye",
    ] {
        assert!(line.contains(field), "{field} missing in: {line}");
    }

    drop((c, ws));
    ferry.sigterm();
    ferry.line(|l| l.contains("drained cleanly")).await;
    assert_eq!(ferry.wait().await.code(), Some(0));
}

#[test]
fn route_explains_the_incident_url() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let url = "wss://tlumaczeniamt.com.pl:8000/api/v1/communications/ws/current-user";
    let out = ferry(&["route", "-c", "proxy.toml.example", url], root);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("No listener serves TLS on port 8000"),
        "{stdout}"
    );
    assert!(stdout.contains("must go through ferry instead:\n    wss://tlumaczeniamt.com.pl/api/v1/communications/ws/current-user"), "{stdout}");
    assert!(stdout.contains("1006"), "{stdout}");

    let fixed = "wss://tlumaczeniamt.com.pl/api/v1/communications/ws/0b7e";
    let out = ferry(
        &[
            "route",
            "-c",
            "proxy.toml.example",
            fixed,
            "-H",
            "Origin: https://tlumaczeniamt.com.pl",
        ],
        root,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("route: 1 `websockets`"), "{stdout}");
    assert!(
        stdout.contains("upstream: `backend` → crm_translations_backend:8000"),
        "{stdout}"
    );
    assert!(stdout.contains("RFC 8441"), "{stdout}");
}

#[test]
fn check_json_for_ci() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = ferry(
        &[
            "check",
            "--no-files",
            "--format",
            "json",
            "-c",
            "proxy.toml.example",
        ],
        root,
    );
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert!(v["summary"].as_str().unwrap().contains("1. websockets"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "[[listen]]\naddr = \"nope\"\n").unwrap();
    let out = ferry(&["check", "--format", "json", "-c", "bad.toml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("bad.toml:2:8: listen[0].addr: `nope` is not an address and port"),
        "{v}"
    );
}

/// `ferry cert dev`: a CA made once, a leaf that rustls and openssl both verify
/// against it, served by a real ferry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_dev_makes_certificates_clients_verify() {
    let dir = tempfile::tempdir().unwrap();
    let out = ferry(
        &["cert", "dev", "--out", "dev", "--name", "app.localhost"],
        dir.path(),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("created the local CA dev/ca.pem"),
        "{stdout}"
    );
    assert!(
        stdout.contains("update-ca-certificates")
            && stdout.contains("certutil")
            && stdout.contains("security add-trusted-cert"),
        "{stdout}"
    );
    let ca_before = std::fs::read(dir.path().join("dev/ca.pem")).unwrap();
    let again = ferry(
        &["cert", "dev", "--out", "dev", "--name", "app.localhost"],
        dir.path(),
    );
    assert!(text(&again.stdout).contains("reusing the local CA"));
    assert_eq!(
        std::fs::read(dir.path().join("dev/ca.pem")).unwrap(),
        ca_before,
        "the CA is never replaced without --force"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in ["dev/ca-key.pem", "dev/localhost-key.pem"] {
            let mode = std::fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }

    // Serve it and verify it as clients do.
    let backend = Backend::echo("b").await;
    let config = ProxyToml::new()
        .tls_listener()
        .certificate("dev/localhost.pem", "dev/localhost-key.pem")
        .upstream("b", &[backend.addr])
        .route_keys("path_prefix = \"/\"\nupstream = \"b\"")
        .build();
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, config).unwrap();
    let ferry_process = FerryProcess::start(&path).await;
    let ca = TestCa {
        ca: ferry::tls::dev::PemPair {
            cert: String::from_utf8(ca_before).unwrap(),
            key: String::new(),
        },
        dir: tempfile::tempdir().unwrap(),
    };
    for name in ["localhost", "app.localhost"] {
        let mut c = Client::tls(ferry_process.addr, &ca, Proto::H2, name).await;
        assert_eq!(c.get(name, "/").await.status(), 200, "{name}");
    }
    let openssl = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &ferry_process.addr.to_string(),
            "-servername",
            "app.localhost",
            "-verify_return_error",
            "-brief",
        ])
        .arg("-CAfile")
        .arg(dir.path().join("dev/ca.pem"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let report = format!("{}{}", text(&openssl.stdout), text(&openssl.stderr));
    assert!(
        openssl.status.success() && report.contains("Verification: OK"),
        "{report}"
    );

    let forced = ferry(&["cert", "dev", "--out", "dev", "--force"], dir.path());
    assert!(text(&forced.stdout).contains("created the local CA"));
    assert_ne!(
        std::fs::read(dir.path().join("dev/ca.pem")).unwrap(),
        ca.ca.cert.as_bytes()
    );
}

/// `ferry probe` against a running ferry: a working WebSocket, a refused
/// origin, a dead upstream, and a port nothing listens on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_walks_each_step_and_names_the_first_failure() {
    let ws_backend = WsBackend::start().await;
    let dead = dead_addr().await;
    let ca = TestCa::new();
    let (cert, key) = ca.leaf("localhost", &["localhost"]);
    let config = ProxyToml::new()
        .tls_listener()
        .certificate(&cert, &key)
        .upstream("ws", &[ws_backend.addr])
        .upstream("down", &[dead])
        .route_with(
            "ws",
            "/ws",
            "ws",
            r#"websocket = { allowed_origins = ["https://app.test"] }"#,
        )
        .route("down", "/", "down")
        .build();
    let path = ca.dir.path().join("proxy.toml");
    std::fs::write(&path, config).unwrap();
    let running = FerryProcess::start(&path).await;
    let port = running.addr.port();
    let ca_path = ca.ca_path();
    let probe = |url: String, origin: &'static str| {
        let ca_path = ca_path.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut cmd = Command::new(FERRY);
                cmd.args(["probe", &url, "--ca"]).arg(&ca_path);
                if !origin.is_empty() {
                    cmd.args(["--origin", origin]);
                }
                cmd.output().unwrap()
            })
            .await
            .unwrap()
        }
    };

    let ok = probe(format!("wss://localhost:{port}/ws/x"), "https://app.test").await;
    let text_ok = text(&ok.stdout);
    assert!(ok.status.success(), "{text_ok}");
    for step in [
        "ok   tcp",
        "ok   tls       TLS 1.3, ALPN http/1.1",
        "ok   cert      names localhost",
        "ok   trust     verified",
        "ok   upgrade   101",
        "ok   echo      reply: \"ferry probe\"",
    ] {
        assert!(text_ok.contains(step), "{step} missing:\n{text_ok}");
    }

    let refused = probe(format!("wss://localhost:{port}/ws/x"), "https://evil.test").await;
    let t = text(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        t.contains("FAIL upgrade   403 Forbidden instead of 101") && t.contains("allowed_origins"),
        "{t}"
    );

    let down = probe(format!("https://localhost:{port}/"), "").await;
    let t = text(&down.stdout);
    assert!(
        t.contains("ferry answered 502") && t.contains("its upstream is down"),
        "{t}"
    );

    let nowhere = probe(format!("wss://localhost:{}/ws/x", dead.port()), "").await;
    let t = text(&nowhere.stdout);
    assert!(t.contains("FAIL tcp") && t.contains("1006"), "{t}");
}
