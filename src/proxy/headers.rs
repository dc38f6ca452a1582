//! Header rewriting on the way through. Pure functions over `HeaderMap`.
//!
//! Order on the request path: [`strip_hop_by_hop`] first (so a client's
//! `Connection: X-Forwarded-For` cannot remove what we add), then
//! [`set_forwarded`], then the route's own `request_headers`.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;

use crate::config::IpNet;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Headers that describe the client or the edge, which only a proxy may set:
/// from a peer that is not a trusted proxy they are removed, so a client
/// cannot claim another address, scheme, port or path prefix. ferry sets
/// `X-Forwarded-For`, `-Proto`, `-Host` and `X-Real-IP` itself (and
/// `Forwarded` when asked to); the others it does not know and drops.
const EDGE_ONLY: &[&str] = &[
    "forwarded",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "true-client-ip",
    "cf-connecting-ip",
    "x-client-ip",
    "x-cluster-client-ip",
];

/// Headers that describe one connection, never the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&HeaderName] = &[
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
    &header::PROXY_AUTHORIZATION,
    &header::PROXY_AUTHENTICATE,
];

/// Removes hop-by-hop headers, including every header that `Connection` names.
/// `TE: trailers` survives (it is how a client says it accepts trailers).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Fast path: one pass over the names, and most messages carry none of these.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(&k)) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    let te_trailers = headers.get_all(header::TE).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
    });
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Whether `Connection` lists the token `upgrade` (any case).
pub fn connection_has_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Who is asking, as far as we can trust what we are told.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded<'a> {
    /// The TCP peer.
    pub peer: IpAddr,
    /// The same, as [`ip_value`] formats it (once per connection).
    pub peer_value: &'a HeaderValue,
    /// `https` or `http`: how the client reached ferry.
    pub proto: &'static str,
    /// The Host (or `:authority`) the client asked for.
    pub host: &'a HeaderValue,
    /// Peers whose `X-Forwarded-*` we believe.
    pub trusted: &'a [IpNet],
    /// Also set RFC 7239 `Forwarded` (`server.forwarded_header`).
    pub rfc7239: bool,
}

/// Sets `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host` and
/// `X-Real-IP` (and `Forwarded`, when `f.rfc7239`).
///
/// From an untrusted peer, any incoming values are replaced (a client cannot
/// spoof its address), and the [`EDGE_ONLY`] headers and every header whose
/// name has an underscore are removed (CGI-style servers — WSGI, PHP, Rack —
/// read `X_Forwarded_For` and `X-Forwarded-For` as the same variable;
/// nginx drops such names too). From a trusted proxy, the peer is appended to
/// its `X-Forwarded-For` (and `Forwarded`), everything else it sent is kept,
/// and `X-Real-IP` is the right-most address in the chain that is not itself
/// a trusted proxy (nginx's `real_ip_recursive on`).
pub fn set_forwarded(headers: &mut HeaderMap, f: &Forwarded<'_>) {
    let peer = canonical(f.peer);
    let is_trusted = |ip: IpAddr| is_trusted(f.trusted, ip);
    let peer_trusted = is_trusted(peer);
    if !peer_trusted {
        strip_edge_only(headers);
    }
    if f.rfc7239 {
        append_forwarded(headers, peer, f);
    }

    let mut real_ip = peer;
    let incoming: Option<String> = if peer_trusted {
        let joined = join_values(headers, &X_FORWARDED_FOR);
        if let Some(chain) = &joined {
            // Walk back from the nearest hop; stop at the first untrusted one.
            // If every hop is trusted, the left-most wins (as in nginx).
            for hop in chain.rsplit(',').map(str::trim) {
                let Ok(ip) = hop.parse::<IpAddr>() else { break };
                real_ip = canonical(ip);
                if !is_trusted(real_ip) {
                    break;
                }
            }
        }
        joined
    } else {
        None
    };

    match incoming {
        Some(chain) if !chain.trim().is_empty() => {
            let peer = f.peer_value.to_str().unwrap_or_default();
            set(headers, &X_FORWARDED_FOR, &format!("{chain}, {peer}"));
        }
        _ => {
            headers.insert(X_FORWARDED_FOR.clone(), f.peer_value.clone());
        }
    }
    if real_ip == peer {
        headers.insert(X_REAL_IP.clone(), f.peer_value.clone());
    } else {
        headers.insert(X_REAL_IP.clone(), ip_value(real_ip));
    }
    if !(peer_trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(f.proto));
    }
    if !(peer_trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        headers.insert(X_FORWARDED_HOST.clone(), f.host.clone());
    }
}

