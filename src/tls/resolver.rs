//! Choosing a certificate by SNI.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::client_auth::{ClientCert, LoadedClientAuth};
use super::{LoadedCert, Resumption, server_config};
use crate::config::{ClientAuthMode, TlsVersion};

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

/// The certificates in use and the TLS server configurations made from
/// them, built whole and replaced whole on reload.
#[derive(Debug)]
pub struct TlsSet {
    resolver: Arc<SniResolver>,
    /// Each certificate's client-certificate policy, as an index into `modes`.
    policy_of: Vec<Option<usize>>,
    /// The distinct `client_ca` + `client_auth` pairs.
    modes: Vec<ClientAuthMode>,
    /// Indexed by ALPN (`[http/1.1 only, h2 + http/1.1]`), then by policy + 1 (0: no client auth).
    configs: [Vec<Arc<ServerConfig>>; 2],
}

impl TlsSet {
    /// `None` when `certs` is empty.
    fn new(certs: &[LoadedCert], min: TlsVersion, resumption: &Resumption) -> Option<TlsSet> {
        let resolver = Arc::new(SniResolver::new(certs)?);
        let mut policies: Vec<&LoadedClientAuth> = Vec::new();
        let policy_of = certs
            .iter()
            .map(|c| {
                let auth = c.client_auth.as_ref()?;
                Some(
                    match policies.iter().position(|p| p.config == auth.config) {
                        Some(i) => i,
                        None => {
                            policies.push(auth);
                            policies.len() - 1
                        }
                    },
                )
            })
            .collect();
        // A policy's sessions resume only under that policy (and only in this
        // set: a reload that changes a client_ca ends its old sessions).
        let per_policy: Vec<Resumption> = policies.iter().map(|_| Resumption::new()).collect();
        let configs = [false, true].map(|http2| {
            let open = server_config(resolver.clone(), http2, min, None, resumption);
            let mut configs = vec![open];
            for (policy, sessions) in policies.iter().zip(&per_policy) {
                let verifier = Some(policy.verifier.clone());
                configs.push(server_config(
                    resolver.clone(),
                    http2,
                    min,
                    verifier,
                    sessions,
                ));
            }
            configs
        });
        Some(TlsSet {
            resolver,
            policy_of,
            modes: policies.iter().map(|p| p.config.mode).collect(),
            configs,
        })
    }

    /// The client-certificate policy of the certificate `sni` selects.
    fn policy(&self, sni: Option<&str>) -> Option<usize> {
        self.policy_of[self.resolver.select(sni).0]
    }
}

/// The certificates in use, replaceable while serving: the next handshake
/// sees a reload's certificates, established connections keep theirs.
#[derive(Debug)]
pub struct CertStore {
    current: arc_swap::ArcSwap<TlsSet>,
    /// Resumption for handshakes without client certificates, kept across
    /// reloads (a reload does not make every client do a full handshake).
    resumption: Resumption,
}

/// What the start of a handshake settled: the configuration to finish it
/// with, and the client-certificate scope its connection will have.
pub struct Accepting {
    pub config: Arc<ServerConfig>,
    /// `None` when no certificate in use has client authentication.
    pub client_auth: Option<ClientAuthScope>,
}

impl CertStore {
    /// `None` when `certs` is empty.
    pub fn new(certs: &[LoadedCert], min: TlsVersion) -> Option<CertStore> {
        let resumption = Resumption::new();
        let set = TlsSet::new(certs, min, &resumption)?;
        Some(CertStore {
            current: arc_swap::ArcSwap::from_pointee(set),
            resumption,
        })
    }

    /// Serves `certs` from the next handshake on; `false` (and nothing
    /// changed) when there are none.
    pub fn replace(&self, certs: &[LoadedCert], min: TlsVersion) -> bool {
        match TlsSet::new(certs, min, &self.resumption) {
            Some(set) => {
                self.current.store(Arc::new(set));
                true
            }
            None => false,
        }
    }

    /// The configuration for a handshake whose ClientHello named `sni`, on a
    /// listener that offers HTTP/2 or not.
    pub fn accept(&self, sni: Option<&str>, http2: bool) -> Accepting {
        let set = self.current.load_full();
        let policy = set.policy(sni);
        let config = set.configs[usize::from(http2)][policy.map_or(0, |p| p + 1)].clone();
        let client_auth = (!set.modes.is_empty()).then(|| ClientAuthScope {
            set,
            policy,
            cert: None,
        });
        Accepting {
            config,
            client_auth,
        }
    }
}

/// A TLS connection's client-certificate facts, for the requests on it.
/// Present only while some certificate in use has client authentication.
#[derive(Debug, Clone)]
pub struct ClientAuthScope {
    /// The set the handshake was made with: its requests are judged by the
    /// same name-to-policy mapping, whatever a reload did since.
    set: Arc<TlsSet>,
    /// The handshake's policy (an index into the set's), `None`: no client auth.
    policy: Option<usize>,
    /// The verified client certificate, when one was presented.
    pub cert: Option<ClientCert>,
}

impl ClientAuthScope {
    /// Whether the handshake asked for a client certificate, and how.
    pub fn mode(&self) -> Option<ClientAuthMode> {
        self.policy.map(|p| self.set.modes[p])
    }

    /// Whether a request for `host` (a Host or `:authority`, port allowed)
    /// may use this connection: only if a handshake naming `host` would
    /// have had the same client-certificate policy. Otherwise a client
    /// could authenticate (or not) for one name and then ask for another,
    /// as browsers do on purpose when they coalesce HTTP/2 connections.
    pub fn admits(&self, host: &str) -> bool {
        let host = crate::router::normalize_host(host);
        let name = host.trim_start_matches('[').trim_end_matches(']');
        self.set.policy(Some(name)) == self.policy
    }
}
