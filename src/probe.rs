//! `ferry probe URL`: a real request (or WebSocket handshake) against a
//! running ferry, reported step by step — DNS, TCP, TLS, HTTP, upgrade, echo —
//! with a plain diagnosis of the first step that failed.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const STEP_TIMEOUT: Duration = Duration::from_secs(5);

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

    fn diagnose(mut self, why: impl AsRef<str>) -> Report {
        let _ = writeln!(self.text, "\ndiagnosis: {}", why.as_ref());
        self.ok = false;
        self
    }
}

/// Probes `url`; `ca` is a PEM file of the CA to trust (e.g. certs-dev/ca.pem);
/// `origin` is sent as the `Origin` header.
pub async fn probe(url: &str, ca: Option<&Path>, origin: Option<&str>) -> Report {
    let mut r = Report::default();
    let uri: Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => return r.diagnose(format!("`{url}` is not a URL: {e}")),
    };
    let scheme = uri.scheme_str().unwrap_or("");
    let (tls, ws) = match scheme {
        "https" => (true, false),
        "http" => (false, false),
        "wss" => (true, true),
        "ws" => (false, true),
        _ => return r.diagnose("use an http://, https://, ws:// or wss:// URL"),
    };
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });

    // DNS.
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout(STEP_TIMEOUT, tokio::net::lookup_host((host.as_str(), port)))
            .await
        {
            Ok(Ok(a)) => a.collect(),
            Ok(Err(e)) => {
                r.step(false, "dns", format!("{host}: {e}"));
                return r.diagnose(format!(
                    "{host} does not resolve: check the name (and /etc/hosts for local names)"
                ));
            }
            Err(_) => {
                r.step(
                    false,
                    "dns",
                    format!("{host}: no answer in {STEP_TIMEOUT:?}"),
                );
                return r.diagnose("the resolver did not answer");
            }
        };
    r.step(
        true,
        "dns",
        format!(
            "{host} → {}",
            addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );

    // TCP.
    let mut stream = None;
    let mut last = String::new();
    for addr in &addrs {
        match tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                stream = Some((s, *addr));
                break;
            }
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => {
                last =
                    format!("{addr}: no answer in {STEP_TIMEOUT:?} (a firewall dropping packets?)")
            }
        }
    }
    let Some((stream, addr)) = stream else {
        r.step(false, "tcp", &last);
        let mut why = format!("nothing accepts connections on port {port}");
        if ws {
            why.push_str(": a browser reports this WebSocket as close code 1006");
        }
        if port != 443 && port != 80 {
            why.push_str(&format!(
                " (is {port} a backend's own port? clients must go through ferry, usually on 443)"
            ));
        }
        return r.diagnose(why);
    };
    r.step(true, "tcp", format!("connected to {addr}"));

    if !tls {
        return http_steps(r, TokioIo::new(stream), &uri, &host, ws, origin).await;
    }

    // TLS.
    let seen: Arc<Mutex<Vec<CertificateDer<'static>>>> = Arc::default();
    let config = match client_config(ca, seen.clone()) {
        Ok(c) => c,
        Err(e) => {
            r.step(false, "tls", &e);
            return r.diagnose(e);
        }
    };
    let name = match ServerName::try_from(host.clone()) {
        Ok(n) => n,
        Err(e) => return r.diagnose(format!("{host}: {e}")),
    };
    let tls_stream = match tokio::time::timeout(
        STEP_TIMEOUT,
        tokio_rustls::TlsConnector::from(config).connect(name, stream),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            r.step(false, "tls", e.to_string());
            let why = if ca.is_some() {
                format!(
                    "the TLS handshake failed: {e} (is the certificate signed by this CA and valid for {host}?)"
                )
            } else {
                format!("the TLS handshake failed: {e} (is this port serving TLS?)")
            };
            return r.diagnose(why);
        }
        Err(_) => {
            r.step(false, "tls", "no handshake in 5s");
            return r.diagnose("the server accepted TCP but did not complete a TLS handshake (is it serving TLS on this port?)");
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
    let leaf = seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .first()
        .cloned();
    if let Some(leaf) = leaf {
        if let Ok(info) = crate::tls::certs::inspect_leaf(&leaf) {
            let covered = info
                .names
                .iter()
                .any(|n| crate::tls::certs::name_covers(n, &host));
            let days = info.remaining().as_secs() / 86_400;
            r.step(
                covered,
                "cert",
                format!("names {}; expires in {days} days", info.names.join(", ")),
            );
            if !covered {
                return r.diagnose(format!(
                    "the certificate does not cover {host}: browsers refuse it"
                ));
            }
        }
    }
    r.step(
        true,
        "trust",
        if ca.is_some() {
            "verified against the given CA".to_owned()
        } else {
            "not verified (pass --ca FILE to verify)".to_owned()
        },
    );
    http_steps(r, TokioIo::new(tls_stream), &uri, &host, ws, origin).await
}

