//! Loading PEM certificate chains and keys, and reading what a certificate says.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::client_auth::LoadedClientAuth;
use crate::config::CertificateConfig;

/// Why a `[[certificate]]` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} contains no PEM certificate (expected \"-----BEGIN CERTIFICATE-----\")", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} is not valid PEM: {source}", path.display())]
    BadPem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{} contains no private key (PKCS#8, PKCS#1 or SEC1 PEM; encrypted keys are not supported)", path.display())]
    NoKey { path: PathBuf },
    #[error("{} cannot be parsed as an X.509 certificate: {source}", path.display())]
    Unparsable {
        path: PathBuf,
        #[source]
        source: X509ParseError,
    },
    #[error("the key {} does not match the certificate {} (or is not a supported key type): {source}", key.display(), cert.display())]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("client_ca {}: `{subject}` is not a CA certificate (no basicConstraints CA:TRUE); give the CA that issues the client certificates, not a client certificate", path.display())]
    NotCa { path: PathBuf, subject: String },
    #[error("client_ca {}: cannot use it as a trust anchor: {source}", path.display())]
    BadTrustAnchor {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("client_ca {}: {source}", path.display())]
    ClientVerifier {
        path: PathBuf,
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
}

/// A certificate's DER that x509-parser cannot read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct X509ParseError(
    #[source] pub(super) x509_parser::nom::Err<x509_parser::error::X509Error>,
);

/// What a certificate says about itself, for SNI and for `ferry check`.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// DNS names and IP addresses from subjectAltName (or the CN when there is none), lowercase.
    pub names: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The leaf's subject, for messages.
    pub subject: String,
    /// The chain's certificates after the leaf; each should be issued... by the next.
    pub chain_len: usize,
    /// `Some(i)` when certificate `i` of the chain was not issued by certificate `i+1`'s subject.
    pub chain_out_of_order: Option<usize>,
}

impl CertInfo {
    /// Time left before expiry (zero when expired).
    pub fn remaining(&self) -> Duration {
        self.not_after
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    }

    pub fn is_expired(&self) -> bool {
        self.not_after <= SystemTime::now()
    }
}

/// A certificate ready to serve.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    pub config: CertificateConfig,
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
    /// Present when the certificate has a `client_ca`: its names need client certificates.
    pub client_auth: Option<LoadedClientAuth>,
}

/// Loads every `[[certificate]]`; returns all failures, not just the first.
pub fn load_certificates(configs: &[CertificateConfig]) -> Result<Vec<LoadedCert>, Vec<CertError>> {
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for c in configs {
        match load_one(c) {
            Ok(cert) => loaded.push(cert),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(errors)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Loads one chain + key from PEM files and checks that they belong
/// together; and its `client_ca`, if it has one.
pub fn load_one(c: &CertificateConfig) -> Result<LoadedCert, CertError> {
    let cert_pem = read(&c.cert)?;
    let key_pem = read(&c.key)?;
    let mut loaded = load_pem(c.clone(), &cert_pem, &key_pem)?;
    loaded.client_auth = c
        .client_auth
        .as_ref()
        .map(super::client_auth::load)
        .transpose()?;
    Ok(loaded)
}

/// Like [`load_one`], from bytes already read: the chain and key only (no `client_ca`).
pub fn load_pem(
    c: CertificateConfig,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<LoadedCert, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|source| CertError::BadPem {
            path: c.cert.clone(),
            source,
        })?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate {
            path: c.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => CertError::NoKey {
            path: c.key.clone(),
        },
        source => CertError::BadPem {
            path: c.key.clone(),
            source,
        },
    })?;
    let info = inspect(&chain).map_err(|source| CertError::Unparsable {
        path: c.cert.clone(),
        source,
    })?;
    let key = CertifiedKey::from_der(chain, key, &super::provider()).map_err(|source| {
        CertError::KeyMismatch {
            cert: c.cert.clone(),
            key: c.key.clone(),
            source,
        }
    })?;
    Ok(LoadedCert {
        config: c,
        key: Arc::new(key),
        info,
        client_auth: None,
    })
}

/// What one certificate (a server's leaf, say) says about itself.
pub fn inspect_leaf(der: &CertificateDer<'_>) -> Result<CertInfo, X509ParseError> {
    inspect(std::slice::from_ref(der))
}

fn inspect(chain: &[CertificateDer<'_>]) -> Result<CertInfo, X509ParseError> {
    use x509_parser::prelude::*;

    let mut parsed = Vec::with_capacity(chain.len());
    for der in chain {
        let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(X509ParseError)?;
        parsed.push(cert);
    }
    let leaf = &parsed[0];
    let mut names = Vec::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push(dns.to_ascii_lowercase()),
                GeneralName::IPAddress(bytes) => {
                    if let Ok(b) = <[u8; 4]>::try_from(*bytes) {
                        names.push(std::net::IpAddr::from(b).to_string());
                    } else if let Ok(b) = <[u8; 16]>::try_from(*bytes) {
                        names.push(std::net::IpAddr::from(b).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = leaf
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
        {
            names.push(cn.to_ascii_lowercase());
        }
    }
    let to_system = |t: ASN1Time| {
        let secs = t.timestamp();
        if secs >= 0 {
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            SystemTime::UNIX_EPOCH
        }
    };
    let chain_out_of_order = parsed
        .windows(2)
        .position(|pair| pair[0].issuer() != pair[1].subject());
    Ok(CertInfo {
        names,
        not_before: to_system(leaf.validity().not_before),
        not_after: to_system(leaf.validity().not_after),
        subject: leaf.subject().to_string(),
        chain_len: parsed.len(),
        chain_out_of_order,
    })
}

/// (certificate path, expiry as Unix time) for the expiry gauges.
pub fn expiries(certs: &[LoadedCert]) -> Vec<(String, i64)> {
    certs
        .iter()
        .map(|c| {
            let secs = c
                .info
                .not_after
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            (c.config.cert.display().to_string(), secs as i64)
        })
        .collect()
}

/// Whether certificate name `pattern` (maybe `*.example.com`) covers `host`.
/// A wildcard covers exactly one label, as TLS clients check it.
pub fn name_covers(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(name_covers("*.example.com", "www.example.com"));
        assert!(!name_covers("*.example.com", "a.b.example.com"));
        assert!(!name_covers("*.example.com", "example.com"));
        assert!(name_covers("Example.com", "example.COM"));
    }
}
