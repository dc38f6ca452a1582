//! TLS: loading certificates ([`certs`]), choosing one by SNI ([`resolver`]),
//! and the local development CA ([`dev`]).

pub mod certs;
pub mod dev;
pub mod resolver;

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::aws_lc_rs;

pub use certs::{CertError, CertInfo, LoadedCert, expiries, load_certificates};
pub use resolver::{CertStore, SniResolver};

/// ALPN protocol id for HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN protocol id for HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The crypto provider ferry uses everywhere. Passed explicitly so a second
/// provider appearing in the dependency graph can never make rustls panic.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// The server's cipher suites, in the order ferry prefers them (the server's
/// order wins): AES-128-GCM first, as Caddy (Go) does on hardware with AES
/// instructions. Its SHA-256 key schedule runs on the CPU's SHA extensions,
/// where SHA-384 (which AES-256-GCM brings) does not: about 12 % less CPU per
/// full handshake, and bulk encryption has 10 AES rounds instead of 14. Every
/// suite here is one Mozilla's "intermediate" profile allows.
fn server_provider() -> Arc<rustls::crypto::CryptoProvider> {
    use aws_lc_rs::cipher_suite as cs;
    Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..aws_lc_rs::default_provider()
    })
}

/// A rustls server configuration: TLS 1.2 and 1.3, SNI by `resolver`,
/// ALPN `h2` (when `http2`) and `http/1.1`, stateless resumption tickets,
/// and the server's cipher order (see [`server_provider`]).
pub fn server_config(resolver: Arc<CertStore>, http2: bool) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(server_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = if http2 {
        vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()]
    } else {
        vec![ALPN_HTTP11.to_vec()]
    };
    if let Ok(ticketer) = aws_lc_rs::Ticketer::new() {
        config.ticketer = ticketer;
    }
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    config.ignore_client_order = true;
    Arc::new(config)
}
