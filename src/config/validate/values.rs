//! Value parsers shared by every concern: durations, counts, sizes, header
//! edits, addresses. Each reports its own problem, so callers only pick a default.

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use toml::Spanned;

use crate::config::error::Problems;
use crate::config::file::{FileHeaderOps, FileSize, OneOrMany};
use crate::config::{HeaderOps, parse_duration};

/// `table.key`, or `key` at the top level.
pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// `table.field` as a duration greater than zero; `None` if absent or invalid.
pub(super) fn duration(
    p: &mut Problems<'_>,
    v: &Option<Spanned<String>>,
    table: &str,
    field: &str,
) -> Option<Duration> {
    let v = v.as_ref()?;
    match parse_duration(v.get_ref()) {
        Some(d) if !d.is_zero() => Some(d),
        Some(_) => {
            p.push(
                Some(v.span()),
                join(table, field),
                "must be greater than zero",
                None,
            );
            None
        }
        None => {
            p.push(
                Some(v.span()),
                join(table, field),
                format!("`{}` is not a duration", v.get_ref()),
                Some(
                    "write a number and a unit: \"500ms\", \"30s\", \"5m\", \"24h\", \"7d\"".into(),
                ),
            );
            None
        }
    }
}

/// A non-negative count (positive unless `zero_ok`); `None` if absent or invalid.
pub(super) fn count(
    p: &mut Problems<'_>,
    v: &Option<Spanned<i64>>,
    key: &str,
    zero_ok: bool,
) -> Option<usize> {
    let v = v.as_ref()?;
    let n = *v.get_ref();
    if n < 0 || (n == 0 && !zero_ok) {
        p.push(
            Some(v.span()),
            key,
            format!("{n} is out of range"),
            Some(format!(
                "use a number {} or more",
                if zero_ok { 0 } else { 1 }
            )),
        );
        return None;
    }
    usize::try_from(n).ok()
}

/// `key` as a size within `min..=max` bytes; `None` if absent or invalid.
pub(super) fn size(
    p: &mut Problems<'_>,
    v: &Option<Spanned<FileSize>>,
    key: &str,
    (min, max): (u64, u64),
) -> Option<u64> {
    let v = v.as_ref()?;
    let range = || format!("use a size from {min} to {max} bytes, e.g. \"16KiB\"");
    let n = match v.get_ref() {
        FileSize::Bytes(n) => u64::try_from(*n).ok(),
        FileSize::Text(t) => match parse_size(t) {
            Some(n) => Some(n),
            None => {
                p.push(
                    Some(v.span()),
                    key,
                    format!("`{t}` is not a size"),
                    Some("write a number of bytes or e.g. \"16KiB\", \"64KB\"".into()),
                );
                return None;
            }
        },
    };
    match n {
        Some(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            let shown = match v.get_ref() {
                FileSize::Bytes(n) => n.to_string(),
                FileSize::Text(t) => format!("`{t}`"),
            };
            p.push(
                Some(v.span()),
                key,
                format!("{shown} is out of range"),
                Some(range()),
            );
            None
        }
    }
}

/// `"10MB"` (10^6), `"10MiB"` (2^20), `"512KB"`, `"1GB"`, `"100"` (bytes).
pub(super) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split].parse().ok()?;
    let unit: u64 = match s[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(unit).filter(|n| *n > 0)
}

/// The strings of a `"one"` or `["many"]` value.
pub(super) fn one_or_many(v: &Spanned<OneOrMany>) -> Vec<&str> {
    match v.get_ref() {
        OneOrMany::One(s) => vec![s.as_str()],
        OneOrMany::Many(list) => list.iter().map(String::as_str).collect(),
    }
}

/// The names between `{` and `}` in `s`, in order.
pub(super) fn placeholders(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find('{') {
        match rest[start..].find('}') {
            Some(end) => {
                out.push(&rest[start + 1..start + end]);
                rest = &rest[start + end + 1..];
            }
            None => break,
        }
    }
    out
}

/// `request_headers` / `response_headers`: every name and value checked.
pub(super) fn header_ops(
    p: &mut Problems<'_>,
    ops: &Option<Spanned<FileHeaderOps>>,
    key: &str,
) -> HeaderOps {
    let mut out = HeaderOps::default();
    let Some(ops) = ops else { return out };
    let mut pair = |name: &Spanned<String>,
                    value: &Spanned<String>,
                    what: &str|
     -> Option<(HeaderName, HeaderValue)> {
        let n = header_name(p, name, &format!("{key}.{what}"))?;
        match HeaderValue::from_str(value.get_ref()) {
            Ok(v) => Some((n, v)),
            Err(_) => {
                p.push(
                    Some(value.span()),
                    format!("{key}.{what}.{}", name.get_ref()),
                    "header values cannot contain control characters or newlines",
                    None,
                );
                None
            }
        }
    };
    let f = ops.get_ref();
    out.set = f
        .set
        .iter()
        .filter_map(|(n, v)| pair(n, v, "set"))
        .collect();
    out.add = f
        .add
        .iter()
        .filter_map(|(n, v)| pair(n, v, "add"))
        .collect();
    out.remove = f
        .remove
        .iter()
        .filter_map(|n| header_name(p, n, &format!("{key}.remove")))
        .collect();
    out
}

