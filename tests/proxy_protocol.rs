//! The PROXY protocol: ferry behind an L4 balancer (`[[listen]]
//! proxy_protocol = true`, headers written by the test or by a real HAProxy)
//! and in front of a PROXY-reading upstream (`send_proxy_protocol`).

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use http::Response;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 PROXY (TCP) header from `src` to `dst`, with `tlvs` after the addresses.
fn v2_header(src: &str, dst: &str, tlvs: &[u8]) -> Vec<u8> {
    let (src, dst): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    let mut block = Vec::new();
    let family = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            block.extend_from_slice(&s.octets());
            block.extend_from_slice(&d.octets());
            0x11
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            block.extend_from_slice(&s.octets());
            block.extend_from_slice(&d.octets());
            0x21
        }
        _ => panic!("one family"),
    };
    block.extend_from_slice(&src.port().to_be_bytes());
    block.extend_from_slice(&dst.port().to_be_bytes());
    block.extend_from_slice(tlvs);
    v2_raw(0x21, family, &block)
}

fn v2_raw(version_command: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(version_command);
    h.push(family);
    h.extend_from_slice(&(block.len() as u16).to_be_bytes());
    h.extend_from_slice(block);
    h
}

/// ferry with `proxy_protocol = true` on a TLS and a plain listener, an
/// echo backend, a JSON access log and the admin listener.
struct Setup {
    proxy: TestProxy,
    log: PathBuf,
    _backend: Backend,
    _dir: tempfile::TempDir,
}

async fn setup(server_keys: &str) -> Setup {
    let backend = Backend::echo("b").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let toml = ProxyToml::new()
        .server(server_keys)
        .server(&format!(
            "access_log = {{ format = \"json\", path = \"{}\" }}",
            log.display()
        ))
        .admin()
        .tls_listener_with("proxy_protocol = true")
        .plain_listener_with("proxy_protocol = true")
        .upstream("backend", &[backend.addr])
        .route("all", "/", "backend")
        .build();
    let proxy = TestProxy::start(&toml).await;
    Setup {
        proxy,
        log,
        _backend: backend,
        _dir: dir,
    }
}

impl Setup {
    fn plain(&self) -> SocketAddr {
        self.proxy.plain_addr.unwrap()
    }

    fn tls(&self) -> SocketAddr {
        self.proxy.tls_addr.unwrap()
    }

