//! A local certificate authority and leaf certificates for development.
//!
//! Used by the embedded default configuration (a certificate for localhost on
//! first run) and by tests. Keys are written with mode 0600 and never logged.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// Names every development leaf covers.
pub const LOCAL_NAMES: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// A PEM certificate and its PEM private key.
#[derive(Clone)]
pub struct PemPair {
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for PemPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PemPair")
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DevCertError {
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A new CA certificate (10 years, ECDSA P-256) named `common_name`.
pub fn generate_ca(common_name: &str) -> Result<PemPair, rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "ferry development CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(3650);
    let cert = params.self_signed(&key)?;
    Ok(PemPair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A server leaf for `names` (DNS names or IP addresses) signed by `ca`:
/// subjectAltName, serverAuth EKU, authority key identifier, 1 year validity.
pub fn issue_leaf(ca: &PemPair, names: &[String]) -> Result<PemPair, rcgen::Error> {
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().map_or("localhost", String::as_str),
    );
    params.distinguished_name = dn;
    sign_leaf(params, ExtendedKeyUsagePurpose::ServerAuth, &key, &issuer)
}

/// A client certificate (for mutual TLS) signed by `ca`: subject `CN=common_name`
/// under the CA's organisation, clientAuth EKU, 1 year validity. `names` become
/// subjectAltNames: `a@b` an email, `x://y` a URI, an address an IP, else a DNS name.
pub fn issue_client(
    ca: &PemPair,
    common_name: &str,
    names: &[String],
) -> Result<PemPair, rcgen::Error> {
    use rcgen::SanType;
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    for name in names {
        let san = if let Ok(ip) = name.parse::<std::net::IpAddr>() {
            SanType::IpAddress(ip)
        } else if name.contains("://") {
            SanType::URI(name.as_str().try_into()?)
        } else if name.contains('@') {
            SanType::Rfc822Name(name.as_str().try_into()?)
        } else {
            SanType::DnsName(name.as_str().try_into()?)
        };
        params.subject_alt_names.push(san);
    }
    let mut dn = DistinguishedName::new();
    // In the order certificates list them: RFC 4514 prints it reversed, CN first.
    dn.push(DnType::OrganizationName, "ferry development CA");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    sign_leaf(params, ExtendedKeyUsagePurpose::ClientAuth, &key, &issuer)
}

/// Signs a leaf for one purpose: digital signature only, an Authority Key
/// Identifier (strict verifiers want it) and a year's validity from an hour
/// ago (so a slightly slow clock accepts it).
fn sign_leaf(
    mut params: CertificateParams,
    purpose: ExtendedKeyUsagePurpose,
    key: &KeyPair,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<PemPair, rcgen::Error> {
    params.extended_key_usages = vec![purpose];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(365);
    let cert = params.signed_by(key, issuer)?;
    Ok(PemPair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Paths of the development CA and leaf in a directory.
#[derive(Debug, Clone)]
pub struct DevCerts {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Whether this call created the CA (so the user should be told how to trust it).
    pub created_ca: bool,
    /// Whether this call wrote a new leaf.
    pub created_leaf: bool,
}

impl DevCerts {
    pub fn in_dir(dir: &Path) -> DevCerts {
        DevCerts {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca-key.pem"),
            cert: dir.join("localhost.pem"),
            key: dir.join("localhost-key.pem"),
            created_ca: false,
            created_leaf: false,
        }
    }
}

/// Makes sure `dir` holds a CA and a leaf for [`LOCAL_NAMES`] plus `extra_names`.
/// An existing CA is reused; the leaf is reissued when `reissue_leaf`, or when
/// it is missing, unreadable, or expires within 30 days.
pub fn ensure(
    dir: &Path,
    extra_names: &[String],
    reissue_leaf: bool,
) -> Result<DevCerts, DevCertError> {
    let mut paths = DevCerts::in_dir(dir);
    std::fs::create_dir_all(dir).map_err(|source| DevCertError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let ca = if paths.ca_cert.exists() && paths.ca_key.exists() {
        PemPair {
            cert: read(&paths.ca_cert)?,
            key: read(&paths.ca_key)?,
        }
    } else {
        let ca = generate_ca("ferry local development CA")?;
        write(&paths.ca_key, ca.key.as_bytes(), true)?;
        write(&paths.ca_cert, ca.cert.as_bytes(), false)?;
        paths.created_ca = true;
        ca
    };
    if reissue_leaf || paths.created_ca || !leaf_is_usable(&paths) {
        let mut names: Vec<String> = LOCAL_NAMES.iter().map(|s| s.to_string()).collect();
        for n in extra_names {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        let leaf = issue_leaf(&ca, &names)?;
        write(&paths.key, leaf.key.as_bytes(), true)?;
        // The served chain: leaf then CA, so clients that were given only the CA can build it.
        write(
            &paths.cert,
            format!("{}{}", leaf.cert, ca.cert).as_bytes(),
            false,
        )?;
        paths.created_leaf = true;
    }
    Ok(paths)
}

fn leaf_is_usable(paths: &DevCerts) -> bool {
    let config = crate::config::CertificateConfig {
        cert: paths.cert.clone(),
        key: paths.key.clone(),
        client_auth: None,
    };
    match crate::tls::certs::load_one(&config) {
        Ok(leaf) => leaf.info.remaining() > std::time::Duration::from_secs(30 * 86_400),
        Err(_) => false,
    }
}

fn read(path: &Path) -> Result<String, DevCertError> {
    std::fs::read_to_string(path).map_err(|source| DevCertError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Writes atomically (temp file + rename); private keys get mode 0600 from creation.
fn write(path: &Path, bytes: &[u8], private: bool) -> Result<(), DevCertError> {
    let err = |source| DevCertError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    let mut f = opts.open(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CertificateConfig;

    #[test]
    fn leaf_loads_and_names_are_right() {
        let ca = generate_ca("test CA").unwrap();
        let leaf = issue_leaf(
            &ca,
            &["localhost".into(), "127.0.0.1".into(), "app.test".into()],
        )
        .unwrap();
        let cfg = CertificateConfig {
            cert: "leaf.pem".into(),
            key: "leaf-key.pem".into(),
            client_auth: None,
        };
        let loaded =
            crate::tls::certs::load_pem(cfg, leaf.cert.as_bytes(), leaf.key.as_bytes()).unwrap();
        assert_eq!(loaded.info.names, ["localhost", "127.0.0.1", "app.test"]);
        assert!(!loaded.info.is_expired());
        assert!(loaded.info.remaining() > std::time::Duration::from_secs(300 * 86_400));
        assert!(format!("{leaf:?}").contains("redacted"));
    }

    #[test]
    fn mismatched_key_is_reported() {
        let ca = generate_ca("test CA").unwrap();
        let a = issue_leaf(&ca, &["a.test".into()]).unwrap();
        let b = issue_leaf(&ca, &["b.test".into()]).unwrap();
        let cfg = CertificateConfig {
            cert: "a.pem".into(),
            key: "b-key.pem".into(),
            client_auth: None,
        };
        let err =
            crate::tls::certs::load_pem(cfg, a.cert.as_bytes(), b.key.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn ensure_reuses_the_ca_and_protects_keys() {
        let dir = std::env::temp_dir().join(format!("ferry-dev-{}", std::process::id()));
        let first = ensure(&dir, &[], false).unwrap();
        assert!(first.created_ca && first.created_leaf);
        let ca_before = std::fs::read(&first.ca_cert).unwrap();
        let second = ensure(&dir, &[], false).unwrap();
        assert!(!second.created_ca && !second.created_leaf);
        let third = ensure(&dir, &["app.localhost".into()], true).unwrap();
        assert!(!third.created_ca && third.created_leaf);
        assert_eq!(std::fs::read(&third.ca_cert).unwrap(), ca_before);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&third.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
