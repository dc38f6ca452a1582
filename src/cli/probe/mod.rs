//! `ferry probe URL`: a real request (or WebSocket handshake) against a
//! running ferry, reported step by step — DNS, TCP, TLS, HTTP, upgrade, echo —
//! with a plain diagnosis of the first step that failed.

mod tls;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{CliError, out, small_runtime};
use crate::proxy::websocket::{accept_key, new_key};

/// The longest wait for any one step.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// Probes `url` and prints each step; fails (exit 1) when one did.
pub(super) fn run(
    url: &str,
    ca: Option<&Path>,
    origin: Option<&str>,
) -> Result<ExitCode, CliError> {
    let report = small_runtime()?.block_on(probe(url, ca, origin));
    out(&report.text);
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What the probe found: a line per step and whether all passed.
#[derive(Debug, Default)]
pub struct Report {
    pub text: String,
    pub ok: bool,
}

impl Report {
    fn step(&mut self, ok: bool, name: &str, detail: impl AsRef<str>) {
        let _ = writeln!(
            self.text,
            "{} {name:<9} {}",
            if ok { "ok  " } else { "FAIL" },
            detail.as_ref()
        );
    }

    /// Ends the report with why the first failed step failed.
    fn diagnose(&mut self, why: impl AsRef<str>) {
        let _ = writeln!(self.text, "\ndiagnosis: {}", why.as_ref());
        self.ok = false;
    }

    fn passed(mut self) -> Report {
        self.ok = true;
        self
    }
}

/// What the URL names.
struct Target {
    uri: Uri,
    host: String,
    port: u16,
    tls: bool,
    ws: bool,
}

/// Probes `url`; `ca` is a PEM file of the CA to trust (e.g. certs-dev/ca.pem);
/// `origin` is sent as the `Origin` header.
pub async fn probe(url: &str, ca: Option<&Path>, origin: Option<&str>) -> Report {
    let mut r = Report::default();
    let Some(target) = target(&mut r, url) else {
        return r;
    };
    let Some(addrs) = dns(&mut r, &target).await else {
        return r;
    };
    let Some(stream) = tcp(&mut r, &target, &addrs).await else {
        return r;
    };
    if !target.tls {
        return http(r, TokioIo::new(stream), &target, origin).await;
    }
    match tls_handshake(&mut r, stream, &target, ca).await {
        Some(tls) => http(r, TokioIo::new(tls), &target, origin).await,
        None => r,
    }
}

fn target(r: &mut Report, url: &str) -> Option<Target> {
    let uri: Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            r.diagnose(format!("`{url}` is not a URL: {e}"));
            return None;
        }
    };
    let (tls, ws) = match uri.scheme_str().unwrap_or("") {
        "https" => (true, false),
        "http" => (false, false),
        "wss" => (true, true),
        "ws" => (false, true),
        _ => {
            r.diagnose("use an http://, https://, ws:// or wss:// URL");
            return None;
        }
    };
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    Some(Target {
        host: host.to_owned(),
        port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
        uri,
        tls,
        ws,
    })
}

async fn dns(r: &mut Report, t: &Target) -> Option<Vec<SocketAddr>> {
    let host = &t.host;
    let lookup = tokio::net::lookup_host((host.as_str(), t.port));
    match tokio::time::timeout(STEP_TIMEOUT, lookup).await {
        Ok(Ok(a)) => {
            let addrs: Vec<SocketAddr> = a.collect();
            let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            r.step(true, "dns", format!("{host} → {}", list.join(", ")));
            Some(addrs)
        }
        Ok(Err(e)) => {
            r.step(false, "dns", format!("{host}: {e}"));
            r.diagnose(format!(
                "{host} does not resolve: check the name (and /etc/hosts for local names)"
            ));
            None
        }
        Err(_) => {
            r.step(
                false,
                "dns",
                format!("{host}: no answer in {STEP_TIMEOUT:?}"),
            );
            r.diagnose("the resolver did not answer");
            None
        }
    }
}

async fn tcp(r: &mut Report, t: &Target, addrs: &[SocketAddr]) -> Option<TcpStream> {
    let mut last = String::new();
    for addr in addrs {
        match tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                r.step(true, "tcp", format!("connected to {addr}"));
                return Some(s);
            }
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => {
                last =
                    format!("{addr}: no answer in {STEP_TIMEOUT:?} (a firewall dropping packets?)")
            }
        }
    }
    r.step(false, "tcp", &last);
    let port = t.port;
    let mut why = format!("nothing accepts connections on port {port}");
    if t.ws {
        why.push_str(": a browser reports this WebSocket as close code 1006");
    }
    if port != 443 && port != 80 {
        why.push_str(&format!(
            " (is {port} a backend's own port? clients must go through ferry, usually on 443)"
        ));
    }
    r.diagnose(why);
    None
}

