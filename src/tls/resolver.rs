//! Choosing a certificate by SNI.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::LoadedCert;

/// Picks the certificate whose names cover the SNI name; the first
/// certificate serves clients that send no SNI (IP literals) or an unknown name,
/// as nginx's default server does.
#[derive(Debug)]
pub struct SniResolver {
    /// Exact DNS names → certificate (the first `[[certificate]]` listing a name wins).
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` stored as `example.com` → certificate.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    /// `None` when `certs` is empty.
    pub fn new(certs: &[LoadedCert]) -> Option<SniResolver> {
        let default = certs.first()?.key.clone();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for cert in certs {
            for name in &cert.info.names {
                match name.strip_prefix("*.") {
                    Some(suffix) => wildcard
                        .entry(suffix.to_owned())
                        .or_insert_with(|| cert.key.clone()),
                    None => exact
                        .entry(name.clone())
                        .or_insert_with(|| cert.key.clone()),
                };
            }
        }
        Some(SniResolver {
            exact,
            wildcard,
            default,
        })
    }

    /// The certificate for `sni` (already lowercase, as rustls gives it).
    pub fn pick(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = sni else {
            return self.default.clone();
        };
        if let Some(key) = self.exact.get(name) {
            return key.clone();
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(key) = self.wildcard.get(parent) {
                return key.clone();
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

/// The certificates in use, replaceable while serving: the next handshake
/// sees a reload's certificates, established connections keep theirs.
#[derive(Debug)]
pub struct CertStore {
    current: arc_swap::ArcSwap<SniResolver>,
}

impl CertStore {
    pub fn new(resolver: SniResolver) -> CertStore {
        CertStore {
            current: arc_swap::ArcSwap::from_pointee(resolver),
        }
    }

    pub fn replace(&self, resolver: SniResolver) {
        self.current.store(Arc::new(resolver));
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().pick(hello.server_name()))
    }
}
