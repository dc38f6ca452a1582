//! Step 1 of a decision: is the request line one ferry serves, and which
//! authority does it ask for. Everything here is refused before any route is
//! looked at, because each is a way to make ferry and the upstream disagree
//! about what was asked.

use std::net::Ipv6Addr;

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::uri::Authority;
use http::{Method, Version};

use super::super::error::ProxyError;
use crate::router::path_refusal;

/// The method, which must be spelled as a registered method would be.
/// Methods are case-sensitive (RFC 9110 §9.1) and every registered one is
/// upper-case: `get` is not `GET` to ferry, but some upstream frameworks
/// upper-case it, so a lower-case method could slip past a route meant for
/// the real one. 400, as nginx answers.
pub(super) fn method(head: &Parts) -> Result<(), ProxyError> {
    if head.method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(ProxyError::BadRequest("invalid method"));
    }
    Ok(())
}

/// `CONNECT` asks for a tunnel to any host: ferry is a reverse proxy and
/// opens none (501), except an HTTP/2 extended CONNECT for a WebSocket (RFC
/// 8441), which it bridges. An extended CONNECT for any other `:protocol`
/// would otherwise reach the upstream as `CONNECT /path`.
pub(super) fn connect(head: &Parts) -> Result<(), ProxyError> {
    if head.method != Method::CONNECT {
        return Ok(());
    }
    match head.extensions.get::<hyper::ext::Protocol>() {
        None => Err(ProxyError::NotImplemented("CONNECT is not supported")),
        Some(p) if p.as_str().eq_ignore_ascii_case("websocket") => Ok(()),
        Some(_) => Err(ProxyError::NotImplemented(
            "extended CONNECT is supported for websocket only",
        )),
    }
}

/// A path ferry refuses before routing ([`path_refusal`]: NUL, backslash).
pub(super) fn path(head: &Parts) -> Result<(), ProxyError> {
    match path_refusal(head.uri.path()) {
        Some(why) => Err(ProxyError::BadRequest(why)),
        None => Ok(()),
    }
}

/// The authority the client asked for.
///
/// - More than one `Host` field is refused on both protocols (RFC 9112 §3.2,
///   and for HTTP/2 without `:authority` the same rule): ferry would route
///   on one and an upstream might read the other.
/// - HTTP/1.1 absolute-form (`GET http://a/x`): the target's authority wins
///   and `Host` is replaced with it (RFC 9112 §3.2.2).
/// - HTTP/2 with `:authority` and a `host` that names another origin: 400.
///   Clients must not send that (RFC 9113 §8.3.1) and an upstream that reads
///   `Host` would be told another story than the route was chosen on.
/// - Whatever the source, it must be `host[:port]` with a host name, an IPv4
///   address or a bracketed IPv6 one and a numeric port: no userinfo
///   (`localhost@other`), no empty or named port (`name:`, `name:abc`).
///   HTTP/1.1 requires it; HTTP/1.0 may omit it (`localhost` then).
pub(super) fn authority(head: &Parts) -> Result<Authority, ProxyError> {
    let mut hosts = head.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::BadRequest("more than one Host header"));
    }
    if let Some(authority) = head.uri.authority() {
        let scheme_ok = matches!(head.uri.scheme_str(), Some("http" | "https"));
        if !scheme_ok || !valid(authority.as_str().as_bytes()) {
            return Err(ProxyError::BadRequest("invalid request target"));
        }
        if head.version == Version::HTTP_2 {
            let https = head.uri.scheme_str() == Some("https");
            if host.is_some_and(|h| !same_origin(h, authority.as_str(), https)) {
                return Err(ProxyError::BadRequest("Host differs from :authority"));
            }
        }
        return Ok(authority.clone());
    }
    match host {
        Some(value) if valid(value.as_bytes()) => Authority::try_from(value.as_bytes())
            .map_err(|_| ProxyError::BadRequest("invalid Host header")),
        Some(_) => Err(ProxyError::BadRequest("invalid Host header")),
        None if head.version == Version::HTTP_10 => Ok(Authority::from_static("localhost")),
        None => Err(ProxyError::BadRequest("missing Host header")),
    }
}

/// `host[:port]` as ferry accepts it (see [`authority`]).
fn valid(authority: &[u8]) -> bool {
    let Some((host, port)) = split(authority) else {
        return false;
    };
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.iter().all(u8::is_ascii_digit)
            && std::str::from_utf8(p).is_ok_and(|p| p.parse::<u16>().is_ok())
    });
    port_ok && valid_host(host)
}

/// Splits `host[:port]`; `None` when there is more than one unbracketed colon.
fn split(authority: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    if authority.first() == Some(&b'[') {
        let end = authority.iter().position(|&b| b == b']')?;
        let (host, rest) = authority.split_at(end + 1);
        return match rest {
            [] => Some((host, None)),
            [b':', port @ ..] => Some((host, Some(port))),
            _ => None,
        };
    }
    let mut parts = authority.splitn(3, |&b| b == b':');
    let host = parts.next()?;
    let port = parts.next();
    match parts.next() {
        Some(_) => None,
        None => Some((host, port)),
    }
}

/// A DNS name or IPv4 address (letters, digits, `-`, `_`, non-empty labels,
/// one trailing dot allowed), or a bracketed IPv6 address.
fn valid_host(host: &[u8]) -> bool {
    if let Some(inner) = host.strip_prefix(b"[").and_then(|h| h.strip_suffix(b"]")) {
        return std::str::from_utf8(inner).is_ok_and(|s| s.parse::<Ipv6Addr>().is_ok());
    }
    let name = host.strip_suffix(b".").unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split(|&b| b == b'.').all(|label| {
            !label.is_empty()
                && label
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Whether a `host` header names the same origin as `:authority`: host
/// case-insensitively and without a trailing dot, a missing port being the
/// scheme's default (RFC 9113 §8.3.1 asks for normalised values).
fn same_origin(host: &HeaderValue, authority: &str, https: bool) -> bool {
    let default = if https { 443 } else { 80 };
    let parts = |a: &[u8]| -> Option<(Vec<u8>, u16)> {
        if !valid(a) {
            return None;
        }
        let (h, port) = split(a)?;
        let h = h.strip_suffix(b".").unwrap_or(h).to_ascii_lowercase();
        let port = match port {
            Some(p) => std::str::from_utf8(p).ok()?.parse().ok()?,
            None => default,
        };
        Some((h, port))
    };
    match (parts(host.as_bytes()), parts(authority.as_bytes())) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        for ok in [
            "localhost",
            "localhost:8443",
            "Example.COM.",
            "my_service:8000",
            "127.0.0.1:80",
            "[::1]",
            "[2001:db8::1]:443",
            "a-b.c",
        ] {
            assert!(valid(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "localhost@other",
            "user:pw@host",
            "name:abc",
            "name:",
            "name:99999",
            "name:123456",
            ":80",
            "::1",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[zz]",
            "a..b",
            ".a",
            "a b",
            "a/b",
            "a%41",
            "a:1:2",
        ] {
            assert!(!valid(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn origins_compare_normalised() {
        let same = |h: &'static str, a: &str| same_origin(&HeaderValue::from_static(h), a, true);
        assert!(same("Example.com", "example.com"));
        assert!(same("example.com:443", "example.com"));
        assert!(same("example.com.", "example.com:443"));
        assert!(!same("example.com:8443", "example.com"));
        assert!(!same("evil.test", "example.com"));
        assert!(!same("example.com@evil", "example.com"));
    }
}
