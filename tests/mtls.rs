//! Mutual TLS as clients and upstreams see it: `client_ca` on a
//! `[[certificate]]` makes its names need a client certificate from that CA;
//! the upstream learns who the client is from `X-Client-*` headers that no
//! client can forge; a request for a name with another policy than the
//! connection's gets 421; a reload's new CA applies to new connections; and
//! `ferry check` refuses a CA that is not one.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use common::*;
use ferry::tls::dev::PemPair;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A proxy serving `public.test` (the default certificate, no client
/// certificates) and `secure.test` (client certificates from `clients`,
/// `client_auth = mode`), from a config file so that it can be reloaded.
struct Mtls {
    proxy: TestProxy,
    _backend: Backend,
    clients: ClientCa,
    /// A CA ferry does not trust.
    other: ClientCa,
    alice: PemPair,
}

fn config(ca: &TestCa, backend: SocketAddr, client_ca: &std::path::Path, mode: &str) -> String {
    let (public_cert, public_key) = ca.leaf("public", &["public.test"]);
    let (secure_cert, secure_key) = ca.leaf("secure", &["secure.test"]);
    ProxyToml::new()
        .admin()
        .tls_listener()
        .certificate(public_cert, public_key)
        .certificate_with(
            secure_cert,
            secure_key,
            &format!(
                "client_ca = \"{}\"\nclient_auth = \"{mode}\"",
                client_ca.display()
            ),
        )
        .upstream("backend", &[backend])
        .route("all", "/", "backend")
        .build()
}

async fn start(mode: &str) -> Mtls {
    let backend = Backend::echo("b").await;
    let ca = TestCa::new();
    let clients = ClientCa::new(ca.dir.path(), "clients");
    let other = ClientCa::new(ca.dir.path(), "other");
    let toml = config(&ca, backend.addr, &clients.path, mode);
    let proxy = TestProxy::start_file_with(&toml, ca).await;
    let alice = clients.client_identity(
        "alice",
        &[
            "alice.example",
            "alice@example.com",
            "spiffe://example/alice",
        ],
    );
    Mtls {
        proxy,
        _backend: backend,
        clients,
        other,
        alice,
    }
}

impl Mtls {
    fn addr(&self) -> SocketAddr {
        self.proxy.tls_addr.unwrap()
    }

    async fn client(&self, identity: Option<&PemPair>, proto: Proto, sni: &str) -> Client {
        let config = self.proxy.ca.client_config_as(proto.alpn(), identity);
        Client::tls_with(self.addr(), config, proto, sni).await
    }
}

/// What a client sees when ferry refuses its certificate: the handshake
/// error, or — TLS 1.3 clients finish before the server has checked their
/// certificate — the error on the first read.
async fn refusal(addr: SocketAddr, config: Arc<rustls::ClientConfig>, sni: &str) -> String {
    let tcp = within(TcpStream::connect(addr)).await.unwrap();
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let mut tls = match within(tokio_rustls::TlsConnector::from(config).connect(name, tcp)).await {
        Err(e) => return e.to_string(),
        Ok(tls) => tls,
    };
    let request = format!("GET / HTTP/1.1\r\nhost: {sni}\r\n\r\n");
    let _ = tls.write_all(request.as_bytes()).await;
    let mut buf = [0u8; 4096];
    match within(tls.read(&mut buf)).await {
        Err(e) => e.to_string(),
        Ok(n) => panic!(
            "expected the handshake to be refused, got {n} bytes: {}",
            String::from_utf8_lossy(&buf[..n])
        ),
    }
}

fn sha256_hex(pem: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.as_ref())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn required_client_certificates_are_checked_and_forwarded() {
    let m = start("required").await;
    let h1 = [&b"http/1.1"[..]];

    // No certificate: the handshake fails with the certificate_required alert.
    let err = refusal(m.addr(), m.proxy.ca.client_config(&h1), "secure.test").await;
    assert!(err.contains("CertificateRequired"), "{err}");
    // A certificate from a CA ferry does not trust: unknown_ca.
    let mallory = m.other.client_identity("mallory", &["mallory.example"]);
    let config = m.proxy.ca.client_config_as(&h1, Some(&mallory));
    let err = refusal(m.addr(), config, "secure.test").await;
    assert!(err.contains("UnknownCA"), "{err}");
    let (_, metrics) = m.proxy.admin("GET", "/metrics").await;
    let series = format!(
        "ferry_tls_handshake_failures_total{{listener=\"{}\",reason=\"client_certificate\"}}",
        m.addr()
    );
    assert_eq!(sample(&metrics, &series), Some(2.0), "{metrics}");

    // A good certificate: the upstream learns who it is, whatever the
    // client claimed in headers of the same names.
    for proto in [Proto::H1, Proto::H2] {
        let mut c = m.client(Some(&m.alice), proto, "secure.test").await;
        let req = request("GET", "secure.test", "/", c.is_h2())
            .header("x-client-cert-subject", "CN=admin")
            .header("x-client-verify", "SUCCESS-ish")
            .header("x-client-cert-fingerprint", "00")
            .body(empty())
            .unwrap();
        let res = c.fetch(req).await;
        assert_eq!(res.status(), 200, "{proto:?} {}", res.text());
        assert_eq!(res.echoed_all("x-client-verify"), ["SUCCESS"]);
        assert_eq!(
            res.echoed_all("x-client-cert-subject"),
            ["CN=alice,O=ferry development CA"]
        );
        assert_eq!(
            res.echoed("x-client-cert-san").as_deref(),
            Some("DNS:alice.example, email:alice@example.com, URI:spiffe://example/alice")
        );
        assert_eq!(
            res.echoed_all("x-client-cert-fingerprint"),
            [sha256_hex(&m.alice.cert)]
        );
    }

    // The name without client certificates needs none, and forged headers
    // are removed there too.
    let mut c = m.client(None, Proto::H1, "public.test").await;
    let req = request("GET", "public.test", "/", false)
        .header("x-client-cert-subject", "CN=admin")
        .header("X-Client-Verify", "SUCCESS")
        .body(empty())
        .unwrap();
    let res = c.fetch(req).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.echoed("x-client-cert-subject"), None, "{}", res.text());
    assert_eq!(res.echoed("x-client-verify"), None, "{}", res.text());
}

