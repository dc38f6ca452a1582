//! `ferry probe URL`: a real request (or WebSocket handshake) against a
//! running ferry, reported step by step — DNS, TCP, TLS, HTTP, upgrade, echo —
//! with a plain diagnosis of the first step that failed. DNS, TCP and TLS
//! are here; the HTTP exchange is in [`exchange`].

mod exchange;
mod tls;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::{CliError, out, small_runtime};

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
        return exchange::steps(r, TokioIo::new(stream), &target, origin).await;
    }
    match tls_handshake(&mut r, stream, &target, ca).await {
        Some(tls) => exchange::steps(r, TokioIo::new(tls), &target, origin).await,
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