/// Removes the [`EDGE_ONLY`] headers and those with `_` in their names.
fn strip_edge_only(headers: &mut HeaderMap) {
    let edge_only = |k: &HeaderName| {
        let name = k.as_str();
        name.contains('_') || EDGE_ONLY.contains(&name)
    };
    // Fast path: one pass over the names; most requests carry none.
    if !headers.keys().any(edge_only) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|k| edge_only(k)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

/// Adds this hop's RFC 7239 element, `for=…;proto=…;host=…`, after a
/// trusted peer's `Forwarded` (an untrusted one's was removed).
fn append_forwarded(headers: &mut HeaderMap, peer: IpAddr, f: &Forwarded<'_>) {
    let node = match peer {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    let host = String::from_utf8_lossy(f.host.as_bytes());
    let host = if !host.is_empty() && host.bytes().all(is_tchar) {
        host.into_owned()
    } else {
        format!("\"{}\"", host.replace('\\', "\\\\").replace('"', "\\\""))
    };
    let element = format!("for={node};proto={};host={host}", f.proto);
    let value = match join_values(headers, &FORWARDED) {
        Some(chain) if !chain.trim().is_empty() => format!("{chain}, {element}"),
        _ => element,
    };
    set(headers, &FORWARDED, &value);
}

/// RFC 9110 `tchar`: what an RFC 7239 value may be without quotes.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `ip` is one of the `trusted` proxies, whose `X-Forwarded-*` ferry believes.
pub fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|net| net.contains(ip))
}

/// Sets `Host` to the authority the client asked for (HTTP/2's `:authority`
/// becomes Host for HTTP/1.1) and returns it, for `X-Forwarded-Host`. A Host
/// header that already says exactly that is kept as it is.
pub fn set_host(headers: &mut HeaderMap, host: &Authority) -> HeaderValue {
    if let Some(v) = headers.get(header::HOST) {
        if v.as_bytes() == host.as_str().as_bytes() {
            return v.clone();
        }
    }
    // An authority is visible ASCII, so this always converts.
    let value = HeaderValue::from_str(host.as_str()).unwrap_or(HeaderValue::from_static(""));
    headers.insert(header::HOST, value.clone());
    value
}

/// An address as `X-Forwarded-For` and `X-Real-IP` carry it (IPv4-mapped
/// IPv6 as plain IPv4).
pub fn ip_value(ip: IpAddr) -> HeaderValue {
    HeaderValue::try_from(canonical(ip).to_string()).expect("an IP address is a valid header value")
}

fn join_values(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for v in headers.get_all(name) {
        let v = v.to_str().ok()?;
        match &mut out {
            Some(s) => {
                s.push_str(", ");
                s.push_str(v);
            }
            None => out = Some(v.to_owned()),
        }
    }
    out
}

