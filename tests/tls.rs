//! TLS as a client sees it: SNI picks the certificate, no SNI gets the
//! default, ALPN picks the protocol, TLS 1.2 and 1.3 both work, the server
//! chooses the cipher suite, the client the key exchange (post-quantum
//! hybrid first when it asks), `tls_min_version` is enforced, resumption
//! works without 0-RTT, and a client that never finishes its handshake is
//! dropped.

mod common;

use std::sync::Arc;

use common::*;
use rustls::pki_types::ServerName;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The subjectAltName DNS names of the certificate the server presented.
fn presented_names(conn: &rustls::ClientConnection) -> Vec<String> {
    let der = &conn.peer_certificates().expect("a certificate")[0];
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

async fn start_two_certs() -> (TestProxy, Backend) {
    let backend = Backend::echo("b").await;
    let ca = TestCa::new();
    let (a_cert, a_key) = ca.leaf("a", &["a.test", "www.a.test"]);
    let (b_cert, b_key) = ca.leaf("b", &["b.test", "*.b.test"]);
    let toml = ProxyToml::new()
        .server(r#"handshake_timeout = "300ms""#)
        .tls_listener()
        .certificate(a_cert, a_key)
        .certificate(b_cert, b_key)
        .upstream("backend", &[backend.addr])
        .route_keys("path_prefix = \"/\"\nupstream = \"backend\"")
        .build();
    (TestProxy::start_with(&toml, ca).await, backend)
}

async fn handshake(
    proxy: &TestProxy,
    config: Arc<rustls::ClientConfig>,
    sni: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = within(TcpStream::connect(proxy.tls_addr.unwrap()))
        .await
        .unwrap();
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    within(tokio_rustls::TlsConnector::from(config).connect(name, tcp))
        .await
        .expect("handshake")
}

#[tokio::test]
async fn sni_selects_among_certificates_and_wildcards_work() {
    let (proxy, _backend) = start_two_certs().await;
    let config = proxy.ca.client_config(&[b"http/1.1"]);
    for (sni, expect) in [
        ("a.test", "a.test"),
        ("www.a.test", "a.test"),
        ("b.test", "b.test"),
        ("api.b.test", "b.test"),
        ("WWW.A.TEST", "a.test"),
    ] {
        let tls = handshake(&proxy, config.clone(), sni).await;
        assert_eq!(presented_names(tls.get_ref().1)[0], expect, "SNI {sni}");
    }
    // A full request over the SNI-selected certificate, verified by the client.
    let mut c = Client::tls(proxy.tls_addr.unwrap(), &proxy.ca, Proto::H2, "api.b.test").await;
    assert_eq!(c.get("api.b.test", "/").await.status(), 200);
}

#[tokio::test]
async fn clients_without_sni_get_the_first_certificate() {
    let (proxy, _backend) = start_two_certs().await;
    // Connecting by IP literal sends no SNI. Verification would fail (the
    // certificate is for names), so look at what was presented without trusting it.
    let mut config = (*proxy.ca.client_config(&[b"http/1.1"])).clone();
    config
        .dangerous()
        .set_certificate_verifier(Arc::new(AcceptAnything));
    let tls = handshake(&proxy, Arc::new(config.clone()), "127.0.0.1").await;
    assert_eq!(presented_names(tls.get_ref().1), ["a.test", "www.a.test"]);
    // An unknown name also gets the default rather than a failed handshake.
    let tls = handshake(&proxy, Arc::new(config), "unknown.test").await;
    assert_eq!(presented_names(tls.get_ref().1), ["a.test", "www.a.test"]);
}

#[tokio::test]
async fn alpn_picks_the_protocol_and_tls12_works() {
    let backend = Backend::echo("b").await;
    let proxy = TestProxy::start(&simple_config(backend.addr)).await;
    for (alpn, want) in [
        (&[&b"h2"[..], b"http/1.1"][..], &b"h2"[..]),
        (&[&b"http/1.1"[..]][..], &b"http/1.1"[..]),
    ] {
        let tls = handshake(&proxy, proxy.ca.client_config(alpn), "localhost").await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(want));
        assert_eq!(
            tls.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
    }
    let tls12 = rustls::ClientConfig::builder_with_provider(ferry::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots(&proxy.ca))
        .with_no_client_auth();
    let tls = handshake(&proxy, Arc::new(tls12), "localhost").await;
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
}

/// A client configuration offering exactly `suites`, in that order, over `versions`.
fn offering(
    proxy: &TestProxy,
    versions: &[&'static rustls::SupportedProtocolVersion],
    suites: &[rustls::SupportedCipherSuite],
) -> Arc<rustls::ClientConfig> {
    use rustls::crypto::aws_lc_rs;
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: suites.to_vec(),
        ..aws_lc_rs::default_provider()
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots(&proxy.ca))
        .with_no_client_auth();
    Arc::new(config)
}

#[tokio::test]
async fn the_server_picks_aes_128_gcm_whatever_the_client_lists_first() {
    use rustls::CipherSuite as S;
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    let backend = Backend::echo("b").await;
    let proxy = TestProxy::start(&simple_config(backend.addr)).await;
    let negotiated = |tls: &tokio_rustls::client::TlsStream<TcpStream>| {
        tls.get_ref().1.negotiated_cipher_suite().unwrap().suite()
    };
    // OpenSSL, curl and rustls clients list AES-256 first; ferry still picks
    // AES-128 (its SHA-256 key schedule runs on the CPU's SHA extensions).
    let aes256_first = [
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ];
    let tls13 = [&rustls::version::TLS13];
    let tls = handshake(&proxy, offering(&proxy, &tls13, &aes256_first), "localhost").await;
    assert_eq!(negotiated(&tls), S::TLS13_AES_128_GCM_SHA256);
    // A client that offers only ChaCha20 (no AES hardware) still gets in.
    let chacha = offering(&proxy, &tls13, &[cs::TLS13_CHACHA20_POLY1305_SHA256]);
    let tls = handshake(&proxy, chacha, "localhost").await;
    assert_eq!(negotiated(&tls), S::TLS13_CHACHA20_POLY1305_SHA256);
    // TLS 1.2 follows the same order.
    let tls12 = offering(&proxy, &[&rustls::version::TLS12], &aes256_first);
    let tls = handshake(&proxy, tls12, "localhost").await;
    assert_eq!(negotiated(&tls), S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_dropped() {
    let (proxy, _backend) = start_two_certs().await;
    let mut tcp = within(TcpStream::connect(proxy.tls_addr.unwrap()))
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    // handshake_timeout is 300ms: the server closes (EOF) instead of waiting forever.
    let n = within(tcp.read(&mut buf)).await.unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn tls_min_version_13_refuses_tls12_clients() {
    let backend = Backend::echo("b").await;
    let toml = ProxyToml::simple(backend.addr)
        .server(r#"tls_min_version = "1.3""#)
        .build();
    let proxy = TestProxy::start(&toml).await;
    let tls12 = offering(
        &proxy,
        &[&rustls::version::TLS12],
        rustls::crypto::aws_lc_rs::DEFAULT_CIPHER_SUITES,
    );
    let tcp = within(TcpStream::connect(proxy.tls_addr.unwrap()))
        .await
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let err = within(tokio_rustls::TlsConnector::from(tls12).connect(name, tcp))
        .await
        .expect_err("a TLS 1.2-only client is refused");
    assert!(err.to_string().contains("ProtocolVersion"), "{err}");
    let tls = handshake(&proxy, proxy.ca.client_config(&[b"http/1.1"]), "localhost").await;
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

/// A client offering exactly `groups`, in that order (TLS 1.3).
fn with_groups(
    proxy: &TestProxy,
    groups: &[&'static dyn rustls::crypto::SupportedKxGroup],
) -> Arc<rustls::ClientConfig> {
    let provider = rustls::crypto::CryptoProvider {
        kx_groups: groups.to_vec(),
        ..rustls::crypto::aws_lc_rs::default_provider()
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots(&proxy.ca))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Ask for 0-RTT on resumption: ferry must not take it.
    config.enable_early_data = true;
    Arc::new(config)
}

/// One HTTP/1.1 request on `tls` (reading the answer also takes in the
/// session tickets the server sent after the handshake).
async fn get_on(tls: &mut tokio_rustls::client::TlsStream<TcpStream>) -> String {
    use tokio::io::AsyncWriteExt;
    tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = within(tls.read(&mut buf)).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn key_exchange_follows_the_client_and_resumption_has_no_0rtt() {
    use rustls::NamedGroup;
    use rustls::crypto::aws_lc_rs::kx_group;
    let backend = Backend::echo("b").await;
    let proxy = TestProxy::start(&simple_config(backend.addr)).await;
    let group = |tls: &tokio_rustls::client::TlsStream<TcpStream>| {
        tls.get_ref()
            .1
            .negotiated_key_exchange_group()
            .unwrap()
            .name()
    };
    // Browsers list the post-quantum hybrid first and get it.
    let pq = with_groups(&proxy, &[kx_group::X25519MLKEM768, kx_group::X25519]);
    let mut tls = handshake(&proxy, pq.clone(), "localhost").await;
    assert_eq!(group(&tls), NamedGroup::X25519MLKEM768);
    assert!(get_on(&mut tls).await.starts_with("HTTP/1.1 200"));
    for (offered, want) in [
        (kx_group::X25519, NamedGroup::X25519),
        (kx_group::SECP256R1, NamedGroup::secp256r1),
        (kx_group::SECP384R1, NamedGroup::secp384r1),
    ] {
        let tls = handshake(&proxy, with_groups(&proxy, &[offered]), "localhost").await;
        assert_eq!(group(&tls), want);
    }
    // Resumed with the ticket from the first connection, without early data.
    let mut tls = handshake(&proxy, pq, "localhost").await;
    assert_eq!(
        tls.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    assert!(!tls.get_ref().1.is_early_data_accepted());
    assert!(get_on(&mut tls).await.starts_with("HTTP/1.1 200"));
}

fn roots(ca: &TestCa) -> rustls::RootCertStore {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca.ca.cert.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

/// For looking at the certificate a server presents to a client that sends no SNI.
#[derive(Debug)]
struct AcceptAnything;

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        ferry::tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