/// The TLS handshake, then what the certificate says and whether it was verified.
async fn tls_handshake(
    r: &mut Report,
    stream: TcpStream,
    t: &Target,
    ca: Option<&Path>,
) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
    let seen = tls::Seen::default();
    let config = match tls::client_config(ca, seen.clone()) {
        Ok(c) => c,
        Err(e) => {
            r.step(false, "tls", e.to_string());
            r.diagnose(e.to_string());
            return None;
        }
    };
    let host = &t.host;
    let name = match ServerName::try_from(host.clone()) {
        Ok(n) => n,
        Err(e) => {
            r.diagnose(format!("{host}: {e}"));
            return None;
        }
    };
    let connect = tokio_rustls::TlsConnector::from(config).connect(name, stream);
    let tls_stream = match tokio::time::timeout(STEP_TIMEOUT, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            r.step(false, "tls", e.to_string());
            r.diagnose(if ca.is_some() {
                format!(
                    "the TLS handshake failed: {e} (is the certificate signed by this CA and valid for {host}?)"
                )
            } else {
                format!("the TLS handshake failed: {e} (is this port serving TLS?)")
            });
            return None;
        }
        Err(_) => {
            r.step(false, "tls", "no handshake in 5s");
            r.diagnose("the server accepted TCP but did not complete a TLS handshake (is it serving TLS on this port?)");
            return None;
        }
    };
    let conn = tls_stream.get_ref().1;
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2",
        _ => "TLS",
    };
    let alpn = conn
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_else(|| "none".into());
    r.step(true, "tls", format!("{version}, ALPN {alpn}"));
    if !certificate(r, &seen, host) {
        return None;
    }
    r.step(
        true,
        "trust",
        if ca.is_some() {
            "verified against the given CA"
        } else {
            "not verified (pass --ca FILE to verify)"
        },
    );
    Some(tls_stream)
}

/// What the presented certificate says; false when it does not cover `host`.
fn certificate(r: &mut Report, seen: &tls::Seen, host: &str) -> bool {
    let leaf = seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .first()
        .cloned();
    let Some(info) = leaf.and_then(|l| crate::tls::certs::inspect_leaf(&l).ok()) else {
        return true;
    };
    let covered = info
        .names
        .iter()
        .any(|n| crate::tls::certs::name_covers(n, host));
    let days = info.remaining().as_secs() / 86_400;
    let names = info.names.join(", ");
    r.step(
        covered,
        "cert",
        format!("names {names}; expires in {days} days"),
    );
    if !covered {
        r.diagnose(format!(
            "the certificate does not cover {host}: browsers refuse it"
        ));
    }
    covered
}

/// The HTTP request (or WebSocket handshake), and for a WebSocket the first echo.
async fn http<I>(mut r: Report, io: TokioIo<I>, t: &Target, origin: Option<&str>) -> Report
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        match hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io).await {
            Ok(pair) => pair,
            Err(e) => {
                r.diagnose(format!("HTTP/1.1 set-up failed: {e}"));
                return r;
            }
        };
    tokio::spawn(conn.with_upgrades());
    let key = new_key();
    let req = match request(t, origin, &key) {
        Ok(req) => req,
        Err(e) => {
            r.diagnose(e.to_string());
            return r;
        }
    };
    let res = match tokio::time::timeout(STEP_TIMEOUT * 2, sender.send_request(req)).await {
        Ok(Ok(res)) => res,
        Ok(Err(e)) => {
            r.step(false, "http", e.to_string());
            r.diagnose("the server closed the connection without an HTTP answer");
            return r;
        }
        Err(_) => {
            r.step(false, "http", "no answer in 10s");
            r.diagnose("no HTTP answer");
            return r;
        }
    };
    let status = res.status();
    if !t.ws {
        let ok = !status.is_server_error() && !status.is_client_error();
        r.step(ok, "http", format!("{status}"));
        if ok {
            return r.passed();
        }
        let why = explain_status(res).await;
        r.diagnose(why);
        return r;
    }
    if status != StatusCode::SWITCHING_PROTOCOLS {
        r.step(false, "upgrade", format!("{status} instead of 101"));
        let why = explain_status(res).await;
        r.diagnose(format!(
            "{why}; the browser reports the WebSocket as failed (1006)"
        ));
        return r;
    }
    let accept_ok = res
        .headers()
        .get("sec-websocket-accept")
        .is_some_and(|v| v.as_bytes() == accept_key(key.as_bytes()).as_bytes());
    r.step(accept_ok, "upgrade", "101 Switching Protocols");
    if !accept_ok {
        r.diagnose("the 101 has a wrong Sec-WebSocket-Accept: browsers reject the connection");
        return r;
    }
    match hyper::upgrade::on(res).await {
        Ok(upgraded) => echo(r, TokioIo::new(upgraded)).await,
        Err(e) => {
            r.diagnose(format!("the upgrade did not complete: {e}"));
            r
        }
    }
}