fn set(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(v) => {
            headers.insert(name.clone(), v);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

/// IPv4-mapped IPv6 (from dual-stack sockets) printed as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// HTTP/2 may split `cookie` into several fields; HTTP/1.1 needs one, joined
/// with `; ` (RFC 9113 §8.2.3).
pub fn merge_cookies(headers: &mut HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    let mut merged = Vec::new();
    for v in headers.get_all(header::COOKIE) {
        if !merged.is_empty() {
            merged.extend_from_slice(b"; ");
        }
        merged.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&merged) {
        headers.insert(header::COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn get<'a>(h: &'a HeaderMap, k: &str) -> Option<&'a str> {
        h.get(k).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", "x-other"),
            ("x-secret", "s"),
            ("x-other", "o"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("trailer", "x-t"),
            ("proxy-authorization", "Basic Zm9v"),
            ("te", "gzip, trailers"),
            ("x-keep", "k"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["te", "x-keep"]);
        assert_eq!(get(&h, "te"), Some("trailers"));

        let mut h = map(&[("te", "gzip")]);
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty());
    }

    #[test]
    fn upgrade_token_detection() {
        assert!(connection_has_upgrade(&map(&[(
            "connection",
            "keep-alive, Upgrade"
        )])));
        assert!(!connection_has_upgrade(&map(&[(
            "connection",
            "keep-alive"
        )])));
        assert!(!connection_has_upgrade(&map(&[("upgrade", "websocket")])));
    }

    /// `set_forwarded` for a request to example.com over https from `peer`.
    fn forward(h: &mut HeaderMap, peer: &str, trusted: &[IpNet]) {
        let peer: IpAddr = peer.parse().unwrap();
        let f = Forwarded {
            peer,
            peer_value: &ip_value(peer),
            proto: "https",
            host: &HeaderValue::from_static("example.com"),
            trusted,
            rfc7239: false,
        };
        set_forwarded(h, &f);
    }

    #[test]
    fn untrusted_clients_cannot_spoof() {
        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "evil.com"),
        ]);
        forward(&mut h, "203.0.113.9", &[]);
        assert_eq!(get(&h, "x-forwarded-for"), Some("203.0.113.9"));
        assert_eq!(get(&h, "x-real-ip"), Some("203.0.113.9"));
        assert_eq!(get(&h, "x-forwarded-proto"), Some("https"));
        assert_eq!(get(&h, "x-forwarded-host"), Some("example.com"));
    }

    #[test]
    fn trusted_proxies_are_appended_to() {
        let trusted = [IpNet::parse("10.0.0.0/8").unwrap()];
        let mut h = map(&[
            ("x-forwarded-for", "198.51.100.7, 10.1.1.1"),
            ("x-forwarded-for", "10.2.2.2"),
            ("x-forwarded-proto", "http"),
        ]);
        forward(&mut h, "10.0.0.5", &trusted);
        assert_eq!(
            get(&h, "x-forwarded-for"),
            Some("198.51.100.7, 10.1.1.1, 10.2.2.2, 10.0.0.5")
        );
        assert_eq!(get(&h, "x-real-ip"), Some("198.51.100.7"));
        assert_eq!(get(&h, "x-forwarded-proto"), Some("http"));
        assert_eq!(get(&h, "x-forwarded-host"), Some("example.com"));

        // Every hop trusted: the left-most is the client.
        let mut h = map(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
        forward(&mut h, "10.0.0.5", &trusted);
        assert_eq!(get(&h, "x-real-ip"), Some("10.9.9.9"));
        // Garbage stops the walk at the last address that parsed.
        let mut h = map(&[("x-forwarded-for", "unknown, 10.1.1.1")]);
        forward(&mut h, "10.0.0.5", &trusted);
        assert_eq!(get(&h, "x-real-ip"), Some("10.1.1.1"));
    }

    #[test]
    fn ipv4_mapped_peers_print_as_ipv4() {
        let mut h = HeaderMap::new();
        forward(&mut h, "::ffff:192.0.2.1", &[]);
        assert_eq!(get(&h, "x-forwarded-for"), Some("192.0.2.1"));
        let mut h = HeaderMap::new();
        forward(&mut h, "2001:db8::1", &[]);
        assert_eq!(get(&h, "x-forwarded-for"), Some("2001:db8::1"));
    }

    #[test]
    fn cookies_merge_for_http1() {
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2")]);
        merge_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(get(&h, "cookie"), Some("a=1; b=2"));
    }
}
