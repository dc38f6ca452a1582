//! The PROXY protocol (v1 text, v2 binary) on a listener with
//! `proxy_protocol = true`: an L4 load balancer (AWS NLB, HAProxy, another
//! ferry) sends one header before the client's bytes saying who the client
//! is. ferry believes it only from `server.trusted_proxies`, reads it with a
//! deadline and size caps, and from then on the header's source address is
//! the client everywhere (`X-Forwarded-For`, `X-Real-IP`, access log, trust
//! decisions).
//!
//! [`parse`] is pure (a fuzz target calls it directly); [`read`] takes the
//! header off a socket without consuming a byte after it, so the TLS
//! handshake or HTTP request that follows is untouched. The `ppp` crate does
//! the field parsing; this module adds what `ppp` leaves to its caller: the
//! v2 size cap, telling "not yet" from "never", and what each header means for
//! the client address.
//!
//! Spec: <https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt>.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ppp::PartialResult;
use ppp::v2::{self, Addresses, Command, Protocol};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest v1 header, `\r\n` included (the spec's worst case:
/// `PROXY UNKNOWN` with two full IPv6 addresses and ports).
pub const V1_MAX_LEN: usize = 107;

/// v2's fixed part: the 12-byte signature, version/command, family/protocol,
/// and the 16-bit length of what follows.
pub const V2_FIXED_LEN: usize = 16;

/// The largest v2 address-and-TLV block accepted. The addresses take at most
/// 216 bytes (AF_UNIX); the rest is TLVs, which ferry ignores: AWS NLB's VPC
/// endpoint id, HAProxy's ALPN/SNI/SSL TLVs and Azure's link id fit easily.
/// The protocol allows 64 KiB; a header claiming more than this is refused
/// rather than buffered.
pub const V2_MAX_BLOCK: usize = 4096;

/// The most bytes a header can take, either version.
pub const MAX_LEN: usize = V2_FIXED_LEN + V2_MAX_BLOCK;

const V2_SIGNATURE: &[u8] = v2::PROTOCOL_PREFIX;
const V1_SIGNATURE: &[u8] = b"PROXY ";

/// A complete header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Its length in bytes: what to consume before the client's own bytes.
    pub len: usize,
    /// 1 (text) or 2 (binary).
    pub version: u8,
    /// The client (source) and the address it connected to (destination),
    /// when the header carries TCP over IPv4/IPv6. `None` for v1 `UNKNOWN`,
    /// v2 `LOCAL` (the balancer's own health check), and v2 `UNSPEC`,
    /// AF_UNIX or datagram headers: ferry then uses the real peer, as the
    /// spec asks.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    /// v2 `LOCAL`: a connection the balancer made for itself.
    pub local: bool,
}

/// What [`parse`] makes of the bytes so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    Complete(Header),
    /// A valid beginning: more bytes are needed to decide.
    Incomplete,
}

/// Why the bytes can never become a valid header (more bytes would not help).
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Neither signature: a client talking TLS or HTTP straight to a listener
    /// that expects a balancer in front.
    #[error("no PROXY protocol header (the connection starts with something else)")]
    NotProxy,
    #[error("PROXY protocol v1 header longer than {V1_MAX_LEN} bytes")]
    V1TooLong,
    #[error(
        "PROXY protocol v2 header announces {len} bytes of addresses and TLVs (at most {V2_MAX_BLOCK} accepted)"
    )]
    V2TooLong { len: usize },
    #[error("malformed PROXY protocol v1 header")]
    V1(#[source] ppp::v1::BinaryParseError),
    #[error("malformed PROXY protocol v2 header")]
    V2(#[source] ppp::v2::ParseError),
}

impl ParseError {
    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::NotProxy => "not_proxy",
            ParseError::V1TooLong | ParseError::V2TooLong { .. } => "too_large",
            ParseError::V1(_) | ParseError::V2(_) => "malformed",
        }
    }
}