#[tokio::test]
async fn optional_client_certificates_let_clients_without_one_in() {
    let m = start("optional").await;
    for proto in [Proto::H1, Proto::H2] {
        let mut c = m.client(None, proto, "secure.test").await;
        let req = request("GET", "secure.test", "/", c.is_h2())
            .header("x-client-cert-subject", "CN=admin")
            .body(empty())
            .unwrap();
        let res = c.fetch(req).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.echoed_all("x-client-verify"), ["NONE"]);
        assert_eq!(res.echoed("x-client-cert-subject"), None);
    }
    let mut c = m.client(Some(&m.alice), Proto::H1, "secure.test").await;
    let res = c.get("secure.test", "/").await;
    assert_eq!(res.echoed("x-client-verify").as_deref(), Some("SUCCESS"));
    // A certificate that is given is checked: a bad one is still refused.
    let mallory = m.other.client_identity("mallory", &[]);
    let config = m.proxy.ca.client_config_as(&[b"http/1.1"], Some(&mallory));
    let err = refusal(m.addr(), config, "secure.test").await;
    assert!(err.contains("UnknownCA"), "{err}");
}

#[tokio::test]
async fn a_host_with_another_client_certificate_policy_than_the_connection_gets_421() {
    let m = start("required").await;
    for proto in [Proto::H1, Proto::H2] {
        // Authenticated for secure.test, asking for public.test.
        let mut c = m.client(Some(&m.alice), proto, "secure.test").await;
        let res = c.get("public.test", "/").await;
        assert_eq!(res.status(), 421, "{proto:?}: {}", res.text());
        assert_eq!(res.echoed_line("backend"), None);
        // The same connection still serves its own name (any case, any port).
        assert_eq!(c.get("secure.test", "/").await.status(), 200);
        assert_eq!(c.get("SECURE.test:443", "/").await.status(), 200);

        // The bypass: a connection made for public.test (no certificate)
        // asking for secure.test, as HTTP/2 coalescing does.
        let mut c = m.client(None, proto, "public.test").await;
        let res = c.get("secure.test", "/").await;
        assert_eq!(res.status(), 421, "{proto:?}: {}", res.text());
        assert_eq!(res.echoed_line("backend"), None);
        assert_eq!(c.get("secure.test.", "/").await.status(), 421);
        assert_eq!(c.get("public.test", "/").await.status(), 200);
    }
}

#[tokio::test]
async fn a_reloaded_client_ca_applies_to_new_connections() {
    let m = start("required").await;
    let mut before = m.client(Some(&m.alice), Proto::H1, "secure.test").await;
    assert_eq!(before.get("secure.test", "/").await.status(), 200);

    // Trust another CA instead.
    let next = ClientCa::new(m.proxy.ca.dir.path(), "next");
    m.proxy.rewrite_config(&config(
        &m.proxy.ca,
        m._backend.addr,
        &next.path,
        "required",
    ));
    m.proxy.reloader.reload("test").await.unwrap();

    let config = m.proxy.ca.client_config_as(&[b"http/1.1"], Some(&m.alice));
    let err = refusal(m.addr(), config, "secure.test").await;
    assert!(err.contains("UnknownCA"), "{err}");
    let bob = next.client_identity("bob", &[]);
    let mut c = m.client(Some(&bob), Proto::H1, "secure.test").await;
    let res = c.get("secure.test", "/").await;
    assert_eq!(
        res.echoed("x-client-cert-subject").as_deref(),
        Some("CN=bob,O=ferry development CA")
    );
    // The connection made before the reload keeps its handshake.
    assert_eq!(before.get("secure.test", "/").await.status(), 200);
    drop(m.clients);
}

#[test]
fn check_refuses_a_client_ca_that_is_not_a_ca_and_a_bad_client_auth() {
    let ca = TestCa::new();
    let (cert, key) = ca.leaf("site", &["app.test"]);
    let write = |client_keys: &str| {
        let toml = ProxyToml::new()
            .tls_listener()
            .certificate_with(&cert, &key, client_keys)
            .upstream("backend", &["127.0.0.1:9"])
            .route("all", "/", "backend")
            .build();
        let path = ca.dir.path().join("proxy.toml");
        std::fs::write(&path, toml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["check", "-c", path.to_str().unwrap()])
            .env_remove("FERRY_CONFIG")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout),
        )
    };
    // A server certificate is not a CA.
    let (code, err) = write(&format!("client_ca = \"{}\"", cert.display()));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is not a CA certificate"), "{err}");
    let (code, err) = write("client_ca = \"missing.pem\"");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("missing.pem"), "{err}");
    let (code, err) = write(&format!(
        "client_ca = \"{}\"\nclient_auth = \"on\"",
        ca.ca_path().display()
    ));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("certificate[0].client_auth: unknown client_auth `on`"),
        "{err}"
    );
    let (code, out) = write(&format!("client_ca = \"{}\"", ca.ca_path().display()));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("client certificates: required, from CA"),
        "{out}"
    );
}
