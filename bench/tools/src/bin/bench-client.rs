//! Load clients for what wrk and h2load don't do. Each subcommand prints one
//! JSON object on stdout and exits 0 when it could measure, even if the proxy
//! refused (the `error` field then says why, e.g. `"failed: 502"`), so the
//! harness can record "n/a" and go on.
//!
//! - `probe`    wait until `GET URL` answers 200 (or time out); optionally print the body
//! - `conn`     one new TLS connection per request, full or resumed handshakes
//! - `ws-echo`  WebSocket echo over HTTP/1.1, or over HTTP/2 (RFC 8441) with `--h2`:
//!   N WebSockets, one message in flight each
//! - `ws-idle`  open N idle WebSockets and report the proxy's RSS per session
//! - `startup`  start a proxy command and time it to the first served request; idle RSS
//!
//! TLS is rustls with aws-lc-rs, TLS 1.3 only, X25519 by default (what
//! OpenSSL-based wrk/h2load negotiate, so every proxy does the same key
//! exchange). With `--pin` the server's leaf certificate is compared byte for
//! byte instead of being path-validated, which keeps the client cheap (the
//! handshake signature is still verified); without it `--ca` is used.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args as ClapArgs, Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, RootCertStore, SignatureScheme};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::{Message, WebSocketConfig};

#[derive(Parser)]
#[command(about = "ferry benchmark load clients (JSON on stdout)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Wait until GET URL answers 200.
    Probe {
        #[command(flatten)]
        t: Target,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// Print the response body to stderr.
        #[arg(long)]
        print: bool,
    },
    /// One new TLS connection per request (`Connection: close`).
    Conn {
        #[command(flatten)]
        t: Target,
        /// Connections in flight.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Resume sessions (TLS 1.3 tickets) instead of full handshakes.
        #[arg(long)]
        resume: bool,
    },
    /// WebSocket echo: one message in flight per WebSocket.
    WsEcho {
        #[command(flatten)]
        t: Target,
        /// WebSockets (each on its own TCP connection over HTTP/1.1).
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Message size in bytes.
        #[arg(long, default_value_t = 128)]
        size: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Open the WebSockets over HTTP/2 with extended CONNECT (RFC 8441).
        #[arg(long)]
        h2: bool,
        /// With --h2: WebSockets multiplexed on each HTTP/2 connection.
        #[arg(long, default_value_t = 16)]
        per_connection: usize,
    },
    /// Open N idle WebSockets; RSS of --pids before and after.
    WsIdle {
        #[command(flatten)]
        t: Target,
        #[arg(long, default_value_t = 10000)]
        count: usize,
        /// Handshakes in flight while opening.
        #[arg(long, default_value_t = 128)]
        concurrency: usize,
        /// Comma-separated PIDs whose VmRSS is summed.
        #[arg(long, value_delimiter = ',')]
        pids: Vec<u32>,
        /// Seconds to wait after the last socket opened before reading RSS.
        #[arg(long, default_value_t = 2.0)]
        settle: f64,
        /// Give up opening after this many seconds.
        #[arg(long, default_value_t = 120.0)]
        timeout: f64,
    },
    /// Start COMMAND, time it to the first 200 on URL, read its idle RSS, stop it.
    Startup {
        #[command(flatten)]
        t: Target,
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// Milliseconds to wait after the first response before reading RSS.
        #[arg(long, default_value_t = 1000)]
        settle_ms: u64,
        /// The proxy command line (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(ClapArgs, Clone)]
struct Target {
    /// https:// or wss:// URL; the host must be an IP literal or resolve locally.
    #[arg(long)]
    url: String,
    /// CA certificate (PEM) to validate the server with.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Server leaf certificate (PEM) to pin instead of path validation.
    #[arg(long)]
    pin: Option<PathBuf>,
    /// TLS server name (SNI) to send; default: the URL's host if it is a name.
    #[arg(long)]
    sni: Option<String>,
    /// Key exchange groups, in order: x25519, secp256r1, x25519mlkem768.
    #[arg(long, default_value = "x25519", value_delimiter = ',')]
    groups: Vec<String>,
}

struct Url {
    addr: SocketAddr,
    host_header: String,
    host: String,
    path: String,
}

fn parse_url(url: &str) -> Result<Url, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("wss://"))
        .ok_or("URL must start with https:// or wss://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port =
        if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            authority.to_string()
        } else {
            format!("{authority}:443")
        };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or("no address")?;
    let host = authority.rsplit_once(':').map(|(h, _)| h).unwrap_or(authority);
    Ok(Url {
        addr,
        host_header: authority.to_string(),
        host: host.trim_matches(['[', ']']).to_string(),
        path: path.to_string(),
    })
}

