//! `Cache-Control` for a file: immutable for content-hashed names and
//! `/assets/`, `no-cache` for the index and the SPA fallback, a short
//! revalidating default otherwise. A route's `response_headers` override it.

use super::resolve::{FileTarget, Kind};
use crate::config::StaticConfig;

pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
pub const NO_CACHE: &str = "no-cache";
pub const SHORT: &str = "public, max-age=300, must-revalidate";

/// The `Cache-Control` value for `target`: the index and the SPA fallback
/// first (an index must never be cached for a year, whatever its path),
/// then `immutable` (the regex, matched against the decoded request path,
/// or the built-in rule), then the default.
pub fn policy(files: &StaticConfig, target: &FileTarget) -> &'static str {
    if target.kind != Kind::File {
        return NO_CACHE;
    }
    let path = target.request_path.as_str();
    let immutable = match &files.immutable {
        Some(re) => re.is_match(path),
        None => builtin_immutable(path),
    };
    if immutable { IMMUTABLE } else { SHORT }
}

/// The built-in rule: under `/assets/` (Vite's output), or a file name whose
/// stem ends in a content hash: its last `-`/`.`-separated token is at least
/// 8 characters of `[A-Za-z0-9_]` with a digit, or with both cases
/// (`index-BQ3c9TqL.js`, `main.3f9a1c2b.css`; not `my-component.js`).
pub fn builtin_immutable(path: &str) -> bool {
    if path.contains("/assets/") {
        return true;
    }
    let name = path.rsplit('/').next().unwrap_or("");
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    let token = stem.rsplit(['-', '.']).next().unwrap_or("");
    let charset = token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let digit = token.bytes().any(|b| b.is_ascii_digit());
    let upper = token.bytes().any(|b| b.is_ascii_uppercase());
    let lower = token.bytes().any(|b| b.is_ascii_lowercase());
    token.len() >= 8 && charset && (digit || (upper && lower))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names() {
        for yes in [
            "/index-BQ3c9TqL.js",
            "/static/js/main.3f9a1c2b.css",
            "/chunk-12345678.js",
            "/assets/logo.svg",
            "/x/assets/y",
            "/a_b_c_d_1.js",
        ] {
            assert!(builtin_immutable(yes), "{yes}");
        }
        for no in [
            "/my-component.js",
            "/index.html",
            "/favicon.ico",
            "/chunk-ABCDEFGH.js",
            "/chunk-abcdefgh.js",
            "/a-1234567.js",
            "/assets",
            "/assetsx/app.js",
            "/x-12345678z!.js",
            "/robots.txt",
        ] {
            assert!(!builtin_immutable(no), "{no}");
        }
    }
}
