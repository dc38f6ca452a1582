//! Mutual TLS: the CA a `[[certificate]]`'s clients are verified against,
//! and what a verified client certificate says, ready to forward.

use std::path::Path;
use std::sync::Arc;

use http::HeaderValue;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;

use super::CertError;
use crate::config::{ClientAuthConfig, ClientAuthMode};

/// A `client_ca` loaded: the verifier handshakes use.
#[derive(Debug, Clone)]
pub struct LoadedClientAuth {
    pub config: ClientAuthConfig,
    /// Chains must end at one of the CA's certificates; the leaf needs the
    /// clientAuth usage if it lists usages. Anonymous clients pass only when optional.
    pub verifier: Arc<dyn ClientCertVerifier>,
}

/// Reads and checks `config.ca`: PEM certificates that are all CAs.
pub fn load(config: &ClientAuthConfig) -> Result<LoadedClientAuth, CertError> {
    let path = &config.ca;
    let pem = std::fs::read(path).map_err(|source| CertError::Read {
        path: path.clone(),
        source,
    })?;
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|source| CertError::BadPem {
            path: path.clone(),
            source,
        })?;
    if cas.is_empty() {
        return Err(CertError::NoCertificate { path: path.clone() });
    }
    let mut roots = RootCertStore::empty();
    for der in cas {
        check_is_ca(path, &der)?;
        roots.add(der).map_err(|source| CertError::BadTrustAnchor {
            path: path.clone(),
            source,
        })?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), super::provider());
    let builder = match config.mode {
        ClientAuthMode::Required => builder,
        ClientAuthMode::Optional => builder.allow_unauthenticated(),
    };
    let verifier = builder
        .build()
        .map_err(|source| CertError::ClientVerifier {
            path: path.clone(),
            source,
        })?;
    Ok(LoadedClientAuth {
        config: config.clone(),
        verifier,
    })
}

/// A client certificate given as `client_ca` by mistake verifies no client:
/// say so at load rather than refuse every client at run time.
fn check_is_ca(path: &Path, der: &CertificateDer<'_>) -> Result<(), CertError> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| CertError::Unparsable {
        path: path.to_owned(),
        source: super::certs::X509ParseError(e),
    })?;
    let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    if is_ca {
        Ok(())
    } else {
        Err(CertError::NotCa {
            path: path.to_owned(),
            subject: cert.subject().to_string(),
        })
    }
}

/// A verified client certificate, as the upstream is told about it: each
/// value formatted once per connection.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// The subject DN, RFC 4514 (`CN=alice,O=Example`, most specific first,
    /// as nginx's `$ssl_client_s_dn`).
    pub subject: Option<HeaderValue>,
    /// The subjectAltNames: `DNS:a.example, email:a@example, URI:spiffe://x, IP:192.0.2.1`.
    pub san: Option<HeaderValue>,
    /// SHA-256 of the certificate's DER, lowercase hex.
    pub fingerprint: HeaderValue,
}

impl ClientCert {
    /// What the leaf `der` says. rustls has verified it; a certificate
    /// x509-parser cannot read still gets its fingerprint.
    pub fn from_der(der: &CertificateDer<'_>) -> ClientCert {
        use x509_parser::prelude::*;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.as_ref());
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let fingerprint = HeaderValue::from_str(&hex).unwrap_or(HeaderValue::from_static(""));
        let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) else {
            return ClientCert {
                subject: None,
                san: None,
                fingerprint,
            };
        };
        let subject = HeaderValue::from_str(&rfc4514(cert.subject())).ok();
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => names.push(format!("DNS:{d}")),
                    GeneralName::RFC822Name(e) => names.push(format!("email:{e}")),
                    GeneralName::URI(u) => names.push(format!("URI:{u}")),
                    GeneralName::IPAddress(bytes) => {
                        if let Ok(b) = <[u8; 4]>::try_from(*bytes) {
                            names.push(format!("IP:{}", std::net::IpAddr::from(b)));
                        } else if let Ok(b) = <[u8; 16]>::try_from(*bytes) {
                            names.push(format!("IP:{}", std::net::IpAddr::from(b)));
                        }
                    }
                    _ => {}
                }
            }
        }
        let san = (!names.is_empty())
            .then(|| header_value(&names.join(", ")))
            .flatten();
        ClientCert {
            subject,
            san,
            fingerprint,
        }
    }
}

/// `s` as a header value: bytes outside printable ASCII as `\xHH`, so a
/// name with a newline or a non-ASCII letter can neither break the header
/// nor be refused.
fn header_value(s: &str) -> Option<HeaderValue> {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    HeaderValue::from_str(&out).ok()
}

/// A distinguished name as RFC 4514 writes it: the last RDN first, `,`
/// between RDNs, `+` inside one, special characters escaped.
fn rfc4514(name: &x509_parser::x509::X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            let attrs: Vec<String> = rdn
                .iter()
                .map(|attr| {
                    let oid = attr.attr_type().to_id_string();
                    let short = match oid.as_str() {
                        "2.5.4.3" => "CN",
                        "2.5.4.6" => "C",
                        "2.5.4.7" => "L",
                        "2.5.4.8" => "ST",
                        "2.5.4.9" => "STREET",
                        "2.5.4.10" => "O",
                        "2.5.4.11" => "OU",
                        "0.9.2342.19200300.100.1.25" => "DC",
                        "0.9.2342.19200300.100.1.1" => "UID",
                        _ => "",
                    };
                    match (short, attr.as_str()) {
                        ("", Ok(v)) => format!("{oid}={}", escape_dn_value(v)),
                        (short, Ok(v)) => format!("{short}={}", escape_dn_value(v)),
                        // Not a string type: the value's bytes in hex (RFC 4514 §2.4).
                        (short, Err(_)) => {
                            let t = if short.is_empty() { &oid } else { short };
                            let hex: String = attr
                                .attr_value()
                                .as_bytes()
                                .iter()
                                .map(|b| format!("{b:02x}"))
                                .collect();
                            format!("{t}=#{hex}")
                        }
                    }
                })
                .collect();
            attrs.join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// RFC 4514 §2.4: `\` before the special characters, and bytes outside
/// printable ASCII as `\HH` (which also keeps the header value valid).
fn escape_dn_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.len().saturating_sub(1);
    for (i, b) in v.bytes().enumerate() {
        let edge = i == 0 && (b == b' ' || b == b'#') || i == last && b == b' ';
        if edge || matches!(b, b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\') {
            out.push('\\');
            out.push(char::from(b));
        } else if (0x20..0x7f).contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_certificates_are_described_for_the_upstream() {
        let ca = crate::tls::dev::generate_ca("client CA").unwrap();
        let client = crate::tls::dev::issue_client(
            &ca,
            "alice, \"admin\" é",
            &["alice.example".into(), "spiffe://example/alice".into()],
        )
        .unwrap();
        let der = CertificateDer::from_pem_slice(client.cert.as_bytes()).unwrap();
        let cert = ClientCert::from_der(&der);
        assert_eq!(
            cert.subject.unwrap(),
            "CN=alice\\, \\\"admin\\\" \\c3\\a9,O=ferry development CA"
        );
        assert_eq!(
            cert.san.unwrap(),
            "DNS:alice.example, URI:spiffe://example/alice"
        );
        assert_eq!(cert.fingerprint.len(), 64);
        assert_eq!(header_value("é\n").unwrap(), "\\xc3\\xa9\\x0a");
    }
}
