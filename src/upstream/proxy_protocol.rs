//! `send_proxy_protocol = "v1" | "v2"`: the PROXY protocol header ferry
//! writes first on every new connection to such an upstream (another proxy,
//! or a server that reads the header itself), so the next hop learns the
//! client's address without trusting an HTTP header.
//!
//! A connection that carried one client's header must not carry another
//! client's requests: [`pool`](super::pool) keeps such connections apart by
//! [`ProxySource`] (HAProxy likewise never shares `send-proxy` connections
//! between clients).

use std::net::{IpAddr, SocketAddr};

use ppp::v2;

use crate::config::ProxyProtocolVersion;

/// Who a request is for, as the header states it. The proxy puts it in the
/// request's extensions for an upstream with `send_proxy_protocol`; the pool
/// writes it on new connections and reuses a connection only for the same value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProxySource {
    /// The client (the PROXY source, if ferry itself sits behind a balancer).
    pub client: SocketAddr,
    /// The address the client connected to (the destination).
    pub local: SocketAddr,
}

/// The header for `source`: PROXY TCP4/TCP6 with its addresses, or, without
/// a source (an active health check, ferry's own connection), v1 `UNKNOWN` /
/// v2 `LOCAL`, which tell the receiver to use the real peer.
pub fn header(version: ProxyProtocolVersion, source: Option<&ProxySource>) -> Vec<u8> {
    let addresses = source.map(|s| same_family(s.client, s.local));
    match (version, addresses) {
        (ProxyProtocolVersion::V1, Some((src, dst))) => {
            let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                src.ip(),
                dst.ip(),
                src.port(),
                dst.port()
            )
            .into_bytes()
        }
        (ProxyProtocolVersion::V1, None) => b"PROXY UNKNOWN\r\n".to_vec(),
        (ProxyProtocolVersion::V2, Some((src, dst))) => {
            let builder = v2::Builder::with_addresses(
                v2::Version::Two | v2::Command::Proxy,
                v2::Protocol::Stream,
                (src, dst),
            );
            // At most 36 bytes of addresses: the length always fits.
            builder.build().unwrap_or_else(|_| local_v2())
        }
        (ProxyProtocolVersion::V2, None) => local_v2(),
    }
}

/// v2 `LOCAL`, no addresses: 16 bytes.
fn local_v2() -> Vec<u8> {
    let mut h = v2::PROTOCOL_PREFIX.to_vec();
    h.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    h
}

/// Both addresses in one family, as the header requires: IPv4-mapped IPv6
/// (a dual-stack socket) as IPv4, and if one side is still IPv6, the other
/// mapped into IPv6.
fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    let (src, dst) = (canonical(src), canonical(dst));
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(a), IpAddr::V6(_)) => (
            SocketAddr::new(IpAddr::V6(a.to_ipv6_mapped()), src.port()),
            dst,
        ),
        (IpAddr::V6(_), IpAddr::V4(b)) => (
            src,
            SocketAddr::new(IpAddr::V6(b.to_ipv6_mapped()), dst.port()),
        ),
        _ => (src, dst),
    }
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(addr, |v4| SocketAddr::new(IpAddr::V4(v4), addr.port())),
        IpAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(client: &str, local: &str) -> ProxySource {
        ProxySource {
            client: client.parse().unwrap(),
            local: local.parse().unwrap(),
        }
    }

    #[test]
    fn v1_headers() {
        let s = source("192.0.2.7:5000", "10.0.0.1:443");
        assert_eq!(
            header(ProxyProtocolVersion::V1, Some(&s)),
            b"PROXY TCP4 192.0.2.7 10.0.0.1 5000 443\r\n"
        );
        let s = source("[::ffff:192.0.2.7]:5000", "[2001:db8::1]:443");
        assert_eq!(
            header(ProxyProtocolVersion::V1, Some(&s)),
            b"PROXY TCP6 ::ffff:192.0.2.7 2001:db8::1 5000 443\r\n"
        );
        assert_eq!(header(ProxyProtocolVersion::V1, None), b"PROXY UNKNOWN\r\n");
    }

    #[test]
    fn v2_headers_parse_back() {
        let s = source("[::ffff:192.0.2.7]:5000", "10.0.0.1:443");
        let bytes = header(ProxyProtocolVersion::V2, Some(&s));
        let h = v2::Header::try_from(bytes.as_slice()).unwrap();
        assert_eq!(h.command, v2::Command::Proxy);
        assert_eq!(
            h.addresses,
            v2::Addresses::from((
                "192.0.2.7:5000".parse::<SocketAddr>().unwrap(),
                "10.0.0.1:443".parse::<SocketAddr>().unwrap()
            ))
        );
        assert_eq!(h.len(), bytes.len());
        let local = header(ProxyProtocolVersion::V2, None);
        let h = v2::Header::try_from(local.as_slice()).unwrap();
        assert_eq!(h.command, v2::Command::Local);
        assert_eq!(h.addresses, v2::Addresses::Unspecified);
    }
}
