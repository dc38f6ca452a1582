//! `proxy.toml` text → `Config::parse` (TOML, schema, validation).
//!
//! Checks: no panic on any UTF-8 input; an error always has at least one
//! problem, renders (Display) without panicking and points at a line that
//! exists; a config that parses can be routed and checked for shadowed
//! routes (what `ferry check` and `ferry route` do next) without panicking.
#![no_main]

use std::fmt::Write as _;
use std::path::Path;

use ferry::config::{Config, ConfigError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|src: &str| {
    // A base directory that does not exist: parsing must not touch files.
    match Config::parse(src, "proxy.toml", Path::new("/nonexistent/ferry-fuzz")) {
        Ok(config) => {
            for (host, path) in [
                ("example.com", "/"),
                ("EXAMPLE.com:8443", "/api/../auth/%2e%2e/x"),
                ("[::1]:443", "//a/./b/"),
                ("", ""),
            ] {
                let _ = config.route(host, path);
            }
            for (i, a) in config.routes.iter().enumerate() {
                for b in &config.routes[i + 1..] {
                    let _ = a.matcher.covers(&b.matcher);
                }
                let _ = a.matcher.describe_hosts();
                let _ = a.matcher.path.to_string();
            }
            let _ = config.https_port();
        }
        Err(err) => {
            let mut out = String::new();
            write!(out, "{err}").expect("a config error renders");
            if let ConfigError::Invalid { problems, .. } = &err {
                assert!(!problems.is_empty(), "an invalid config names a problem");
                // toml counts lines by '\n'; one past the last line is the
                // end of the file (an unterminated table, say).
                let lines = src.split('\n').count() + 1;
                for p in problems {
                    if let Some(line) = p.line {
                        assert!(line >= 1 && line <= lines, "line {line} of {lines}: {p:?}");
                    }
                    assert!(!p.message.is_empty(), "{p:?}");
                }
            }
        }
    }
});