/// Parses the PROXY protocol header at the start of `buf` (v1 or v2, told
/// apart by the first byte). Pure, never panics, looks at no more than
/// [`MAX_LEN`] bytes' worth of header: `Ok(Incomplete)` means "a valid
/// beginning, read more", an error means no number of further bytes can make
/// it valid. Bytes after the header (the client's TLS or HTTP) are ignored;
/// [`Header::len`] says where they start.
pub fn parse(buf: &[u8]) -> Result<Parsed, ParseError> {
    match buf.first() {
        None => Ok(Parsed::Incomplete),
        Some(b'\r') => parse_v2(buf),
        Some(b'P') => parse_v1(buf),
        Some(_) => Err(ParseError::NotProxy),
    }
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ParseError> {
    let n = buf.len().min(V1_SIGNATURE.len());
    if buf[..n] != V1_SIGNATURE[..n] {
        return Err(ParseError::NotProxy);
    }
    // Only the first V1_MAX_LEN bytes can be header: a `\r\n` beyond them
    // makes it too long, whatever follows.
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    if !window.contains(&b'\r') {
        // ppp is asked only once the line is complete: on some prefixes
        // (`... 8080 `, the last port still to come) it answers "invalid".
        return if buf.len() >= V1_MAX_LEN {
            Err(ParseError::V1TooLong)
        } else {
            Ok(Parsed::Incomplete)
        };
    }
    let cr_is_last = window.iter().position(|&b| b == b'\r') == Some(window.len() - 1);
    match ppp::v1::Header::try_from(window) {
        // ppp takes the two bytes after the first `\r` as the line end and,
        // for UNKNOWN, skips words up to a lone `\n` word: it accepted
        // `PROXY UNKNOWN x \n\r1` (eating a client byte) and lines with a
        // bare LF inside (found by the proxy_protocol fuzz target). The
        // header is one line: its only LF is the last byte, after a CR.
        Ok(h) if !is_one_line(h.header.as_bytes()) => Err(ParseError::V1(
            ppp::v1::BinaryParseError::Parse(ppp::v1::ParseError::InvalidSuffix),
        )),
        Ok(h) => {
            let addresses = match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => Some((
                    SocketAddr::from((a.source_address, a.source_port)),
                    SocketAddr::from((a.destination_address, a.destination_port)),
                )),
                ppp::v1::Addresses::Tcp6(a) => Some((
                    SocketAddr::from((a.source_address, a.source_port)),
                    SocketAddr::from((a.destination_address, a.destination_port)),
                )),
                ppp::v1::Addresses::Unknown => None,
            };
            Ok(Parsed::Complete(Header {
                len: h.header.len(),
                version: 1,
                addresses,
                local: false,
            }))
        }
        // ppp's "incomplete" only means "wait for the `\n`" while nothing
        // follows the `\r`: with a byte after it the line is over, and the
        // answer must not depend on how the bytes were split into reads
        // (`PROXY T 2\rT` was "incomplete" because of the `T`, while
        // `PROXY T 2\r` alone was invalid; found by the fuzz target).
        Err(e) if e.is_incomplete() && !cr_is_last => Err(v1_error(e)),
        // A `\r` as the last byte the limit allows: its `\n` would be one too many.
        Err(e) if e.is_incomplete() && buf.len() >= V1_MAX_LEN => Err(ParseError::V1TooLong),
        Err(e) if e.is_incomplete() => Ok(Parsed::Incomplete),
        Err(e) => Err(v1_error(e)),
    }
}

/// `…\r\n` with no other CR or LF.
fn is_one_line(header: &[u8]) -> bool {
    match header.strip_suffix(b"\r\n") {
        Some(line) => !line.iter().any(|&b| b == b'\r' || b == b'\n'),
        None => false,
    }
}

fn v1_error(e: ppp::v1::BinaryParseError) -> ParseError {
    match e {
        ppp::v1::BinaryParseError::Parse(ppp::v1::ParseError::HeaderTooLong) => {
            ParseError::V1TooLong
        }
        e => ParseError::V1(e),
    }
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ParseError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] != V2_SIGNATURE[..n] {
        return Err(ParseError::NotProxy);
    }
    if buf.len() < V2_FIXED_LEN {
        return Ok(Parsed::Incomplete);
    }
    // Cap before buffering: ppp would wait for all 64 KiB a header may announce.
    let block = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if block > V2_MAX_BLOCK {
        return Err(ParseError::V2TooLong { len: block });
    }
    let h = match v2::Header::try_from(buf) {
        Ok(h) => h,
        Err(e) if e.is_incomplete() => return Ok(Parsed::Incomplete),
        Err(e) => return Err(ParseError::V2(e)),
    };
    let local = h.command == Command::Local;
    // TLVs are ignored (never iterated): ferry needs none of them.
    let addresses = match (local, h.protocol, h.addresses) {
        (false, Protocol::Stream, Addresses::IPv4(a)) => Some((
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        )),
        (false, Protocol::Stream, Addresses::IPv6(a)) => Some((
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        )),
        _ => None,
    };
    Ok(Parsed::Complete(Header {
        len: h.header.len(),
        version: 2,
        addresses,
        local,
    }))
}

/// Why a connection was closed before its first request.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("no complete PROXY protocol header within {0:?}")]
    Timeout(Duration),
    #[error("the connection closed before the PROXY protocol header was complete")]
    Closed,
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[source] io::Error),
    #[error(transparent)]
    Invalid(#[from] ParseError),
}

