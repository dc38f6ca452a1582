//! The probe's TLS client: it verifies against a given CA, or only records
//! the chain the server presents (to report its names and expiry).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// Why the probe's TLS client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClientConfigError {
    #[error("cannot read {}: {source}", path.display())]
    ReadCa {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    #[error("{0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
}

/// The certificates the server presented, as the verifier saw them.
pub(super) type Seen = Arc<Mutex<Vec<CertificateDer<'static>>>>;

/// A client config trusting `ca` (or recording the chain without verifying it).
pub(super) fn client_config(
    ca: Option<&Path>,
    seen: Seen,
) -> Result<Arc<rustls::ClientConfig>, ClientConfigError> {
    use rustls::pki_types::pem::PemObject;
    let builder = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()?;
    let inner = match ca {
        Some(path) => {
            let read_error = |source| ClientConfigError::ReadCa {
                path: path.to_owned(),
                source,
            };
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path).map_err(read_error)? {
                roots.add(cert.map_err(read_error)?)?;
            }
            let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                crate::tls::provider(),
            );
            Some(verifier.build()?)
        }
        None => None,
    };
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recorder { inner, seen }))
        .with_no_client_auth();
    // The probe speaks HTTP/1.1 (WebSocket handshakes included).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Keeps the presented chain; verifies it when a CA was given.
#[derive(Debug)]
struct Recorder {
    inner: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    seen: Seen,
}

impl rustls::client::danger::ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(end_entity.clone().into_owned());
        match &self.inner {
            Some(v) => v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now),
            None => Ok(rustls::client::danger::ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &crate::tls::provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &crate::tls::provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        crate::tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
