//! `[admin]`: loopback only unless the user says the network is trusted;
//! the extra `hosts` it answers to; its bearer token.

use std::path::Path;

use toml::Spanned;

use super::values::parse_listen_addr;
use crate::config::error::Problems;
use crate::config::file::FileAdmin;
use crate::config::{AdminConfig, AdminToken, token_problem};

pub(super) fn build(
    admin: &Spanned<FileAdmin>,
    base: &Path,
    p: &mut Problems<'_>,
) -> Option<AdminConfig> {
    let f = admin.get_ref();
    let Some(addr) = parse_listen_addr(f.addr.get_ref()) else {
        p.push(
            Some(f.addr.span()),
            "admin.addr",
            format!("`{}` is not an address and port", f.addr.get_ref()),
            Some("e.g. \"127.0.0.1:9901\"".into()),
        );
        return None;
    };
    let allow_remote = f.allow_remote.as_ref().is_some_and(|r| *r.get_ref());
    if !addr.ip().is_loopback() && !allow_remote {
        p.push(
            Some(f.addr.span()),
            "admin.addr",
            format!("{addr} is reachable from other machines, and the admin listener can reload ferry"),
            Some("use 127.0.0.1:9901, or set `allow_remote = true` if the network is trusted (a docker-compose network, for a metrics scraper)".into()),
        );
    }
    let mut hosts = Vec::new();
    for (i, h) in f.hosts.iter().flatten().enumerate() {
        let name = h.get_ref().trim().to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if valid {
            hosts.push(name);
        } else {
            p.push(
                Some(h.span()),
                format!("admin.hosts[{i}]"),
                format!("`{}` is not a host name", h.get_ref()),
                Some("a name without port or scheme, as clients write it in the URL: \"ferry\", \"ferry.internal\" (IP addresses need no entry)".into()),
            );
        }
    }
    let token = match (&f.token, &f.token_file) {
        (Some(_), Some(file)) => {
            p.push(
                Some(file.span()),
                "admin.token_file",
                "both `token` and `token_file` are set",
                Some("keep one: `token_file` keeps the secret out of proxy.toml".into()),
            );
            None
        }
        (Some(token), None) => match token_problem(token.get_ref()) {
            Some(problem) => {
                p.push(Some(token.span()), "admin.token", problem, None);
                None
            }
            None => Some(AdminToken::Inline(token.get_ref().clone())),
        },
        (None, Some(file)) => Some(AdminToken::File(base.join(file.get_ref()))),
        (None, None) => None,
    };
    Some(AdminConfig {
        addr,
        allow_remote,
        hosts,
        token,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{MINIMAL, parse_str, problems};
    use crate::config::AdminToken;

    #[test]
    fn hosts_and_tokens() {
        let c = parse_str(&format!(
            "{MINIMAL}\n[admin]\naddr = \"0.0.0.0:9901\"\nallow_remote = true\nhosts = [\"Ferry\"]\ntoken_file = \"admin.token\"\n"
        ))
        .unwrap();
        let admin = c.admin.unwrap();
        assert_eq!(admin.hosts, ["ferry"]);
        assert_eq!(
            admin.token,
            Some(AdminToken::File("/etc/ferry/admin.token".into()))
        );
        let c = parse_str(&format!(
            "{MINIMAL}\n[admin]\naddr = \"127.0.0.1:9901\"\ntoken = \"s3cret-value\"\n"
        ))
        .unwrap();
        let admin = c.admin.unwrap();
        assert_eq!(admin.token, Some(AdminToken::Inline("s3cret-value".into())));
        assert!(!format!("{admin:?}").contains("s3cret"), "{admin:?}");
    }

    #[test]
    fn bad_values() {
        let found = problems(&format!(
            "{MINIMAL}\n[admin]\naddr = \"127.0.0.1:9901\"\nhosts = [\"ferry:9901\"]\ntoken = \"two words\"\n"
        ));
        assert!(
            found
                .iter()
                .any(|p| p.contains("admin.hosts[0]: `ferry:9901` is not a host name")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.contains("admin.token: the token must be visible ASCII")),
            "{found:?}"
        );
        let found = problems(&format!(
            "{MINIMAL}\n[admin]\naddr = \"127.0.0.1:9901\"\ntoken = \"a\"\ntoken_file = \"t\"\n"
        ));
        assert!(
            found
                .iter()
                .any(|p| p.contains("admin.token_file: both `token` and `token_file` are set")),
            "{found:?}"
        );
    }
}
