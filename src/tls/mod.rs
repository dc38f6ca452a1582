//! TLS: loading certificates ([`certs`]), choosing one and the
//! client-certificate policy by SNI ([`resolver`]), mutual TLS
//! ([`client_auth`]), and the local development CA ([`dev`]).

pub mod certs;
pub mod client_auth;
pub mod dev;
pub mod resolver;

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::aws_lc_rs;
use rustls::server::danger::ClientCertVerifier;

use crate::config::TlsVersion;
pub use certs::{CertError, CertInfo, LoadedCert, expiries, load_certificates};
pub use client_auth::ClientCert;
pub use resolver::{Accepting, CertStore, ClientAuthScope, SniResolver};

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

/// Session resumption state: stateless tickets (TLS 1.3, and TLS 1.2
/// clients that ask for them) and a cache of TLS 1.2 session IDs.
#[derive(Debug, Clone)]
pub(crate) struct Resumption {
    /// `None` if aws-lc-rs could not make ticket keys (then: session IDs only).
    ticketer: Option<Arc<dyn rustls::server::ProducesTickets>>,
    sessions: Arc<dyn rustls::server::StoresServerSessions>,
}

impl Resumption {
    pub(crate) fn new() -> Resumption {
        Resumption {
            ticketer: aws_lc_rs::Ticketer::new().ok(),
            sessions: rustls::server::ServerSessionMemoryCache::new(4096),
        }
    }
}

/// A rustls server configuration: TLS 1.3, and 1.2 unless `min` is 1.3;
/// certificates by SNI from `resolver`; ALPN `h2` (when `http2`) and
/// `http/1.1`; client certificates checked by `client_auth`, if given;
/// resumption from `resumption`; the server's cipher order (see
/// [`server_provider`]). No 0-RTT: rustls accepts early data only when
/// `max_early_data_size` is raised, and it stays 0.
fn server_config(
    resolver: Arc<dyn rustls::server::ResolvesServerCert>,
    http2: bool,
    min: TlsVersion,
    client_auth: Option<Arc<dyn ClientCertVerifier>>,
    resumption: &Resumption,
) -> Arc<ServerConfig> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match min {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(server_provider())
        .with_protocol_versions(versions)
        .expect("aws-lc-rs supports TLS 1.2 and 1.3");
    let builder = match client_auth {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = if http2 {
        vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()]
    } else {
        vec![ALPN_HTTP11.to_vec()]
    };
    if let Some(ticketer) = &resumption.ticketer {
        config.ticketer = ticketer.clone();
    }
    config.session_storage = resumption.sessions.clone();
    config.ignore_client_order = true;
    Arc::new(config)
}