/// Accepts exactly one leaf certificate; still checks the handshake signature.
#[derive(Debug)]
struct Pinned {
    leaf: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.leaf.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("server certificate is not the pinned one".into()))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The in-memory session cache, counting how often a ticket was there to offer.
/// One per connection loop in `conn --resume`: rustls keeps at most 8 TLS 1.3
/// tickets per server name, so one store shared by 32 loops runs dry in
/// bursts and measures the client, not the server.
#[derive(Debug)]
struct CountingStore {
    inner: rustls::client::ClientSessionMemoryCache,
}

static TICKETS_OFFERED: AtomicU64 = AtomicU64::new(0);
static NO_TICKET: AtomicU64 = AtomicU64::new(0);

impl rustls::client::ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, n: ServerName<'static>, g: rustls::NamedGroup) {
        self.inner.set_kx_hint(n, g)
    }
    fn kx_hint(&self, n: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(n)
    }
    fn set_tls12_session(&self, n: ServerName<'static>, v: rustls::client::Tls12ClientSessionValue) {
        self.inner.set_tls12_session(n, v)
    }
    fn tls12_session(&self, n: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(n)
    }
    fn remove_tls12_session(&self, n: &ServerName<'static>) {
        self.inner.remove_tls12_session(n)
    }
    fn insert_tls13_ticket(&self, n: ServerName<'static>, v: rustls::client::Tls13ClientSessionValue) {
        self.inner.insert_tls13_ticket(n, v)
    }
    fn take_tls13_ticket(&self, n: &ServerName<'static>) -> Option<rustls::client::Tls13ClientSessionValue> {
        let t = self.inner.take_tls13_ticket(n);
        if t.is_some() { &TICKETS_OFFERED } else { &NO_TICKET }.fetch_add(1, Ordering::Relaxed);
        t
    }
}

fn tls_config(t: &Target, resume: bool) -> Result<Arc<ClientConfig>, String> {
    tls_config_alpn(t, resume, b"http/1.1")
}

fn tls_config_alpn(t: &Target, resume: bool, alpn: &[u8]) -> Result<Arc<ClientConfig>, String> {
    let mut provider = aws_lc_rs::default_provider();
    let mut groups = Vec::new();
    for g in &t.groups {
        let g = match g.to_ascii_lowercase().as_str() {
            "x25519" => aws_lc_rs::kx_group::X25519,
            "secp256r1" | "p-256" | "p256" => aws_lc_rs::kx_group::SECP256R1,
            "x25519mlkem768" => aws_lc_rs::kx_group::X25519MLKEM768,
            other => return Err(format!("unknown group {other}")),
        };
        groups.push(g);
    }
    provider.kx_groups = groups;
    let provider = Arc::new(provider);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?;
    let mut cfg = if let Some(pin) = &t.pin {
        let leaf = CertificateDer::pem_file_iter(pin)
            .map_err(|e| format!("{}: {e}", pin.display()))?
            .next()
            .ok_or("no certificate in --pin file")?
            .map_err(|e| e.to_string())?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned { leaf, provider: provider.clone() }))
            .with_no_client_auth()
    } else if let Some(ca) = &t.ca {
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
            roots.add(c.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
        builder.with_webpki_verifier(verifier).with_no_client_auth()
    } else {
        return Err("give --ca or --pin".into());
    };
    cfg.alpn_protocols = vec![alpn.to_vec()];
    cfg.resumption = if resume {
        Resumption::store(Arc::new(CountingStore {
            inner: rustls::client::ClientSessionMemoryCache::new(16),
        }))
    } else {
        Resumption::disabled()
    };
    Ok(Arc::new(cfg))
}