async fn http_steps<I>(
    mut r: Report,
    io: TokioIo<I>,
    uri: &Uri,
    host: &str,
    ws: bool,
    origin: Option<&str>,
) -> Report
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        match hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io).await {
            Ok(pair) => pair,
            Err(e) => return r.diagnose(format!("HTTP/1.1 set-up failed: {e}")),
        };
    tokio::spawn(conn.with_upgrades());
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let authority = uri.authority().map_or(host, |a| a.as_str());
    let mut req = Request::get(path).header("host", authority).header(
        "user-agent",
        concat!("ferry-probe/", env!("CARGO_PKG_VERSION")),
    );
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let key = crate::proxy::websocket::new_key();
    if ws {
        req = req
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", &key);
    }
    let req = match req.body(Empty::new()) {
        Ok(r) => r,
        Err(e) => return r.diagnose(e.to_string()),
    };
    let res = match tokio::time::timeout(STEP_TIMEOUT * 2, sender.send_request(req)).await {
        Ok(Ok(res)) => res,
        Ok(Err(e)) => {
            r.step(false, "http", e.to_string());
            return r.diagnose("the server closed the connection without an HTTP answer");
        }
        Err(_) => {
            r.step(false, "http", "no answer in 10s");
            return r.diagnose("no HTTP answer");
        }
    };
    let status = res.status();
    let via_ferry = res
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "text/plain; charset=utf-8" || v == "application/json")
        && res
            .headers()
            .get("cache-control")
            .is_some_and(|v| v == "no-store");
    if !ws {
        let ok = !status.is_server_error() && !status.is_client_error();
        r.step(ok, "http", format!("{status}"));
        if ok {
            r.ok = true;
            return r;
        }
        let body = res
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&body).trim().to_owned();
        return r.diagnose(explain_status(status, &body, via_ferry));
    }
    if status != StatusCode::SWITCHING_PROTOCOLS {
        r.step(false, "upgrade", format!("{status} instead of 101"));
        let body = res
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&body).trim().to_owned();
        return r.diagnose(format!(
            "{}; the browser reports the WebSocket as failed (1006)",
            explain_status(status, &body, via_ferry)
        ));
    }
    let accept_ok = res.headers().get("sec-websocket-accept").is_some_and(|v| {
        v.as_bytes() == crate::proxy::websocket::accept_key(key.as_bytes()).as_bytes()
    });
    r.step(accept_ok, "upgrade", "101 Switching Protocols");
    if !accept_ok {
        return r
            .diagnose("the 101 has a wrong Sec-WebSocket-Accept: browsers reject the connection");
    }
    let upgraded = match hyper::upgrade::on(res).await {
        Ok(u) => u,
        Err(e) => return r.diagnose(format!("the upgrade did not complete: {e}")),
    };
    let mut io = TokioIo::new(upgraded);
    // One masked text frame, then the first frame back.
    let payload = b"ferry probe";
    let mask = [0x13u8, 0x57, 0x9b, 0xdf];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    if io.write_all(&frame).await.is_err() {
        return r.diagnose("the connection closed right after the upgrade");
    }
    let mut head = [0u8; 2];
    match tokio::time::timeout(STEP_TIMEOUT, io.read_exact(&mut head)).await {
        Ok(Ok(_)) => {
            let opcode = head[0] & 0x0f;
            let len = usize::from(head[1] & 0x7f).min(125);
            let mut body = vec![0u8; len];
            let _ = tokio::time::timeout(STEP_TIMEOUT, io.read_exact(&mut body)).await;
            match opcode {
                0x1 | 0x2 => {
                    r.step(
                        true,
                        "echo",
                        format!("reply: {:?}", String::from_utf8_lossy(&body)),
                    );
                    r.ok = true;
                    r
                }
                0x8 => {
                    let code = if body.len() >= 2 {
                        u16::from_be_bytes([body[0], body[1]])
                    } else {
                        1005
                    };
                    let reason =
                        String::from_utf8_lossy(body.get(2..).unwrap_or_default()).into_owned();
                    r.step(false, "echo", format!("Close {code} {reason:?}"));
                    r.diagnose(format!("the server closed the session with {code} ({reason}) right after the first message"))
                }
                op => {
                    r.step(true, "echo", format!("a frame with opcode {op}"));
                    r.ok = true;
                    r
                }
            }
        }
        Ok(Err(_)) => {
            r.step(false, "echo", "connection closed");
            r.diagnose(
                "the server closed without a WebSocket close frame: browsers report this as 1006",
            )
        }
        Err(_) => {
            r.step(
                true,
                "echo",
                "no reply in 5s (fine if the server does not echo)",
            );
            r.ok = true;
            r
        }
    }
}

fn explain_status(status: StatusCode, body: &str, via_ferry: bool) -> String {
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

/// A client config trusting `ca` (or recording the chain without verifying it).
fn client_config(
    ca: Option<&Path>,
    seen: Arc<Mutex<Vec<CertificateDer<'static>>>>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let builder = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let roots = ca
        .map(|path| -> Result<rustls::RootCertStore, String> {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            {
                roots
                    .add(cert.map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            }
            Ok(roots)
        })
        .transpose()?;
    let inner = match roots {
        Some(roots) => Some(
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                crate::tls::provider(),
            )
            .build()
            .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recorder { inner, seen }))
        .with_no_client_auth();
    // The probe speaks HTTP/1.1 (WebSocket handshakes included).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Keeps the presented chain; verifies it when a CA was given.
#[derive(Debug)]
struct Recorder {
    inner: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    seen: Arc<Mutex<Vec<CertificateDer<'static>>>>,
}

impl rustls::client::danger::ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(end_entity.clone().into_owned());
        match &self.inner {
            Some(v) => v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now),
            None => Ok(rustls::client::danger::ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &crate::tls::provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &crate::tls::provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        crate::tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
