//! A CA made for one test: leaf certificates it signs, and client configs that trust only it.

use std::path::PathBuf;
use std::sync::Arc;

use ferry::tls::dev::{PemPair, generate_ca, issue_client, issue_leaf};

/// A CA made for one test, and leaf certificates it signs, written to a temp dir.
pub struct TestCa {
    pub ca: PemPair,
    pub dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> TestCa {
        TestCa {
            ca: generate_ca("ferry test CA").unwrap(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Writes a leaf for `names` (chain: leaf + CA); returns (cert path, key path).
    pub fn leaf(&self, file_stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let leaf = issue_leaf(&self.ca, &names).unwrap();
        let cert = self.dir.path().join(format!("{file_stem}.pem"));
        let key = self.dir.path().join(format!("{file_stem}-key.pem"));
        std::fs::write(&cert, format!("{}{}", leaf.cert, self.ca.cert)).unwrap();
        std::fs::write(&key, leaf.key).unwrap();
        (cert, key)
    }

    pub fn ca_path(&self) -> PathBuf {
        let path = self.dir.path().join("ca.pem");
        std::fs::write(&path, &self.ca.cert).unwrap();
        path
    }

    /// A client config trusting only this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        self.client_config_as(alpn, None)
    }

    /// [`client_config`](Self::client_config) presenting `identity` (a
    /// client certificate and its key, from [`client_identity`]) when asked.
    pub fn client_config_as(
        &self,
        alpn: &[&[u8]],
        identity: Option<&PemPair>,
    ) -> Arc<rustls::ClientConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca.cert.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(ferry::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match identity {
            Some(id) => {
                let chain = CertificateDer::pem_slice_iter(id.cert.as_bytes())
                    .map(Result::unwrap)
                    .collect();
                let key = PrivateKeyDer::from_pem_slice(id.key.as_bytes()).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// A CA for client certificates (mutual TLS), its PEM written to `dir/{stem}.pem`.
pub struct ClientCa {
    pub ca: PemPair,
    pub path: PathBuf,
}

impl ClientCa {
    pub fn new(dir: &std::path::Path, stem: &str) -> ClientCa {
        let ca = generate_ca(&format!("{stem} client CA")).unwrap();
        let path = dir.join(format!("{stem}.pem"));
        std::fs::write(&path, &ca.cert).unwrap();
        ClientCa { ca, path }
    }

    /// A client certificate `CN=common_name` with `names` as subjectAltNames.
    pub fn client_identity(&self, common_name: &str, names: &[&str]) -> PemPair {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        issue_client(&self.ca, common_name, &names).unwrap()
    }
}