fn server_name(t: &Target, url: &Url) -> Result<ServerName<'static>, String> {
    let name = t.sni.clone().unwrap_or_else(|| url.host.clone());
    ServerName::try_from(name).map_err(|e| e.to_string())
}

async fn tls_connect(
    connector: &TlsConnector,
    addr: SocketAddr,
    name: &ServerName<'static>,
) -> Result<TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    connector.connect(name.clone(), tcp).await.map_err(|e| format!("tls: {e}"))
}

/// One request on a fresh connection. Returns (status, body, handshake kind).
async fn one_request(
    connector: &TlsConnector,
    url: &Url,
    name: &ServerName<'static>,
) -> Result<(u16, Vec<u8>, Option<HandshakeKind>), String> {
    one_request_t(connector, url, name).await.map(|(s, b, k, _)| (s, b, k))
}

/// As `one_request`, plus the number of TLS 1.3 session tickets received.
async fn one_request_t(
    connector: &TlsConnector,
    url: &Url,
    name: &ServerName<'static>,
) -> Result<(u16, Vec<u8>, Option<HandshakeKind>, u32), String> {
    let mut s = tls_connect(connector, url.addr, name).await?;
    let kind = s.get_ref().1.handshake_kind();
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ferry-bench\r\nConnection: close\r\n\r\n",
        url.path, url.host_header
    );
    s.write_all(req.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(4096);
    match s.read_to_end(&mut buf).await {
        Ok(_) => {}
        // Peers that close without close_notify: fine once we have a response.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => {}
        Err(e) => return Err(format!("read: {e}")),
    }
    let tickets = s.get_ref().1.tls13_tickets_received();
    let status = buf
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 "))
        .and_then(|r| std::str::from_utf8(r.get(..3)?).ok()?.parse::<u16>().ok())
        .ok_or_else(|| "no HTTP status line in response".to_string())?;
    let body = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| buf[i + 4..].to_vec())
        .unwrap_or_default();
    Ok((status, body, kind, tickets))
}

fn ws_config() -> WebSocketConfig {
    let mut c = WebSocketConfig::default();
    c.read_buffer_size = 4096;
    c.write_buffer_size = 0;
    c
}

async fn ws_connect(
    connector: &TlsConnector,
    url: &Url,
    name: &ServerName<'static>,
) -> Result<WebSocketStream<TlsStream<TcpStream>>, String> {
    let tls = tls_connect(connector, url.addr, name).await?;
    let req = format!("wss://{}{}", url.host_header, url.path)
        .into_client_request()
        .map_err(|e| e.to_string())?;
    match tokio_tungstenite::client_async_with_config(req, tls, Some(ws_config())).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            Err(format!("failed: {}", resp.status().as_u16()))
        }
        Err(e) => Err(format!("failed: {e}")),
    }
}

fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)])
}

fn vm_rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Proportional set size: shared pages split between the processes sharing
/// them, so a master + worker pair is not counted twice.
fn pss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn rss_sum(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|p| vm_rss_kb(*p)).sum()
}