fn header_name(p: &mut Problems<'_>, name: &Spanned<String>, key: &str) -> Option<HeaderName> {
    match HeaderName::from_bytes(name.get_ref().as_bytes()) {
        Ok(n) => Some(n),
        Err(_) => {
            p.push(
                Some(name.span()),
                key,
                format!("`{}` is not a valid header name", name.get_ref()),
                Some("header names are letters, digits and `-`, e.g. \"X-Frame-Options\"".into()),
            );
            None
        }
    }
}

/// `0.0.0.0:443`, `[::]:443`, `:443` (all IPv4 interfaces) or `443`.
pub(super) fn parse_listen_addr(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    if let Ok(addr) = s.parse() {
        return Some(addr);
    }
    let port = s.strip_prefix(':').unwrap_or(s);
    let port: u16 = port.parse().ok()?;
    Some(SocketAddr::from(([0, 0, 0, 0], port)))
}

/// Why an upstream server address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ServerAddrError {
    /// `https://`: ferry speaks plain HTTP/1.1 to its upstreams.
    #[error("TLS to upstreams is not supported yet")]
    Tls,
    /// Something after `host:port`; routes forward the request path as it is.
    #[error("`{0}` has a path; upstream servers are host:port only")]
    Path(String),
    /// Not an authority, or one with user info.
    #[error("`{0}` is not a host:port")]
    NotHostPort(String),
}

impl ServerAddrError {
    /// How to fix it.
    pub(super) fn help(&self) -> &'static str {
        match self {
            ServerAddrError::Tls => {
                "ferry terminates TLS at the edge; reach the backend over plain http: \"host:port\""
            }
            ServerAddrError::Path(_) => "route paths are forwarded unchanged; remove the path",
            ServerAddrError::NotHostPort(_) => "e.g. \"backend:8000\" or \"127.0.0.1:8000\"",
        }
    }
}

/// An upstream server: `host:port`, optionally written with `http://`.
pub(super) fn parse_server(s: &str) -> Result<http::uri::Authority, ServerAddrError> {
    let trimmed = s.trim();
    if trimmed.starts_with("https://") {
        return Err(ServerAddrError::Tls);
    }
    let rest = trimmed.strip_prefix("http://").unwrap_or(trimmed);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err(ServerAddrError::Path(s.to_owned()));
    }
    let with_port = if has_port(rest) {
        rest.to_owned()
    } else {
        format!("{rest}:80")
    };
    match with_port.parse::<http::uri::Authority>() {
        Ok(a) if !a.host().is_empty() && !a.as_str().contains('@') => Ok(a),
        _ => Err(ServerAddrError::NotHostPort(s.to_owned())),
    }
}

fn has_port(s: &str) -> bool {
    match s.rfind(':') {
        Some(i) => {
            s.starts_with('[') && s[..i].ends_with(']')
                || !s.starts_with('[') && !s[..i].contains(':')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{MINIMAL, parse_str};
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("10MB"), Some(10_000_000));
        assert_eq!(parse_size("10 MiB"), Some(10 << 20));
        assert_eq!(parse_size("1gb"), Some(1_000_000_000));
        for bad in ["", "MB", "1.5MB", "10 parsecs", "0"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        let c = parse_str(&MINIMAL.replace(
            "upstream = \"backend\"",
            "upstream = \"backend\"\nmax_body_size = \"1MiB\"",
        ))
        .unwrap();
        assert_eq!(c.routes[0].max_body_size, Some(1 << 20));
        let c = parse_str(&MINIMAL.replace(
            "upstream = \"backend\"",
            "upstream = \"backend\"\nmax_body_size = 4096",
        ))
        .unwrap();
        assert_eq!(c.routes[0].max_body_size, Some(4096));
    }

    #[test]
    fn server_addresses() {
        assert_eq!(parse_server("b:8000").unwrap().as_str(), "b:8000");
        assert_eq!(parse_server("http://b:8000/").unwrap().as_str(), "b:8000");
        assert_eq!(parse_server("b").unwrap().as_str(), "b:80");
        assert_eq!(parse_server("[::1]:9000").unwrap().as_str(), "[::1]:9000");
        assert_eq!(parse_server("[::1]").unwrap().as_str(), "[::1]:80");
        assert!(parse_server("user@b:80").is_err());
        assert!(parse_server("").is_err());
        assert_eq!(
            parse_listen_addr(":443"),
            Some(SocketAddr::from(([0, 0, 0, 0], 443)))
        );
        assert_eq!(parse_listen_addr("[::]:443").unwrap().port(), 443);
    }

    #[test]
    fn server_address_errors_say_how_to_fix_them() {
        let tls = parse_server("https://b:1").unwrap_err();
        assert_eq!(tls, ServerAddrError::Tls);
        assert_eq!(tls.to_string(), "TLS to upstreams is not supported yet");
        assert_eq!(
            tls.help(),
            "ferry terminates TLS at the edge; reach the backend over plain http: \"host:port\""
        );
        let path = parse_server(" b:1/api").unwrap_err();
        assert_eq!(
            path.to_string(),
            "` b:1/api` has a path; upstream servers are host:port only"
        );
        assert_eq!(
            path.help(),
            "route paths are forwarded unchanged; remove the path"
        );
        let bad = parse_server("user@b:1").unwrap_err();
        assert_eq!(bad.to_string(), "`user@b:1` is not a host:port");
        assert_eq!(bad.help(), "e.g. \"backend:8000\" or \"127.0.0.1:8000\"");
    }
}
