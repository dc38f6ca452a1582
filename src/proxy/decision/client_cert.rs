//! Mutual TLS in the request decision: which hosts a connection may ask for
//! (421 otherwise), and the headers that tell the upstream who the client is.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::ClientAuthMode;
use crate::tls::ClientAuthScope;

/// `SUCCESS` (a verified certificate) or `NONE` (optional, none given), as
/// nginx's `$ssl_client_verify`; set only when the connection's name has client auth.
pub const X_CLIENT_VERIFY: HeaderName = HeaderName::from_static("x-client-verify");
/// The verified certificate's subject DN (RFC 4514).
pub const X_CLIENT_CERT_SUBJECT: HeaderName = HeaderName::from_static("x-client-cert-subject");
/// Its subjectAltNames, `DNS:…, email:…, URI:…, IP:…`.
pub const X_CLIENT_CERT_SAN: HeaderName = HeaderName::from_static("x-client-cert-san");
/// SHA-256 of its DER, lowercase hex.
pub const X_CLIENT_CERT_FINGERPRINT: HeaderName =
    HeaderName::from_static("x-client-cert-fingerprint");

/// Whether a request for `host` came on a connection whose handshake had
/// another client-certificate policy than `host`'s name has (answered 421).
pub(super) fn misdirected(scope: Option<&ClientAuthScope>, host: &str) -> bool {
    scope.is_some_and(|scope| !scope.admits(host))
}

/// The client-certificate headers: whatever the client sent under these
/// names is removed (always, on every listener: only ferry may say who a
/// client is), then ferry's own are set when the connection's name has client auth.
pub(super) fn set_headers(h: &mut HeaderMap, scope: Option<&ClientAuthScope>) {
    const ALL: [HeaderName; 4] = [
        X_CLIENT_VERIFY,
        X_CLIENT_CERT_SUBJECT,
        X_CLIENT_CERT_SAN,
        X_CLIENT_CERT_FINGERPRINT,
    ];
    // Fast path: one pass over the names (clients almost never send these),
    // where four removals would hash four names on every request.
    if h.keys().any(|k| ALL.contains(k)) {
        for name in ALL {
            h.remove(name);
        }
    }
    let Some(scope) = scope else { return };
    if scope.mode().is_none() {
        return;
    }
    match &scope.cert {
        Some(cert) => {
            h.insert(X_CLIENT_VERIFY, HeaderValue::from_static("SUCCESS"));
            if let Some(subject) = &cert.subject {
                h.insert(X_CLIENT_CERT_SUBJECT, subject.clone());
            }
            if let Some(san) = &cert.san {
                h.insert(X_CLIENT_CERT_SAN, san.clone());
            }
            h.insert(X_CLIENT_CERT_FINGERPRINT, cert.fingerprint.clone());
        }
        None => {
            // Only an optional policy lets a client in without a certificate.
            debug_assert_eq!(scope.mode(), Some(ClientAuthMode::Optional));
            h.insert(X_CLIENT_VERIFY, HeaderValue::from_static("NONE"));
        }
    }
}