    /// The access log line for `path`, once written.
    async fn log_line(&self, path: &str) -> serde_json::Value {
        within(async {
            loop {
                let text = std::fs::read_to_string(&self.log).unwrap_or_default();
                let found = text
                    .lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .find(|l| l["path"] == path);
                if let Some(line) = found {
                    return line;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }

    /// `ferry_proxy_protocol_rejected_total` for `listener` and `reason`.
    async fn rejected(&self, listener: SocketAddr, reason: &str) -> f64 {
        let (_, text) = self.proxy.admin("GET", "/metrics").await;
        let series = format!(
            "ferry_proxy_protocol_rejected_total{{listener=\"{listener}\",reason=\"{reason}\"}}"
        );
        sample(&text, &series).unwrap_or(0.0)
    }
}

/// A connection to `addr` that starts with `prefix`.
async fn connect_with(addr: SocketAddr, prefix: &[u8]) -> TcpStream {
    let mut tcp = within(TcpStream::connect(addr)).await.unwrap();
    within(tcp.write_all(prefix)).await.unwrap();
    tcp
}

/// Waits until ferry closes `tcp` without answering: EOF, or a reset
/// (ferry closed with bytes it never read).
async fn assert_closed(tcp: &mut TcpStream) {
    let mut buf = [0u8; 256];
    match within(tcp.read(&mut buf)).await {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!(
            "expected the connection closed, got {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => panic!("expected EOF or a reset, got {e}"),
    }
}

#[tokio::test]
async fn v1_from_a_trusted_peer_names_the_client_in_xff_and_the_access_log() {
    let s = setup(r#"trusted_proxies = ["127.0.0.1"]"#).await;
    let tcp = connect_with(s.plain(), b"PROXY TCP4 203.0.113.9 192.0.2.1 40000 80\r\n").await;
    let mut c = Client::plain_over(tcp).await;
    let req = request("GET", "localhost", "/v1", false)
        .header("x-forwarded-for", "6.6.6.6")
        .body(empty())
        .unwrap();
    let res = c.fetch(req).await;
    assert_eq!(res.status(), 200);
    // The client from the header is not a trusted proxy: its own XFF is replaced.
    assert_eq!(
        res.echoed("x-forwarded-for").as_deref(),
        Some("203.0.113.9")
    );
    assert_eq!(res.echoed("x-real-ip").as_deref(), Some("203.0.113.9"));
    // The header is read once per connection; keep-alive requests keep its client.
    let res = c.get("localhost", "/v1-again").await;
    assert_eq!(
        res.echoed("x-forwarded-for").as_deref(),
        Some("203.0.113.9")
    );
    assert_eq!(s.log_line("/v1").await["client"], "203.0.113.9:40000");
    assert_eq!(s.log_line("/v1-again").await["client"], "203.0.113.9:40000");
}

#[tokio::test]
async fn v2_over_tls_names_the_client_and_a_trusted_source_keeps_its_xff() {
    let s = setup(r#"trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]"#).await;
    // IPv6, with TLVs (ALPN, NOOP, an AWS VPC endpoint id) that ferry skips.
    let mut tlvs = vec![0x01, 0x00, 0x02, b'h', b'2', 0x04, 0x00, 0x01, 0x00];
    tlvs.extend_from_slice(&[0xEA, 0x00, 0x05, 0x01, b'v', b'p', b'c', b'e']);
    let header = v2_header("[2001:db8::7]:5555", "[2001:db8::1]:443", &tlvs);
    let tcp = connect_with(s.tls(), &header).await;
    let mut c = Client::tls_over(tcp, &s.proxy.ca, Proto::H2, "localhost").await;
    let res = c.get("localhost", "/v2").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.echoed("x-forwarded-for").as_deref(),
        Some("2001:db8::7")
    );
    assert_eq!(s.log_line("/v2").await["client"], "[2001:db8::7]:5555");

    // A PROXY source that is itself in trusted_proxies (a chain of proxies):
    // its X-Forwarded-For is believed, as from a trusted TCP peer.
    let header = v2_header("10.1.2.3:4000", "10.0.0.1:443", &[]);
    let tcp = connect_with(s.tls(), &header).await;
    let mut c = Client::tls_over(tcp, &s.proxy.ca, Proto::H1, "localhost").await;
    let req = request("GET", "localhost", "/chain", false)
        .header("x-forwarded-for", "198.51.100.1")
        .body(empty())
        .unwrap();
    let res = c.fetch(req).await;
    assert_eq!(
        res.echoed("x-forwarded-for").as_deref(),
        Some("198.51.100.1, 10.1.2.3")
    );
    assert_eq!(res.echoed("x-real-ip").as_deref(), Some("198.51.100.1"));
    assert_eq!(s.log_line("/chain").await["client"], "10.1.2.3:4000");
}

#[tokio::test]
async fn v2_local_and_v1_unknown_use_the_real_peer() {
    let s = setup(r#"trusted_proxies = ["127.0.0.1"]"#).await;
    for (header, path) in [
        // A balancer's health check: LOCAL, no addresses.
        (v2_raw(0x20, 0x00, &[]), "/local"),
        // LOCAL with addresses: they are ignored.
        (
            {
                let mut h = v2_header("203.0.113.9:1", "192.0.2.1:2", &[]);
                h[12] = 0x20;
                h
            },
            "/local-with-addresses",
        ),
        (b"PROXY UNKNOWN\r\n".to_vec(), "/unknown"),
        // AF_UNIX: no IP to use.
        (v2_raw(0x21, 0x31, &[0; 216]), "/unix"),
    ] {
        let tcp = connect_with(s.plain(), &header).await;
        let me = tcp.local_addr().unwrap();
        let mut c = Client::plain_over(tcp).await;
        let res = c.get("localhost", path).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(
            res.echoed("x-forwarded-for").as_deref(),
            Some("127.0.0.1"),
            "{path}"
        );
        assert_eq!(s.log_line(path).await["client"], me.to_string(), "{path}");
    }
}

#[tokio::test]
async fn untrusted_peers_are_closed_unread_and_counted() {
    let s = setup(r#"trusted_proxies = ["10.9.9.9"]"#).await;
    let valid =
        b"PROXY TCP4 203.0.113.9 192.0.2.1 40000 80\r\nGET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    for addr in [s.plain(), s.tls()] {
        let mut tcp = connect_with(addr, valid).await;
        assert_closed(&mut tcp).await;
        assert_eq!(s.rejected(addr, "untrusted").await, 1.0, "{addr}");
    }
}

#[tokio::test]
async fn malformed_oversized_and_missing_headers_are_closed_and_counted() {
    let s = setup(r#"trusted_proxies = ["127.0.0.1"]"#).await;
    let mut huge = v2_header("203.0.113.9:1", "192.0.2.1:2", &[]);
    huge[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    let long_v1 = format!("PROXY UNKNOWN {}\r\n", "a".repeat(200));
    let cases: [(&[u8], &str); 8] = [
        (b"PROXY TCP4 203.0.113.999 192.0.2.1 1 2\r\n", "malformed"),
        (b"PROXY TCP4 203.0.113.9 192.0.2.1 1 2\r\r", "malformed"),
        // Not one CRLF-terminated line (ppp alone accepted both; fuzzing found them).
        (b"PROXY UNKNOWN x \n\r1", "malformed"),
        (b"PROXY UNKNOWN a\nPROXY UNKNOWN b\r\n", "malformed"),
        (&v2_raw(0x2F, 0x11, &[0; 12]), "malformed"),
        (&huge, "too_large"),
        (long_v1.as_bytes(), "too_large"),
        // A client talking HTTP straight to the listener.
        (b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "not_proxy"),
    ];
    let mut expected: HashMap<&str, f64> = HashMap::new();
    for (bytes, reason) in cases {
        let mut tcp = connect_with(s.plain(), bytes).await;
        assert_closed(&mut tcp).await;
        *expected.entry(reason).or_default() += 1.0;
    }
    for (reason, n) in expected {
        assert_eq!(s.rejected(s.plain(), reason).await, n, "{reason}");
    }
    // A TLS ClientHello without a header is refused the same way.
    let mut tcp = connect_with(s.tls(), &[0x16, 0x03, 0x01, 0x00, 0x05, 1, 0, 0, 1, 0]).await;
    assert_closed(&mut tcp).await;
    assert_eq!(s.rejected(s.tls(), "not_proxy").await, 1.0);

    // The listener still serves a good header on a new connection.
    let tcp = connect_with(s.plain(), b"PROXY TCP4 203.0.113.9 192.0.2.1 1 80\r\n").await;
    let res = Client::plain_over(tcp).await.get("localhost", "/ok").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.echoed("x-forwarded-for").as_deref(),
        Some("203.0.113.9")
    );
}

#[tokio::test]
async fn a_header_that_never_completes_is_closed_after_the_handshake_timeout() {
    let s = setup("trusted_proxies = [\"127.0.0.1\"]\nhandshake_timeout = \"300ms\"").await;
    let started = Instant::now();
    let mut tcp = connect_with(s.plain(), b"PROXY TCP4 203.0.113.9 ").await;
    assert_closed(&mut tcp).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(s.rejected(s.plain(), "timeout").await, 1.0);
    // Same over TLS: the header's deadline comes before the handshake's.
    let mut tcp = connect_with(s.tls(), &V2_SIGNATURE[..8]).await;
    assert_closed(&mut tcp).await;
    assert_eq!(s.rejected(s.tls(), "timeout").await, 1.0);
}

/// What a PROXY-reading upstream saw on one connection.
#[derive(Debug, Clone)]
struct Seen {
    /// Which connection (in accept order).
    conn: usize,
    /// The header's source and destination; `None` for LOCAL.
    addrs: Option<(SocketAddr, SocketAddr)>,
    path: String,
}

/// An upstream that requires a v2 header on every connection, decodes it by
/// hand, then serves HTTP/1.1, reporting every request with its header.
async fn proxy_reading_backend() -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for conn in 0.. {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut fixed = [0u8; 16];
                stream.read_exact(&mut fixed).await.unwrap();
                assert_eq!(
                    &fixed[..12],
                    V2_SIGNATURE,
                    "every connection starts with a v2 header"
                );
                let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
                let mut block = vec![0u8; len];
                stream.read_exact(&mut block).await.unwrap();
                let addrs = match (fixed[12], fixed[13]) {
                    (0x20, _) => None,
                    (0x21, 0x11) => {
                        let ip = |b: &[u8]| IpAddr::from([b[0], b[1], b[2], b[3]]);
                        let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
                        Some((
                            SocketAddr::new(ip(&block[0..4]), port(&block[8..10])),
                            SocketAddr::new(ip(&block[4..8]), port(&block[10..12])),
                        ))
                    }
                    other => panic!("unexpected header {other:?}"),
                };
                let svc = hyper::service::service_fn(move |req| {
                    let tx = tx.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let _ = tx.send(Seen {
                            conn,
                            addrs,
                            path: path.clone(),
                        });
                        let source = addrs.map_or("local".to_owned(), |a| a.0.to_string());
                        Ok::<_, Infallible>(Response::new(body(format!("source {source}\n"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, rx)
}

/// The next request the backend saw for `path`.
async fn seen(rx: &mut mpsc::UnboundedReceiver<Seen>, path: &str) -> Seen {
    within(async {
        loop {
            let s = rx.recv().await.expect("backend running");
            if s.path == path {
                return s;
            }
        }
    })
    .await
}

#[tokio::test]
async fn send_proxy_protocol_v2_names_each_client_to_the_upstream() {
    let (backend, mut rx) = proxy_reading_backend().await;
    let toml = ProxyToml::new()
        .plain_listener()
        .upstream_with(
            "backend",
            &[backend],
            "send_proxy_protocol = \"v2\"\nhealth = { path = \"/health\", interval = \"100ms\" }",
        )
        .route("all", "/", "backend")
        .build();
    let proxy = TestProxy::start(&toml).await;
    let listen = proxy.plain_addr.unwrap();

    // Two clients, their keep-alive requests interleaved.
    let mut clients = Vec::new();
    for _ in 0..2 {
        let tcp = within(TcpStream::connect(listen)).await.unwrap();
        let me = tcp.local_addr().unwrap();
        clients.push((me, Client::plain_over(tcp).await));
    }
    let mut conns_of: HashMap<SocketAddr, Vec<usize>> = HashMap::new();
    let mut source_of: HashMap<usize, Option<(SocketAddr, SocketAddr)>> = HashMap::new();
    for round in 0..4 {
        for (i, (me, client)) in clients.iter_mut().enumerate() {
            let path = format!("/c{i}-{round}");
            let res = client.get("localhost", &path).await;
            assert_eq!(res.status(), 200);
            assert_eq!(res.text(), format!("source {me}\n"));
            let seen = seen(&mut rx, &path).await;
            // The client as source, the listener as destination.
            assert_eq!(seen.addrs, Some((*me, listen)), "{path}");
            // A connection never carries two clients (its header names one).
            let first = *source_of.entry(seen.conn).or_insert(seen.addrs);
            assert_eq!(first, seen.addrs, "{path} on connection {}", seen.conn);
            conns_of.entry(*me).or_default().push(seen.conn);
        }
    }
    // Each client's connection is pooled and reused for its next requests.
    for (me, conns) in &conns_of {
        let mut distinct = conns.clone();
        distinct.dedup();
        assert!(
            distinct.len() < conns.len(),
            "{me}: never reused: {conns:?}"
        );
    }

    // Active health checks send LOCAL (HAProxy's check-send-proxy).
    assert_eq!(seen(&mut rx, "/health").await.addrs, None);
}

/// `haproxy` as a child process, killed when dropped.
struct HaproxyGuard(std::process::Child);

impl Drop for HaproxyGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("haproxy"))
        .find(|p| p.is_file())
}

/// A port nothing listens on now (bound, then released): haproxy's
/// configuration cannot ask for port 0.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_haproxy(binary: &Path, dir: &Path, port: u16, ferry: SocketAddr) -> HaproxyGuard {
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\n\
             frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\n\
             backend be\n  server ferry {ferry} send-proxy-v2\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
    let child = std::process::Command::new(binary)
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("haproxy starts");
    HaproxyGuard(child)
}

#[tokio::test]
async fn haproxy_in_front_with_send_proxy_v2() {
    let Some(binary) = haproxy_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "haproxy is not installed: .ci/run installs it (apt-get install -y haproxy); this test must run in CI"
        );
        eprintln!("SKIPPED: haproxy is not installed (apt-get install -y haproxy)");
        return;
    };
    let s = setup(r#"trusted_proxies = ["127.0.0.1"]"#).await;
    let port = free_port();
    let mut haproxy = start_haproxy(&binary, s._dir.path(), port, s.tls());
    let front: SocketAddr = ([127, 0, 0, 1], port).into();

    // Ready once it accepts (the probes reach ferry as header-only connections).
    let tcp = within(async {
        loop {
            if let Ok(Some(status)) = haproxy.0.try_wait() {
                let log = std::fs::read_to_string(s._dir.path().join("haproxy.log"));
                panic!("haproxy exited ({status}): {}", log.unwrap_or_default());
            }
            match TcpStream::connect(front).await {
                Ok(tcp) => return tcp,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    let me = tcp.local_addr().unwrap();
    let mut c = Client::tls_over(tcp, &s.proxy.ca, Proto::H2, "localhost").await;
    let res = c.get("localhost", "/through-haproxy").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.echoed("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(res.echoed("x-real-ip").as_deref(), Some("127.0.0.1"));
    // The client's own port: ferry's TCP peer was HAProxy's outgoing socket,
    // so only the header could have told it.
    let line = s.log_line("/through-haproxy").await;
    assert_eq!(line["client"], me.to_string());
    assert_eq!(line["status"], 200);
}

#[test]
fn ferry_check_refuses_proxy_protocol_without_trusted_proxies_and_unknown_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[listen]]\naddr = \"0.0.0.0:80\"\nproxy_protocol = true\n\n\
         [upstream.backend]\nservers = [\"b:8000\"]\nsend_proxy_protocol = \"v3\"\n\n\
         [[route]]\npath_prefix = \"/\"\nupstream = \"backend\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["check", "-c", path.to_str().unwrap()])
        .env_remove("FERRY_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bad.toml has 2 problems"), "{stderr}");
    assert!(
        stderr.contains("bad.toml:3:18: listen[0].proxy_protocol: the PROXY protocol header is accepted only from `server.trusted_proxies`, and that list is empty"),
        "{stderr}"
    );
    assert!(
        stderr.contains("trusted_proxies = [\"10.0.0.0/8\"]"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad.toml:7:23: upstream.backend.send_proxy_protocol: unknown PROXY protocol version `v3`"),
        "{stderr}"
    );
}
