//! `ferry route` on the scenario's own configuration.
use super::*;

fn example() -> Config {
    let src = include_str!("../../../proxy.toml.example").replace(
            "path_regex = \"(?i)^/api/v1/(communications|notifications)/ws/\"\nupstream = \"backend\"",
            "path_regex = \"(?i)^/api/v1/(communications|notifications)/ws/\"\nupstream = \"backend\"\nwebsocket = { allowed_origins = [\"https://tlumaczeniamt.com.pl\"] }",
        );
    Config::parse(
        &src,
        "proxy.toml.example",
        std::path::Path::new("/etc/ferry"),
    )
    .unwrap()
}

struct Explained {
    text: String,
    served: bool,
    json: serde_json::Value,
}

fn explain(url: &str, headers: &[&str], certs: Option<&[LoadedCert]>) -> Explained {
    let headers: Vec<String> = headers.iter().map(|s| s.to_string()).collect();
    let config = example();
    let query = Query::parse(url, "GET", &headers, "203.0.113.7").unwrap();
    let report = Report::new(&config, &query, certs);
    Explained {
        text: report.text(),
        served: report.served(),
        json: report.json(),
    }
}

fn run(url: &str, headers: &[&str]) -> Explained {
    explain(url, headers, None)
}

#[test]
fn the_incident_url_is_caught() {
    let e = run(
        "wss://tlumaczeniamt.com.pl:8000/api/v1/communications/ws/current-user",
        &[],
    );
    assert!(!e.served);
    assert!(
        e.text.contains("No listener serves TLS on port 8000"),
        "{}",
        e.text
    );
    assert!(
        e.text
            .contains("wss://tlumaczeniamt.com.pl/api/v1/communications/ws/current-user"),
        "{}",
        e.text
    );
    assert!(e.text.contains("1006"), "{}", e.text);
    assert_eq!(e.json["result"], "no_listener");
}

#[test]
fn routes_origins_and_redirects() {
    let ok = run(
        "wss://tlumaczeniamt.com.pl/api/v1/communications/ws/42",
        &["Origin: https://tlumaczeniamt.com.pl"],
    );
    assert!(ok.served, "{}", ok.text);
    assert!(ok.text.contains("route: 1 `websockets`"), "{}", ok.text);
    assert!(
        ok.text
            .contains("origin https://tlumaczeniamt.com.pl is allowed"),
        "{}",
        ok.text
    );
    assert!(ok.text.contains("  upgrade: websocket\n"), "{}", ok.text);
    assert!(
        ok.text.contains("  x-forwarded-for: 203.0.113.7\n"),
        "{}",
        ok.text
    );
    let denied = run(
        "wss://tlumaczeniamt.com.pl/api/v1/communications/ws/42",
        &["Origin: https://evil.test"],
    );
    assert!(
        !denied.served && denied.text.contains("NOT in allowed_origins"),
        "{}",
        denied.text
    );
    assert_eq!(denied.json["websocket"]["verdict"], "not_allowed");
    assert_eq!(denied.json["status"], 403);

    let api = run("https://www.tlumaczeniamt.com.pl/auth/login", &[]);
    assert!(
        api.text
            .contains("skipped route 1 `websockets`: path /auth/login does not match"),
        "{}",
        api.text
    );
    assert!(api.text.contains("route: 2 `api`"), "{}", api.text);
    assert!(
        api.text.contains("read 60s (route override)"),
        "{}",
        api.text
    );
    assert_eq!(api.json["read_timeout_ms"], 60_000);

    let other = run("https://example.org/", &[]);
    assert!(
        !other.served && other.text.contains("route: NONE"),
        "{}",
        other.text
    );

    let redirect = run("http://tlumaczeniamt.com.pl/x?y=1", &[]);
    assert!(
        redirect
            .text
            .contains("308 redirect to https://tlumaczeniamt.com.pl/x?y=1"),
        "{}",
        redirect.text
    );
    assert_eq!(
        redirect.json["location"],
        "https://tlumaczeniamt.com.pl/x?y=1"
    );
}

#[test]
fn certificate_coverage() {
    let ca = crate::tls::dev::generate_ca("test CA").unwrap();
    let leaf = crate::tls::dev::issue_leaf(&ca, &["other.test".to_owned()]).unwrap();
    let config = crate::config::CertificateConfig {
        cert: "other.pem".into(),
        key: "other-key.pem".into(),
        client_auth: None,
    };
    let cert =
        crate::tls::certs::load_pem(config, leaf.cert.as_bytes(), leaf.key.as_bytes()).unwrap();
    let e = explain("https://tlumaczeniamt.com.pl/", &[], Some(&[cert]));
    assert!(
        e.text
            .contains("certificate: NONE covers tlumaczeniamt.com.pl"),
        "{}",
        e.text
    );
}

/// A static route: the file, the SPA fallback, or the 404 and why, from the
/// same resolution the server runs.
#[test]
fn static_routes_name_the_file() {
    let dir = tempfile::TempDir::new().unwrap();
    std::fs::create_dir(dir.path().join("dist")).unwrap();
    std::fs::write(dir.path().join("dist/index.html"), "i").unwrap();
    std::fs::write(dir.path().join("dist/app-3f9a1c2b.js"), "j").unwrap();
    let src = "[[listen]]\naddr = \"127.0.0.1:8080\"\n[[route]]\nname = \"app\"\npath_prefix = \"/\"\nstatic = { root = \"dist\", spa = true }\n";
    let config = Config::parse(src, "p.toml", dir.path()).unwrap();
    let report = |url: &str, headers: &[String]| {
        let query = Query::parse(url, "GET", headers, "203.0.113.7").unwrap();
        let r = Report::new(&config, &query, None);
        (r.text(), r.json(), r.served())
    };
    let (text, json, served) = report("http://localhost:8080/app-3f9a1c2b.js", &[]);
    assert!(served, "{text}");
    assert!(
        text.contains("result: 200 file ") && text.contains("immutable"),
        "{text}"
    );
    assert_eq!(json["static"]["kind"], "file");
    let (text, json, _) = report("http://localhost:8080/users/42", &[]);
    assert!(text.contains("SPA fallback"), "{text}");
    assert_eq!(json["static"]["kind"], "spa_fallback");
    assert_eq!(json["static"]["cache_control"], "no-cache");
    let accept = ["Accept: application/json".to_owned()];
    let (text, json, served) = report("http://localhost:8080/users/42", &accept);
    assert!(!served && text.contains("result: 404"), "{text}");
    assert!(json["error"].as_str().unwrap().contains("Accept"), "{json}");
    let (text, _, served) = report("http://localhost:8080/missing.js", &[]);
    assert!(!served && text.contains("with an extension"), "{text}");
}