/// `pid` and every process below it.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut all: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
            // the field after the parenthesised command name: state, ppid
            let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else { continue };
            let ppid = after.split(' ').nth(1).and_then(|s| s.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                all.push((p, ppid));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(all.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    out
}

async fn probe(t: Target, timeout: f64, print: bool) -> Value {
    let url = match parse_url(&t.url) {
        Ok(u) => u,
        Err(e) => return json!({"ok": false, "error": e}),
    };
    let (connector, name) = match tls_config(&t, false).and_then(|c| Ok((c, server_name(&t, &url)?))) {
        Ok((c, n)) => (TlsConnector::from(c), n),
        Err(e) => return json!({"ok": false, "error": e}),
    };
    let start = Instant::now();
    let mut last = String::new();
    let mut attempts = 0u32;
    while start.elapsed().as_secs_f64() < timeout {
        attempts += 1;
        match one_request(&connector, &url, &name).await {
            Ok((200, body, _)) => {
                if print {
                    eprintln!("{}", String::from_utf8_lossy(&body));
                }
                return json!({"ok": true, "ms": start.elapsed().as_secs_f64() * 1e3, "attempts": attempts});
            }
            Ok((s, _, _)) => last = format!("status {s}"),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    json!({"ok": false, "error": format!("not ready after {timeout}s: {last}"), "attempts": attempts})
}

async fn conn(t: Target, concurrency: usize, duration: f64, resume: bool) -> Value {
    let url = match parse_url(&t.url) {
        Ok(u) => Arc::new(u),
        Err(e) => return json!({"ok": false, "error": e}),
    };
    let (connector, name) = match tls_config(&t, resume).and_then(|c| Ok((c, server_name(&t, &url)?))) {
        Ok((c, n)) => (TlsConnector::from(c), n),
        Err(e) => return json!({"ok": false, "error": e}),
    };
    let ok = Arc::new(AtomicU64::new(0));
    let non2xx = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let full = Arc::new(AtomicU64::new(0));
    let resumed = Arc::new(AtomicU64::new(0));
    let tickets = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    // Resumed mode: each loop has its own session store, primed with one
    // unmeasured request, so every measured connection resumes the loop's
    // previous session, as a reconnecting client does.
    let mut connectors = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        connectors.push(if resume {
            let c = TlsConnector::from(tls_config(&t, true).expect("config built once already"));
            let _ = one_request(&c, &url, &name).await;
            c
        } else {
            connector.clone()
        });
    }
    TICKETS_OFFERED.store(0, Ordering::Relaxed);
    NO_TICKET.store(0, Ordering::Relaxed);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(duration);
    let mut tasks = Vec::new();
    for connector in connectors {
        let (url, name) = (url.clone(), name.clone());
        let tickets = tickets.clone();
        let (ok, non2xx, errors, full, resumed, first_error) = (
            ok.clone(),
            non2xx.clone(),
            errors.clone(),
            full.clone(),
            resumed.clone(),
            first_error.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let r = tokio::time::timeout(Duration::from_secs(10), one_request_t(&connector, &url, &name))
                    .await
                    .unwrap_or_else(|_| Err("timeout".into()));
                if Instant::now() > end {
                    break;
                }
                match r {
                    Ok((status, _, kind, t)) => {
                        tickets.fetch_add(t as u64, Ordering::Relaxed);
                        if (200..300).contains(&status) {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            non2xx.fetch_add(1, Ordering::Relaxed);
                            first_error.lock().unwrap().get_or_insert(format!("status {status}"));
                        }
                        match kind {
                            Some(HandshakeKind::Resumed) => resumed.fetch_add(1, Ordering::Relaxed),
                            _ => full.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.lock().unwrap().get_or_insert(e);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64().min(duration).max(1e-9);
    let okn = ok.load(Ordering::Relaxed);
    let fe = first_error.lock().unwrap().clone();
    json!({
        "ok": okn > 0,
        "conns": okn,
        "secs": secs,
        "conn_per_s": okn as f64 / secs,
        "non2xx": non2xx.load(Ordering::Relaxed),
        "errors": errors.load(Ordering::Relaxed),
        "full_handshakes": full.load(Ordering::Relaxed),
        "resumed_handshakes": resumed.load(Ordering::Relaxed),
        "tickets_received": tickets.load(Ordering::Relaxed),
        "tickets_offered": TICKETS_OFFERED.load(Ordering::Relaxed),
        "no_ticket_to_offer": NO_TICKET.load(Ordering::Relaxed),
        "mode": if resume { "resumed" } else { "full" },
        "error": if okn > 0 { Value::Null } else { json!(fe.clone().unwrap_or_else(|| "no connection succeeded".into())) },
        "first_error": fe,
    })
}

async fn ws_echo(t: Target, connections: usize, size: usize, duration: f64) -> Value {
    let url = match parse_url(&t.url) {
        Ok(u) => u,
        Err(e) => return json!({"ok": false, "error": e}),
    };
    let (connector, name) = match tls_config(&t, false).and_then(|c| Ok((c, server_name(&t, &url)?))) {
        Ok((c, n)) => (TlsConnector::from(c), n),
        Err(e) => return json!({"ok": false, "error": e}),
    };
    let mut socks = Vec::new();
    let mut first_error = None;
    let mut failed = 0u64;
    let results = futures_util::future::join_all(
        (0..connections).map(|_| ws_connect(&connector, &url, &name)),
    )
    .await;
    for r in results {
        match r {
            Ok(ws) => socks.push(ws),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    if socks.is_empty() {
        return json!({"ok": false, "connected": 0, "failed": failed,
            "error": first_error.unwrap_or_else(|| "no connection".into())});
    }
    let payload = Bytes::from(vec![b'x'; size]);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(duration);
    let mut tasks = Vec::new();
    for mut ws in socks {
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let mut rtts: Vec<u32> = Vec::with_capacity(1 << 14);
            let mut err = None;
            while Instant::now() < end {
                let t0 = Instant::now();
                if let Err(e) = ws.send(Message::Binary(payload.clone())).await {
                    err = Some(format!("send: {e}"));
                    break;
                }
                match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                    Ok(Some(Ok(Message::Binary(b)))) if b.len() == payload.len() => {
                        rtts.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32)
                    }
                    Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                    Ok(Some(Ok(m))) => {
                        err = Some(format!("unexpected message {m:?}"));
                        break;
                    }
                    Ok(Some(Err(e))) => {
                        err = Some(format!("recv: {e}"));
                        break;
                    }
                    Ok(None) => {
                        err = Some("closed by peer".into());
                        break;
                    }
                    Err(_) => {
                        err = Some("no echo within 10s".into());
                        break;
                    }
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
            (rtts, err)
        }));
    }
    echo_report(tasks, connections, failed, first_error, duration).await
}

/// WebSocket echo over HTTP/2 (RFC 8441): `streams` WebSockets, multiplexed
/// `per_connection` to a TLS connection, one message in flight each.
async fn ws_echo_h2(t: Target, streams: usize, per_connection: usize, size: usize, duration: f64) -> Value {
    let url = match parse_url(&t.url) {
        Ok(u) => u,
        Err(e) => return json!({"ok": false, "error": e}),
    };
    let (connector, name) = match tls_config_alpn(&t, false, b"h2").and_then(|c| Ok((c, server_name(&t, &url)?))) {
        Ok((c, n)) => (TlsConnector::from(c), n),
        Err(e) => return json!({"ok": false, "error": e}),
    };
    let per_connection = per_connection.max(1);
    let conns = streams.div_ceil(per_connection);
    let mut socks = Vec::new();
    let mut first_error = None;
    let mut failed = 0u64;
    for c in 0..conns {
        let want = per_connection.min(streams - c * per_connection);
        match h2_websockets(&connector, &url, &name, want).await {
            Ok(ws) => socks.extend(ws),
            Err(e) => {
                failed += want as u64;
                first_error.get_or_insert(e);
            }
        }
    }
    if socks.is_empty() {
        return json!({"ok": false, "connected": 0, "failed": failed,
            "error": first_error.unwrap_or_else(|| "no connection".into())});
    }
    let message = client_frame(0x2, &vec![b'x'; size]);
    let end = Instant::now() + Duration::from_secs_f64(duration);
    let mut tasks = Vec::new();
    for (mut send, mut recv) in socks {
        let message = message.clone();
        tasks.push(tokio::spawn(async move {
            let mut rtts: Vec<u32> = Vec::with_capacity(1 << 14);
            let mut err = None;
            let mut buf = Vec::new();
            while Instant::now() < end {
                let t0 = Instant::now();
                if let Err(e) = send.send_data(message.clone(), false) {
                    err = Some(format!("send: {e}"));
                    break;
                }
                match tokio::time::timeout(Duration::from_secs(10), next_message(&mut recv, &mut buf)).await {
                    Ok(Ok((0x2, len))) if len == size => rtts.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32),
                    Ok(Ok((op, len))) => {
                        err = Some(format!("unexpected frame: opcode {op}, {len} bytes"));
                        break;
                    }
                    Ok(Err(e)) => {
                        err = Some(e);
                        break;
                    }
                    Err(_) => {
                        err = Some("no echo within 10s".into());
                        break;
                    }
                }
            }
            let _ = send.send_data(client_frame(0x8, &1000u16.to_be_bytes()), true);
            (rtts, err)
        }));
    }
    echo_report(tasks, streams, failed, first_error, duration).await
}

type H2WebSocket = (h2::SendStream<Bytes>, h2::RecvStream);

/// One TLS connection negotiating h2, and `n` WebSockets opened on it with
/// extended CONNECT; the connection is driven by a task of its own.
async fn h2_websockets(
    connector: &TlsConnector,
    url: &Url,
    name: &ServerName<'static>,
    n: usize,
) -> Result<Vec<H2WebSocket>, String> {
    let tls = tls_connect(connector, url.addr, name).await?;
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err("the server did not negotiate h2".into());
    }
    let (client, conn) = h2::client::handshake(tls).await.map_err(|e| format!("h2: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.map_err(|e| format!("h2: {e}"))?;
    // The server's SETTINGS (with ENABLE_CONNECT_PROTOCOL) arrive just after
    // the handshake; give them a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !client.is_extended_connect_protocol_enabled() {
        if Instant::now() > deadline {
            return Err("the server does not offer extended CONNECT (RFC 8441)".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut req = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(format!("https://{}{}", url.host_header, url.path))
            .header("sec-websocket-version", "13")
            .body(())
            .map_err(|e| e.to_string())?;
        req.extensions_mut().insert(h2::ext::Protocol::from_static("websocket"));
        client = client.ready().await.map_err(|e| format!("h2: {e}"))?;
        let (response, send) = client.send_request(req, false).map_err(|e| format!("h2: {e}"))?;
        let response = response.await.map_err(|e| format!("h2: {e}"))?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("failed: {}", response.status().as_u16()));
        }
        out.push((send, response.into_body()));
    }
    Ok(out)
}

/// A masked client frame (FIN set) with `payload`; the mask key is fixed,
/// which RFC 6455 allows a benchmark to do.
fn client_frame(opcode: u8, payload: &[u8]) -> Bytes {
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n @ 0..=125 => f.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&MASK);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    Bytes::from(f)
}

/// Reads until one whole (unmasked, unfragmented) server frame is in `buf`;
/// returns its opcode and payload length and removes it. Pings are skipped.
async fn next_message(recv: &mut h2::RecvStream, buf: &mut Vec<u8>) -> Result<(u8, usize), String> {
    loop {
        if buf.len() >= 2 {
            let (op, len7) = (buf[0] & 0x0f, (buf[1] & 0x7f) as usize);
            let (head, len) = match len7 {
                126 if buf.len() >= 4 => (4, u16::from_be_bytes([buf[2], buf[3]]) as usize),
                127 if buf.len() >= 10 => (10, u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize),
                126 | 127 => (usize::MAX, 0),
                n => (2, n),
            };
            if head != usize::MAX && buf.len() >= head + len {
                buf.drain(..head + len);
                if op == 0x9 || op == 0xa {
                    continue;
                }
                if op == 0x8 {
                    return Err("closed by peer".into());
                }
                return Ok((op, len));
            }
        }
        match recv.data().await {
            Some(Ok(data)) => {
                let _ = recv.flow_control().release_capacity(data.len());
                buf.extend_from_slice(&data);
            }
            Some(Err(e)) => return Err(format!("recv: {e}")),
            None => return Err("stream ended".into()),
        }
    }
}

/// Waits for the echo loops and reports their round trips as JSON.
async fn echo_report(
    tasks: Vec<tokio::task::JoinHandle<(Vec<u32>, Option<String>)>>,
    connections: usize,
    failed: u64,
    mut first_error: Option<String>,
    secs: f64,
) -> Value {
    let mut all = Vec::new();
    let mut conn_errors = 0u64;
    for t in tasks {
        if let Ok((rtts, err)) = t.await {
            all.extend(rtts);
            if let Some(e) = err {
                conn_errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    all.sort_unstable();
    let n = all.len() as f64;
    json!({
        "ok": !all.is_empty(),
        "connected": connections as u64 - failed,
        "failed": failed,
        "conn_errors": conn_errors,
        "msgs": all.len(),
        "secs": secs,
        "msgs_per_s": n / secs,
        "p50_us": percentile(&all, 0.50),
        "p99_us": percentile(&all, 0.99),
        "max_us": all.last(),
        "error": if all.is_empty() { json!(first_error.clone().unwrap_or_default()) } else { Value::Null },
        "first_error": first_error,
    })
}

async fn ws_idle(
    t: Target,
    count: usize,
    concurrency: usize,
    pids: Vec<u32>,
    settle: f64,
    timeout: f64,
) -> Value {
    let url = match parse_url(&t.url) {
        Ok(u) => Arc::new(u),
        Err(e) => return json!({"ok": false, "error": e}),
    };
    let (connector, name) = match tls_config(&t, false).and_then(|c| Ok((c, server_name(&t, &url)?))) {
        Ok((c, n)) => (TlsConnector::from(c), n),
        Err(e) => return json!({"ok": false, "error": e}),
    };
    let rss_before = rss_sum(&pids);
    let start = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let deadline = start + Duration::from_secs_f64(timeout);
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let (connector, url, name, sem) = (connector.clone(), url.clone(), name.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.ok()?;
            let left = deadline.saturating_duration_since(Instant::now());
            Some(
                tokio::time::timeout(left, ws_connect(&connector, &url, &name))
                    .await
                    .unwrap_or_else(|_| Err("timeout".into())),
            )
        }));
    }
    let mut socks = Vec::with_capacity(count);
    let mut failed = 0u64;
    let mut first_error = None;
    for t in tasks {
        match t.await.ok().flatten() {
            Some(Ok(ws)) => socks.push(ws),
            Some(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
            None => failed += 1,
        }
    }
    let open_secs = start.elapsed().as_secs_f64();
    if socks.is_empty() {
        return json!({"ok": false, "opened": 0, "failed": failed,
            "error": first_error.unwrap_or_else(|| "no connection".into())});
    }
    tokio::time::sleep(Duration::from_secs_f64(settle)).await;
    let rss_after = rss_sum(&pids);
    // Are they still alive? Echo on a sample of up to 100.
    let mut alive = 0u64;
    let step = (socks.len() / 100).max(1);
    let mut sampled = 0u64;
    for ws in socks.iter_mut().step_by(step) {
        sampled += 1;
        let ok = async {
            ws.send(Message::Binary(Bytes::from_static(b"ping"))).await.ok()?;
            loop {
                match ws.next().await? {
                    Ok(Message::Binary(b)) if &b[..] == b"ping" => return Some(()),
                    Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                    _ => return None,
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), ok).await.ok().flatten().is_some() {
            alive += 1;
        }
    }
    let opened = socks.len() as u64;
    let delta = rss_after.saturating_sub(rss_before);
    // Close them properly (close frame, wait for the echo of it), so that
    // the proxy logs normal closes, not 10,000 vanished clients.
    let close_start = Instant::now();
    let closed = futures_util::future::join_all(socks.iter_mut().map(|ws| async move {
        let done = async {
            ws.close(None).await.ok()?;
            while let Some(Ok(_)) = ws.next().await {}
            Some(())
        };
        tokio::time::timeout(Duration::from_secs(10), done).await.ok().flatten().is_some()
    }))
    .await
    .into_iter()
    .filter(|c| *c)
    .count();
    let close_secs = close_start.elapsed().as_secs_f64();
    drop(socks);
    json!({
        "ok": true,
        "opened": opened,
        "failed": failed,
        "open_secs": open_secs,
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_after,
        "kb_per_session": delta as f64 / opened as f64,
        "sampled": sampled,
        "alive": alive,
        "closed_cleanly": closed,
        "close_secs": close_secs,
        "error": Value::Null,
        "first_error": first_error,
    })
}

fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

async fn startup(t: Target, timeout: f64, settle_ms: u64, command: Vec<String>) -> Value {
    let url = match parse_url(&t.url) {
        Ok(u) => u,
        Err(e) => return json!({"ok": false, "error": e}),
    };
    let (connector, name) = match tls_config(&t, false).and_then(|c| Ok((c, server_name(&t, &url)?))) {
        Ok((c, n)) => (TlsConnector::from(c), n),
        Err(e) => return json!({"ok": false, "error": e}),
    };
    let start = Instant::now();
    let mut child = match tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return json!({"ok": false, "error": format!("spawn {}: {e}", command[0])}),
    };
    let pid = child.id().unwrap_or(0);
    let mut ready_ms = None;
    let mut listen_ms = None;
    let mut last = String::new();
    let mut attempts = 0u32;
    while start.elapsed().as_secs_f64() < timeout {
        if let Ok(Some(status)) = child.try_wait() {
            last = format!("proxy exited: {status}");
            break;
        }
        attempts += 1;
        let r = one_request(&connector, &url, &name).await;
        if listen_ms.is_none() && !matches!(&r, Err(e) if e.starts_with("connect:")) {
            listen_ms = Some(start.elapsed().as_secs_f64() * 1e3);
        }
        match r {
            Ok((200, _, _)) => {
                ready_ms = Some(start.elapsed().as_secs_f64() * 1e3);
                break;
            }
            Ok((s, _, _)) => last = format!("status {s}"),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let mut out = json!({"ok": ready_ms.is_some(), "ready_ms": ready_ms, "listen_ms": listen_ms, "attempts": attempts});
    if ready_ms.is_some() {
        tokio::time::sleep(Duration::from_millis(settle_ms)).await;
        let tree = process_tree(pid);
        out["pids"] = json!(tree);
        out["rss_kb"] = json!(rss_sum(&tree));
        out["pss_kb"] = json!(tree.iter().filter_map(|p| pss_kb(*p)).sum::<u64>());
        out["error"] = Value::Null;
    } else {
        out["error"] = json!(last);
    }
    signal(pid, "TERM");
    if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
        for p in process_tree(pid) {
            signal(p, "KILL");
        }
        let _ = child.wait().await;
    }
    out
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let out = rt.block_on(async move {
        match cli.cmd {
            Cmd::Probe { t, timeout, print } => probe(t, timeout, print).await,
            Cmd::Conn { t, concurrency, duration, resume } => conn(t, concurrency, duration, resume).await,
            Cmd::WsEcho { t, connections, size, duration, h2: false, .. } => {
                ws_echo(t, connections, size, duration).await
            }
            Cmd::WsEcho { t, connections, size, duration, h2: true, per_connection } => {
                ws_echo_h2(t, connections, per_connection, size, duration).await
            }
            Cmd::WsIdle { t, count, concurrency, pids, settle, timeout } => {
                ws_idle(t, count, concurrency, pids, settle, timeout).await
            }
            Cmd::Startup { t, timeout, settle_ms, command } => startup(t, timeout, settle_ms, command).await,
        }
    });
    println!("{out}");
    // Exit without dropping thousands of sockets one by one.
    std::process::exit(if out["ok"].as_bool() == Some(true) { 0 } else { 3 });
}
