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
    /// In `[[certificate]]` order; the first is the default.
    keys: Vec<Arc<CertifiedKey>>,
    /// Exact DNS names → index in `keys` (the first `[[certificate]]` listing a name wins).
    exact: HashMap<String, usize>,
    /// `*.example.com` stored as `example.com` → index in `keys`.
    wildcard: HashMap<String, usize>,
}

impl SniResolver {
    /// `None` when `certs` is empty.
    pub fn new(certs: &[LoadedCert]) -> Option<SniResolver> {
        certs.first()?;
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, cert) in certs.iter().enumerate() {
            for name in &cert.info.names {
                match name.strip_prefix("*.") {
                    Some(suffix) => wildcard.entry(suffix.to_owned()).or_insert(i),
                    None => exact.entry(name.clone()).or_insert(i),
                };
            }
        }
        Some(SniResolver {
            keys: certs.iter().map(|c| c.key.clone()).collect(),
            exact,
            wildcard,
        })
    }

    /// Which certificate a handshake naming `sni` (already lowercase, as
    /// rustls gives it) gets: its index in the configuration, and whether
    /// one of its names matched (else it is the default, served because
    /// nothing did).
    pub fn select(&self, sni: Option<&str>) -> (usize, bool) {
        let Some(name) = sni else {
            return (0, false);
        };
        if let Some(&i) = self.exact.get(name) {
            return (i, true);
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(&i) = self.wildcard.get(parent) {
                return (i, true);
            }
        }
        (0, false)
    }

    /// The certificate for `sni`.
    pub fn pick(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        self.keys[self.select(sni).0].clone()
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
