//! `[[certificate]]` blocks: paths resolved against the config file's directory.

use std::path::Path;

use toml::Spanned;

use crate::config::error::Problems;
use crate::config::file::{FileCertificate, FileListen};
use crate::config::{CertificateConfig, ListenerConfig, ListenerKind};

/// Every certificate, in file order. The files are read later, by `tls`:
/// validation stays pure. A TLS listener without any certificate is a problem.
pub(super) fn build(
    file: &[Spanned<FileCertificate>],
    file_listen: &[Spanned<FileListen>],
    listeners: &[ListenerConfig],
    base: &Path,
    p: &mut Problems<'_>,
) -> Vec<CertificateConfig> {
    let certificates: Vec<_> = file
        .iter()
        .enumerate()
        .map(|(i, c)| CertificateConfig {
            cert: base.join(c.get_ref().cert.get_ref()),
            key: base.join(c.get_ref().key.get_ref()),
            client_auth: super::tls::client_auth(p, c.get_ref(), i, base),
        })
        .collect();
    if certificates.is_empty() && listeners.iter().any(|l| l.kind == ListenerKind::Tls) {
        let span = file_listen
            .iter()
            .find(|l| l.get_ref().tls.as_ref().is_some_and(|t| *t.get_ref()))
            .map(|l| l.span());
        p.push(
            span,
            "certificate",
            "a listener has `tls = true` but no [[certificate]] is configured",
            Some("add\n        [[certificate]]\n        cert = \"/etc/ferry/tls/fullchain.pem\"\n        key = \"/etc/ferry/tls/privkey.pem\"".into()),
        );
    }
    certificates
}

#[cfg(test)]
mod tests {
    use super::super::testing::assert_semantic;

    #[test]
    fn semantic_checks() {
        assert_semantic(&[(
            "addr = \"127.0.0.1:8080\"",
            "addr = \"127.0.0.1:8080\"\ntls = true",
            "no [[certificate]]",
        )]);
    }
}
