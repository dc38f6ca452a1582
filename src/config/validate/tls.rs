//! TLS policy values: `server.tls_min_version`, `hsts` (on `[server]` and
//! routes) and mutual TLS (`client_ca`, `client_auth` on a `[[certificate]]`).
//! Files are not read here (validation stays pure): the CA is loaded by `tls`.

use std::path::Path;

use http::HeaderValue;
use toml::Spanned;

use crate::config::error::Problems;
use crate::config::file::FileCertificate;
use crate::config::{ClientAuthConfig, ClientAuthMode, TlsVersion};

/// `server.tls_min_version`: `"1.2"` or `"1.3"`.
pub(super) fn min_version(p: &mut Problems<'_>, v: &Spanned<String>) -> Option<TlsVersion> {
    match v.get_ref().trim() {
        "1.2" => Some(TlsVersion::Tls12),
        "1.3" => Some(TlsVersion::Tls13),
        other => {
            p.push(
                Some(v.span()),
                "server.tls_min_version",
                format!("`{other}` is not a TLS version ferry offers"),
                Some("use \"1.2\" (the default: TLS 1.2 and 1.3) or \"1.3\" (TLS 1.3 only); older versions are never offered".into()),
            );
            None
        }
    }
}

/// A `Strict-Transport-Security` value (RFC 6797 §6.1): `max-age=N` first,
/// then `includeSubDomains` and `preload`, each at most once. Anything else
/// is refused: browsers ignore unknown directives, so a typo such as
/// `includeSubdomain` would silently leave the subdomains unprotected.
pub(super) fn hsts(p: &mut Problems<'_>, v: &Spanned<String>, key: &str) -> Option<HeaderValue> {
    match check_hsts(v.get_ref()) {
        Ok(()) => match HeaderValue::from_str(v.get_ref().trim()) {
            Ok(value) => Some(value),
            Err(_) => {
                p.push(
                    Some(v.span()),
                    key,
                    "header values cannot contain control characters or newlines",
                    None,
                );
                None
            }
        },
        Err(why) => {
            p.push(
                Some(v.span()),
                key,
                why,
                Some("e.g. \"max-age=63072000; includeSubDomains\" (two years; add `; preload` only once the domain is submitted to hstspreload.org)".into()),
            );
            None
        }
    }
}

fn check_hsts(value: &str) -> Result<(), String> {
    let mut directives = value.split(';').map(str::trim).filter(|d| !d.is_empty());
    let first = directives.next().unwrap_or("");
    let age = first
        .split_once('=')
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("max-age"))
        .map(|(_, n)| n.trim().trim_matches('"'));
    if !age.is_some_and(|n| !n.is_empty() && n.len() <= 19 && n.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "`{value}` must start with `max-age=` and a number of seconds"
        ));
    }
    let (mut subdomains, mut preload) = (false, false);
    for d in directives {
        let seen = if d.eq_ignore_ascii_case("includeSubDomains") {
            &mut subdomains
        } else if d.eq_ignore_ascii_case("preload") {
            &mut preload
        } else {
            return Err(format!(
                "unknown directive `{d}` (the directives are `max-age=N`, `includeSubDomains` and `preload`)"
            ));
        };
        if std::mem::replace(seen, true) {
            return Err(format!("`{d}` is given twice"));
        }
    }
    Ok(())
}