impl ReadError {
    /// A short, stable label for `ferry_proxy_protocol_rejected_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            ReadError::Timeout(_) => "timeout",
            ReadError::Closed => "closed",
            ReadError::Io(_) => "io",
            ReadError::Invalid(e) => e.reason(),
        }
    }
}

/// Reads the header off `stream` within `timeout`, consuming exactly its
/// bytes: it peeks, parses, and reads only what belongs to the header (bytes
/// of an incomplete header all do), so what follows stays in the socket for
/// the TLS handshake or HTTP/1.1. Typically one peek and one read.
pub async fn read(stream: &mut TcpStream, timeout: Duration) -> Result<Header, ReadError> {
    match tokio::time::timeout(timeout, read_header(stream)).await {
        Ok(result) => result,
        Err(_) => Err(ReadError::Timeout(timeout)),
    }
}

async fn read_header(stream: &mut TcpStream) -> Result<Header, ReadError> {
    let mut buf = vec![0u8; MAX_LEN];
    // buf[..have] holds header bytes already consumed from the socket.
    let mut have = 0;
    loop {
        let Some(spare) = buf.get_mut(have..).filter(|s| !s.is_empty()) else {
            // Unreachable with `parse`'s caps; refuse rather than loop.
            return Err(ParseError::V1TooLong.into());
        };
        let n = stream.peek(spare).await.map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        let (from, to) = match parse(&buf[..have + n])? {
            Parsed::Complete(header) => {
                let rest = buf.get_mut(have..header.len).ok_or(ParseError::V1TooLong)?;
                stream.read_exact(rest).await.map_err(ReadError::Io)?;
                return Ok(header);
            }
            Parsed::Incomplete => (have, have + n),
        };
        stream
            .read_exact(&mut buf[from..to])
            .await
            .map_err(ReadError::Io)?;
        have = to;
    }
}

/// Lets one info line through per period; the rest go to debug. A
/// misconfigured balancer (or a scanner) hitting a PROXY listener would
/// otherwise log once per connection.
#[derive(Debug)]
pub struct LogLimiter {
    start: Instant,
    /// Milliseconds since `start` of the last line let through, plus one (0 = never).
    last: AtomicU64,
    period: Duration,
}

impl LogLimiter {
    pub fn new(period: Duration) -> LogLimiter {
        LogLimiter {
            start: Instant::now(),
            last: AtomicU64::new(0),
            period,
        }
    }

    /// Whether this line may be logged at info.
    pub fn allow(&self) -> bool {
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < self.period.as_millis() as u64 {
            return false;
        }
        self.last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> Header {
        match parse(buf) {
            Ok(Parsed::Complete(h)) => h,
            other => panic!("{other:?} for {buf:?}"),
        }
    }

    fn v2(command: u8, family_protocol: u8, block: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family_protocol);
        h.extend_from_slice(&(block.len() as u16).to_be_bytes());
        h.extend_from_slice(block);
        h
    }

    const V4_BLOCK: [u8; 12] = [192, 0, 2, 7, 10, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb];

    #[test]
    fn v1_tcp4_tcp6_and_unknown() {
        let h = complete(b"PROXY TCP4 192.0.2.7 10.0.0.1 8080 443\r\nGET / HTTP/1.1\r\n");
        assert_eq!(h.len, 40);
        assert_eq!(
            h.addresses,
            Some((
                "192.0.2.7:8080".parse().unwrap(),
                "10.0.0.1:443".parse().unwrap()
            ))
        );
        let h = complete(b"PROXY TCP6 2001:db8::7 2001:db8::1 1 2\r\n");
        assert_eq!(h.addresses.unwrap().0, "[2001:db8::7]:1".parse().unwrap());
        let h = complete(b"PROXY UNKNOWN\r\n\x16\x03\x01");
        assert_eq!((h.len, h.addresses), (15, None));
        // The spec's worst case is exactly the limit.
        let worst = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(worst.len(), V1_MAX_LEN);
        assert_eq!(complete(worst.as_bytes()).len, V1_MAX_LEN);
    }

    #[test]
    fn every_prefix_of_a_valid_header_is_incomplete() {
        let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 8080 443\r\n".to_vec();
        let v2 = v2(1, 0x11, &V4_BLOCK);
        for header in [v1, v2] {
            for n in 0..header.len() {
                assert!(
                    matches!(parse(&header[..n]), Ok(Parsed::Incomplete)),
                    "{n}: {:?}",
                    parse(&header[..n])
                );
            }
            assert_eq!(complete(&header).len, header.len());
        }
    }

