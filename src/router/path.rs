//! The request path as routes see it, and the paths refused outright.
//!
//! ferry routes on one canonical spelling of the path and forwards the
//! client's spelling unchanged. The canonical form resolves everything that
//! some upstream framework resolves, so that a path a route denies (or sends
//! elsewhere) cannot be reached by a spelling the upstream treats as the same:
//!
//! - every `%XX` escape is decoded (Starlette/uvicorn decode even `%2F`; nginx
//!   decodes before matching `location`s), except `%25`, which stays `%25` so
//!   that one pass is enough (`%2541` is `%41` to every server, never `A`);
//! - `;` and what follows it in a segment is dropped (Tomcat, Jetty and
//!   Spring treat it as a path parameter: `/secret;x` *is* `/secret` there,
//!   and `/public/..;/secret` is `/secret`);
//! - `\` counts as `/` (IIS, and browsers normalise it; such paths are refused
//!   by [`path_refusal`] before routing, so this only keeps the form safe);
//! - `.` and `..` segments are resolved and repeated slashes merged.
//!
//! Case is kept: routing is case-sensitive, as in nginx.

use std::borrow::Cow;

/// Why a request path is refused (400) before any route is considered:
/// bytes that servers disagree about, which no legitimate client sends.
/// NUL (`%00`) truncates paths in C and in some file APIs; a backslash (raw or
/// `%5C`) is a separator to IIS and Windows file APIs but an ordinary byte to
/// most routers, so it is a way to spell one path two ways.
pub fn path_refusal(path: &str) -> Option<&'static str> {
    let bytes = path.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\\' => return Some("backslash in request path"),
            0 => return Some("NUL in request path"),
            b'%' => match escaped(bytes, i) {
                Some(0) => return Some("NUL in request path"),
                Some(b'\\') => return Some("backslash in request path"),
                _ => {}
            },
            _ => {}
        }
    }
    None
}

/// The path as routes see it (see the module doc). Returns the input
/// untouched in the common case, without allocating.
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    if !needs_normalising(path.as_bytes()) {
        return Cow::Borrowed(path);
    }
    let decoded = decode(path);
    let segments: Vec<&str> = decoded
        .split('/')
        .map(|seg| seg.split_once(';').map_or(seg, |(before, _)| before))
        .collect();
    let trailing = matches!(segments.last(), Some(&"" | &"." | &".."));
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for seg in segments {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut result = String::with_capacity(decoded.len());
    for seg in &out {
        result.push('/');
        result.push_str(seg);
    }
    if trailing || result.is_empty() {
        result.push('/');
    }
    Cow::Owned(result)
}

/// Whether `path` has anything [`normalize_path`] would change: one pass over
/// the bytes (this runs for every request).
fn needs_normalising(path: &[u8]) -> bool {
    let mut segment_start = true;
    for (i, &b) in path.iter().enumerate() {
        match b {
            b'%' | b';' | b'\\' => return true,
            b'/' if segment_start && i > 0 => return true,
            b'.' if segment_start => {
                let rest = &path[i..];
                let end = rest.iter().position(|&c| c == b'/').unwrap_or(rest.len());
                if matches!(&rest[..end], b"." | b"..") {
                    return true;
                }
            }
            _ => {}
        }
        segment_start = b == b'/';
    }
    false
}

