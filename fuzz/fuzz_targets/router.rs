//! Host + path bytes → `normalize_host` / `normalize_path`, then routing over
//! a fixed table with prefix, exact, regex and host-specific routes.
//!
//! Checks: no panic; normalising twice gives the same result as once (so
//! the router and anything that normalises again agree); a normalised path
//! never has a `..` segment and starts with `/` when the input did; routing
//! the normalised spelling picks the same route as the raw spelling.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use ferry::config::Config;
use ferry::router::{normalize_host, normalize_path};
use libfuzzer_sys::fuzz_target;

const TABLE: &str = r#"
[[listen]]
addr = "127.0.0.1:8080"

[upstream.app]
servers = ["127.0.0.1:9000"]

[[route]]
name = "ws"
hosts = ["example.com", "*.example.com"]
path_regex = "(?i)^/api/v1/(communications|notifications)/ws/"
upstream = "app"

[[route]]
name = "health"
path_exact = ["/api/health", "/"]
upstream = "app"

[[route]]
name = "secret"
hosts = ["admin.example.com"]
path_prefix = ["/secret", "/static/"]
upstream = "app"

[[route]]
name = "api"
path_prefix = ["/api", "/auth"]
upstream = "app"

[[route]]
name = "ip"
hosts = ["127.0.0.1", "[::1]"]
path_prefix = "/"
upstream = "app"
"#;

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(
        || match Config::parse(TABLE, "router-fuzz.toml", Path::new(".")) {
            Ok(c) => c,
            Err(e) => panic!("the fuzz table must be valid: {e}"),
        },
    )
}

/// Input: host bytes, a 0 byte, path bytes (no 0 byte: everything is the path).
fn split(data: &[u8]) -> (String, String) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (
            String::from_utf8_lossy(&data[..i]).into_owned(),
            String::from_utf8_lossy(&data[i + 1..]).into_owned(),
        ),
        None => (String::new(), String::from_utf8_lossy(data).into_owned()),
    }
}

fuzz_target!(|data: &[u8]| {
    let (host, path) = split(data);

    let h1 = normalize_host(&host);
    let h2 = normalize_host(&h1);
    assert_eq!(h1, h2, "normalize_host is idempotent for {host:?}");

    let p1 = normalize_path(&path);
    let p2 = normalize_path(&p1);
    assert_eq!(p1, p2, "normalize_path is idempotent for {path:?}");
    assert!(
        !p1.split('/').any(|s| s == ".."),
        "normalised {path:?} has a .. segment: {p1:?}"
    );
    if path.starts_with('/') {
        assert!(p1.starts_with('/'), "{path:?} → {p1:?}");
    }

    let config = config();
    let raw = config.route(&host, &path).map(|(i, _)| i);
    let normalised = config.route(&h1, &p1).map(|(i, _)| i);
    assert_eq!(
        raw, normalised,
        "{host:?} {path:?} routes differently from its normalised spelling {h1:?} {p1:?}"
    );
});