/// A GET for the target, as a browser on `origin` sends it; a WebSocket
/// handshake with `key` for a ws:// or wss:// target.
fn request(t: &Target, origin: Option<&str>, key: &str) -> http::Result<Request<Empty<Bytes>>> {
    let path = t.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let authority = t.uri.authority().map_or(t.host.as_str(), |a| a.as_str());
    let mut req = Request::get(path).header("host", authority).header(
        "user-agent",
        concat!("ferry-probe/", env!("CARGO_PKG_VERSION")),
    );
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    if t.ws {
        req = req
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", key);
    }
    req.body(Empty::new())
}

/// One masked text frame, then the first frame back.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut r: Report, mut io: S) -> Report {
    let payload = b"ferry probe";
    let mask = [0x13u8, 0x57, 0x9b, 0xdf];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    if io.write_all(&frame).await.is_err() {
        r.diagnose("the connection closed right after the upgrade");
        return r;
    }
    let mut head = [0u8; 2];
    match tokio::time::timeout(STEP_TIMEOUT, io.read_exact(&mut head)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => {
            r.step(false, "echo", "connection closed");
            r.diagnose(
                "the server closed without a WebSocket close frame: browsers report this as 1006",
            );
            return r;
        }
        Err(_) => {
            let no_reply = "no reply in 5s (fine if the server does not echo)";
            r.step(true, "echo", no_reply);
            return r.passed();
        }
    }
    let opcode = head[0] & 0x0f;
    let len = usize::from(head[1] & 0x7f).min(125);
    let mut body = vec![0u8; len];
    let _ = tokio::time::timeout(STEP_TIMEOUT, io.read_exact(&mut body)).await;
    match opcode {
        0x1 | 0x2 => {
            let reply = String::from_utf8_lossy(&body);
            r.step(true, "echo", format!("reply: {reply:?}"));
            r.passed()
        }
        0x8 => {
            let code = match body.get(..2) {
                Some(c) => u16::from_be_bytes([c[0], c[1]]),
                None => 1005,
            };
            let reason = String::from_utf8_lossy(body.get(2..).unwrap_or_default()).into_owned();
            r.step(false, "echo", format!("Close {code} {reason:?}"));
            r.diagnose(format!(
                "the server closed the session with {code} ({reason}) right after the first message"
            ));
            r
        }
        op => {
            r.step(true, "echo", format!("a frame with opcode {op}"));
            r.passed()
        }
    }
}

/// Who answered an error status (ferry itself, or whatever is behind it) and what it means.
async fn explain_status(res: Response<Incoming>) -> String {
    let status = res.status();
    // ferry's own error answers: short text or JSON, never cached.
    let via_ferry = res
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "text/plain; charset=utf-8" || v == "application/json")
        && res
            .headers()
            .get("cache-control")
            .is_some_and(|v| v == "no-store");
    let body = res
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body);
    let who = if via_ferry { "ferry" } else { "the server" };
    // A short, one-line excerpt: error pages can be whole HTML documents.
    let excerpt: String = body
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(120)
        .collect();
    let detail = if excerpt.is_empty() {
        String::new()
    } else {
        format!(" ({excerpt})")
    };
    match status.as_u16() {
        404 if via_ferry => {
            format!("ferry has no route for this host and path{detail}: try `ferry route URL`")
        }
        403 if via_ferry => format!(
            "ferry refused it{detail}: for a WebSocket, check the route's allowed_origins and the Origin sent (--origin)"
        ),
        502 => {
            format!("{who} answered 502{detail}: its upstream is down or refused the connection")
        }
        504 => format!(
            "{who} answered 504{detail}: its upstream is too slow (read_timeout) or unreachable"
        ),
        _ => format!("{who} answered {status}{detail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_url_is_diagnosed_before_any_network_step() {
        let r = probe("ftp://example.com/", None, None).await;
        assert!(!r.ok);
        assert!(
            r.text
                .contains("use an http://, https://, ws:// or wss:// URL")
        );
        let r = probe("not a url", None, None).await;
        assert!(r.text.contains("is not a URL"), "{}", r.text);
    }
}