/// `%XX` at `bytes[i]` (which is `%`) as the byte it encodes.
fn escaped(bytes: &[u8], i: usize) -> Option<u8> {
    let hi = hex_val(*bytes.get(i + 1)?)?;
    let lo = hex_val(*bytes.get(i + 2)?)?;
    Some(hi << 4 | lo)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes every escape but `%25`; a `%` that starts no escape becomes
/// `%25`, `\` becomes `/`, and decoded bytes that are not UTF-8 are
/// re-escaped as `%XX`. The result decodes to itself: `%` only appears in
/// `%25` and in escapes of non-UTF-8 bytes.
fn decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut raw = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let (decoded, width) = match bytes[i] {
            b'%' => match escaped(bytes, i) {
                Some(b'%') => (None, 3),
                None => (None, 1),
                Some(b'\\') => (Some(b'/'), 3),
                Some(b) => (Some(b), 3),
            },
            b'\\' => (Some(b'/'), 1),
            b => (Some(b), 1),
        };
        match decoded {
            Some(b) => raw.push(b),
            // A literal `%`, spelled the one way that decodes to itself.
            None => raw.extend_from_slice(b"%25"),
        }
        i += width;
    }
    let mut out = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_normalisation() {
        assert_eq!(normalize_path("/api/x"), "/api/x");
        assert!(matches!(normalize_path("/api/x.y/..z"), Cow::Borrowed(_)));
        assert_eq!(normalize_path("/app/../api/x"), "/api/x");
        assert_eq!(normalize_path("/app/%2e%2e/api"), "/api");
        assert_eq!(normalize_path("/app/%2E%2E/api"), "/api");
        assert_eq!(normalize_path("//api///x"), "/api/x");
        assert_eq!(normalize_path("/../../etc"), "/etc");
        assert_eq!(normalize_path("/a/./b/"), "/a/b/");
        assert_eq!(normalize_path("/a/.."), "/");
        assert_eq!(normalize_path("/%41pi"), "/Api");
        assert_eq!(normalize_path("/caf%C3%A9"), "/café");
        assert_eq!(normalize_path("/x%FFy"), "/x%FFy");
        assert_eq!(normalize_path("/x%ff%41"), "/x%FFA");
    }

    /// The spellings of issue 13's path table, as routes see them.
    #[test]
    fn path_tricks() {
        assert_eq!(normalize_path("/secret;x"), "/secret");
        assert_eq!(normalize_path("/secret;jsessionid=1/x"), "/secret/x");
        assert_eq!(normalize_path("/public/..;/secret"), "/secret");
        assert_eq!(normalize_path("/public/.;/secret"), "/public/secret");
        assert_eq!(normalize_path("/secret%3bx"), "/secret");
        assert_eq!(normalize_path("/secret%2fx"), "/secret/x");
        assert_eq!(normalize_path("/public%2F..%2Fsecret"), "/secret");
        assert_eq!(normalize_path("//secret"), "/secret");
        assert_eq!(normalize_path("/SECRET"), "/SECRET");
        // Refused before routing, but the form stays safe.
        assert_eq!(normalize_path("/\\secret"), "/secret");
        assert_eq!(normalize_path("/public\\..\\secret"), "/secret");
        assert_eq!(normalize_path("/public%5c..%5csecret"), "/secret");
    }

    /// One decoding pass: a literal `%` stays `%25`, whatever follows it.
    #[test]
    fn percent_stays_escaped() {
        assert_eq!(normalize_path("/a%2541"), "/a%2541");
        assert_eq!(normalize_path("/x%"), "/x%25");
        assert_eq!(normalize_path("/x%4"), "/x%254");
        assert_eq!(normalize_path("/é%zz"), "/é%25zz");
        assert_eq!(normalize_path("/%é"), "/%25é");
        assert_eq!(normalize_path("/%%41B"), "/%25AB");
        assert_eq!(normalize_path("/%25AB"), "/%25AB");
    }

    #[test]
    fn refused_paths() {
        for bad in ["/\\secret", "/a\\b", "/secret%00", "/%5csecret", "/%5Cx"] {
            assert!(path_refusal(bad).is_some(), "{bad}");
        }
        for ok in ["/", "/secret;x", "/%2e%2e/x", "/%255c", "/%0", "/a%"] {
            assert_eq!(path_refusal(ok), None, "{ok}");
        }
    }

    /// Properties of the normaliser over paths built from the bytes that
    /// matter to it (`/ . % ; \` and hex digits) and some that do not.
    mod properties {
        use proptest::prelude::*;

        use super::super::super::{Matcher, PathMatch, first_match};
        use super::*;

        fn tricky_path() -> impl Strategy<Value = String> {
            let piece = prop::sample::select(vec![
                "/", "/", ".", "..", "%", "%2", "%2e", "%2E", "%2f", "%2F", "%25", "%5c", "%3b",
                ";", ";x", "\\", "a", "A", "f", "0", "5", "secret", "public", "api", "é", "%C3",
                "%A9", "%ff", "~", "-",
            ]);
            prop::collection::vec(piece, 0..16).prop_map(|p| format!("/{}", p.concat()))
        }

        fn routes() -> Vec<Matcher> {
            let m = |path| Matcher {
                hosts: Vec::new(),
                path,
            };
            let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
            vec![
                m(PathMatch::Exact(strings(&["/public/secret"]))),
                m(PathMatch::Prefix(strings(&["/secret"]))),
                m(PathMatch::Prefix(strings(&["/api/"]))),
                m(PathMatch::Regex(
                    regex::Regex::new("^/public/[a-z]+$").unwrap(),
                )),
                m(PathMatch::Prefix(strings(&["/public"]))),
                m(PathMatch::Prefix(strings(&["/"]))),
            ]
        }

        /// A clean path's segment, spelled another way that Tomcat, Spring,
        /// Starlette or nginx resolve to the same segment.
        fn respell(seg: &str, how: u8) -> String {
            match how % 6 {
                0 => seg.to_owned(),
                // Percent-encode every character.
                1 => seg.bytes().map(|b| format!("%{b:02x}")).collect(),
                // A path parameter.
                2 => format!("{seg};jsessionid=1"),
                // A detour through a sibling and back.
                3 => format!("x/..;/{seg}"),
                4 => format!("./{seg}"),
                // An empty segment before it, and an encoded dot-dot detour.
                _ => format!("/y/%2e%2e/{seg}"),
            }
        }

        proptest! {
            #[test]
            fn normalising_is_idempotent(path in tricky_path()) {
                let once = normalize_path(&path).into_owned();
                prop_assert_eq!(normalize_path(&once), once.as_str());
            }

            #[test]
            fn never_yields_dot_segments(path in tricky_path()) {
                let n = normalize_path(&path);
                prop_assert!(n.starts_with('/'));
                prop_assert!(!n.contains("//"), "{}", n);
                for seg in n.split('/') {
                    prop_assert!(seg != ".." && seg != ".", "{}", n);
                }
            }

            #[test]
            fn a_normalised_path_routes_as_its_raw_spelling(path in tricky_path()) {
                let routes = routes();
                let n = normalize_path(&path);
                prop_assert_eq!(
                    first_match(&routes, "h", &path),
                    first_match(&routes, "h", &n)
                );
            }

            /// The rule of the path table: a spelling an upstream framework
            /// reads as the clean path is routed as the clean path.
            #[test]
            fn respelled_paths_route_as_the_clean_one(
                segs in prop::collection::vec(
                    (prop::sample::select(vec!["secret", "public", "api", "x", "Secret"]), any::<u8>()),
                    1..5,
                ),
                trailing in any::<bool>(),
            ) {
                let slash = if trailing { "/" } else { "" };
                let clean: String =
                    segs.iter().map(|(s, _)| format!("/{s}")).collect::<String>() + slash;
                let spelled: String =
                    segs.iter().map(|(s, how)| format!("/{}", respell(s, *how))).collect::<String>()
                        + slash;
                let routes = routes();
                prop_assert_eq!(
                    first_match(&routes, "h", &spelled),
                    first_match(&routes, "h", &clean),
                    "{} vs {}", spelled, clean
                );
            }
        }
    }
}