/// `client_ca` and `client_auth` of certificate `i`. `client_auth` defaults
/// to `"required"` when a CA is given, and needs one.
pub(super) fn client_auth(
    p: &mut Problems<'_>,
    c: &FileCertificate,
    i: usize,
    base: &Path,
) -> Option<ClientAuthConfig> {
    let key = format!("certificate[{i}]");
    let mode = match &c.client_auth {
        None => Some(ClientAuthMode::Required),
        Some(v) => match v.get_ref().trim() {
            "required" => Some(ClientAuthMode::Required),
            "optional" => Some(ClientAuthMode::Optional),
            other => {
                p.push(
                    Some(v.span()),
                    format!("{key}.client_auth"),
                    format!("unknown client_auth `{other}`"),
                    Some("use \"required\" (no valid client certificate, no connection) or \"optional\" (asked for; checked when given); remove `client_ca` to not ask".into()),
                );
                None
            }
        },
    };
    let Some(ca) = &c.client_ca else {
        if let Some(v) = &c.client_auth {
            p.push(
                Some(v.span()),
                format!("{key}.client_auth"),
                "`client_auth` needs a `client_ca` to verify client certificates against",
                Some("add `client_ca = \"/etc/ferry/tls/client-ca.pem\"` (the CA that issues your client certificates)".into()),
            );
        }
        return None;
    };
    if ca.get_ref().trim().is_empty() {
        p.push(
            Some(ca.span()),
            format!("{key}.client_ca"),
            "the path is empty",
            Some("the PEM file of the CA that issues your client certificates".into()),
        );
        return None;
    }
    Some(ClientAuthConfig {
        ca: base.join(ca.get_ref()),
        mode: mode?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{MINIMAL, assert_semantic, parse_str, problems};
    use super::check_hsts;
    use crate::config::{ClientAuthMode, TlsVersion};

    #[test]
    fn hsts_values() {
        for good in [
            "max-age=63072000; includeSubDomains",
            "max-age=0",
            "max-age=\"31536000\"; includeSubDomains; preload",
            "max-age=31536000 ;includesubdomains;",
        ] {
            assert_eq!(check_hsts(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "includeSubDomains; max-age=1",
            "max-age=",
            "max-age=-1",
            "max-age=1.5",
            "max-age=1; includeSubdomain",
            "max-age=1; preload; preload",
            "max-age=99999999999999999999",
        ] {
            assert!(check_hsts(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn semantic_checks() {
        let server = |keys: &str| format!("[server]\n{keys}\n{MINIMAL}");
        let got = problems(&server("hsts = \"max-age=1; includeSubdomain\"")).join("\n");
        assert!(
            got.contains("2:8: server.hsts: unknown directive `includeSubdomain`"),
            "{got}"
        );
        let got = problems(&server("tls_min_version = \"1.1\"")).join("\n");
        assert!(
            got.contains("2:19: server.tls_min_version: `1.1` is not a TLS version"),
            "{got}"
        );
        assert_semantic(&[(
            "upstream = \"backend\"",
            "upstream = \"backend\"\nhsts = \"1 year\"",
            "route[0].hsts: `1 year` must start with `max-age=`",
        )]);
        let cert = |keys: &str| {
            format!("{MINIMAL}\n[[certificate]]\ncert = \"c.pem\"\nkey = \"k.pem\"\n{keys}\n")
        };
        let got = problems(&cert("client_auth = \"optional\"")).join("\n");
        assert!(
            got.contains("certificate[0].client_auth: `client_auth` needs a `client_ca`"),
            "{got}"
        );
        let got = problems(&cert("client_ca = \"ca.pem\"\nclient_auth = \"yes\"")).join("\n");
        assert!(
            got.contains("certificate[0].client_auth: unknown client_auth `yes`"),
            "{got}"
        );

        let c = parse_str(&format!(
            "[server]\ntls_min_version = \"1.3\"\nhsts = \"max-age=10\"\n{}",
            cert("client_ca = \"ca.pem\"")
        ))
        .unwrap();
        assert_eq!(c.server.tls_min_version, TlsVersion::Tls13);
        assert_eq!(c.server.hsts.as_ref().unwrap(), "max-age=10");
        let auth = c.certificates[0].client_auth.as_ref().unwrap();
        assert_eq!(auth.mode, ClientAuthMode::Required);
        assert_eq!(auth.ca, std::path::Path::new("/etc/ferry/ca.pem"));
    }
}