    #[test]
    fn v1_garbage_and_oversize_are_refused() {
        for bad in [
            &b"PROXY TCP9 1.2.3.4\r\n"[..],
            b"PROXY TCP4 1.2.3.999 1.2.3.4 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 99999\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX",
            b"PROXY \xff\xfe\r\n",
            // Found by the fuzz target: not one CRLF-terminated line.
            b"PROXY UNKNOWN x \n\r1",
            b"PROXY UNKNOWN a\nPROXY UNKNOWN b\r\n",
            b"PROXY T 2\rT",
            b"PROXY U\rU",
        ] {
            assert!(matches!(parse(bad), Err(ParseError::V1(_))), "{bad:?}");
        }
        let long = format!("PROXY UNKNOWN {}", "a".repeat(100));
        assert!(matches!(parse(long.as_bytes()), Err(ParseError::V1TooLong)));
        let long_crlf = format!("{long}\r\n");
        // `\r` as byte 107: the `\n` would make 108.
        let cr_at_limit = format!("PROXY UNKNOWN {}\r\n", "a".repeat(V1_MAX_LEN - 15));
        assert!(matches!(
            parse(cr_at_limit.as_bytes()),
            Err(ParseError::V1TooLong)
        ));
        assert!(matches!(
            parse(long_crlf.as_bytes()),
            Err(ParseError::V1TooLong)
        ));
        for not in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"\x16\x03\x01\x02",
            b"PRX",
            b"\r\n\r\n\0X",
        ] {
            assert!(matches!(parse(not), Err(ParseError::NotProxy)), "{not:?}");
        }
    }

    #[test]
    fn v2_proxy_local_unspec_unix_and_tlvs() {
        let h = complete(&v2(1, 0x11, &V4_BLOCK));
        assert_eq!((h.version, h.local), (2, false));
        assert_eq!(
            h.addresses,
            Some((
                "192.0.2.7:8080".parse().unwrap(),
                "10.0.0.1:443".parse().unwrap()
            ))
        );
        // LOCAL: the balancer's own connection; addresses (if any) ignored.
        let h = complete(&v2(0, 0x00, &[]));
        assert_eq!((h.len, h.local, h.addresses), (16, true, None));
        assert!(complete(&v2(0, 0x11, &V4_BLOCK)).addresses.is_none());
        // UNSPEC and AF_UNIX: the real peer is used.
        assert!(complete(&v2(1, 0x00, &[])).addresses.is_none());
        assert!(complete(&v2(1, 0x31, &[0; 216])).addresses.is_none());
        // UDP over a TCP connection makes no sense: ignored likewise.
        assert!(complete(&v2(1, 0x12, &V4_BLOCK)).addresses.is_none());
        // TLVs (even malformed ones) after the addresses are skipped.
        let mut block = V4_BLOCK.to_vec();
        block.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2', 0xEE, 0xFF, 0xFF]);
        let h = complete(&v2(1, 0x11, &block));
        assert_eq!(h.len, 16 + block.len());
        assert!(h.addresses.is_some());
        // IPv6.
        let mut block6 = [0u8; 36];
        block6[15] = 1;
        block6[31] = 2;
        block6[32..].copy_from_slice(&[0, 80, 1, 187]);
        let h = complete(&v2(1, 0x21, &block6));
        assert_eq!(h.addresses.unwrap().0, "[::1]:80".parse().unwrap());
    }

    #[test]
    fn v2_bad_fields_and_oversize_are_refused() {
        // Version 1 in the binary form, command 0xF, family 0x4, protocol 0x3.
        let mut bad_version = v2(1, 0x11, &V4_BLOCK);
        bad_version[12] = 0x11;
        for bad in [
            bad_version,
            v2(0xF, 0x11, &V4_BLOCK),
            v2(1, 0x41, &V4_BLOCK),
            v2(1, 0x13, &V4_BLOCK),
            // Too short for its address family.
            v2(1, 0x11, &[1, 2, 3]),
        ] {
            assert!(matches!(parse(&bad), Err(ParseError::V2(_))), "{bad:?}");
        }
        let mut huge = v2(1, 0x11, &V4_BLOCK);
        huge[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(matches!(
            parse(&huge),
            Err(ParseError::V2TooLong { len: 65535 })
        ));
        // The cap itself is accepted.
        let mut block = V4_BLOCK.to_vec();
        block.resize(V2_MAX_BLOCK, 0x04); // NOOP TLV bytes
        assert_eq!(complete(&v2(1, 0x11, &block)).len, MAX_LEN);
        let mut over = v2(1, 0x11, &block);
        over[14..16].copy_from_slice(&((V2_MAX_BLOCK + 1) as u16).to_be_bytes());
        assert!(matches!(parse(&over), Err(ParseError::V2TooLong { .. })));
    }

    #[test]
    fn the_log_limiter_lets_one_line_through_per_period() {
        let l = LogLimiter::new(Duration::from_secs(3600));
        assert!(l.allow());
        assert!(!l.allow());
        let l = LogLimiter::new(Duration::ZERO);
        assert!(l.allow());
        assert!(l.allow());
    }
}
