//! Unknown keys: all of them at once, each with its key path and a suggestion.
//!
//! serde stops at the first unknown field; walking the parsed document
//! against the shape of the `File*` types (`schema.rs`) reports every one
//! before types are checked.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::values::join;
use crate::config::error::{Problems, did_you_mean};
use crate::config::schema::{self, Shape};

/// Reports every key of `doc` that proxy.toml does not have.
pub(super) fn check(doc: &DeTable<'_>, problems: &mut Problems<'_>) {
    check_keys(doc, schema::file_config(), "", problems);
}

fn check_keys(
    table: &DeTable<'_>,
    fields: &[(&str, Shape)],
    path: &str,
    problems: &mut Problems<'_>,
) {
    for (key, value) in table.iter() {
        let key_str: &str = key.get_ref();
        let key_path = join(path, key_str);
        match fields.iter().find(|(name, _)| *name == key_str) {
            None => {
                let help = did_you_mean(key_str, fields.iter().map(|(n, _)| *n))
                    .map(|s| format!("did you mean `{s}`?"))
                    .or_else(|| {
                        let names: Vec<_> = fields.iter().map(|(n, _)| format!("`{n}`")).collect();
                        Some(format!("known keys here: {}", names.join(", ")))
                    });
                problems.push(
                    Some(key.span()),
                    key_path,
                    format!("unknown key `{key_str}`"),
                    help,
                );
            }
            Some((_, shape)) => check_value(value, shape, &key_path, problems),
        }
    }
}

fn check_value(
    value: &Spanned<DeValue<'_>>,
    shape: &Shape,
    path: &str,
    problems: &mut Problems<'_>,
) {
    match (shape, value.get_ref()) {
        (Shape::Table(fields), DeValue::Table(t)) => check_keys(t, fields, path, problems),
        (Shape::Array(item), DeValue::Array(items)) => {
            for (i, value) in items.iter().enumerate() {
                check_value(value, item, &format!("{path}[{i}]"), problems);
            }
        }
        (Shape::Map(item), DeValue::Table(t)) => {
            for (name, value) in t.iter() {
                check_value(value, item, &join(path, name.get_ref()), problems);
            }
        }
        // Wrong types are reported by serde with a precise message.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ALTERNATIVE_KEYS, EVERY_KEY, MINIMAL, problems};
    use super::*;

    #[test]
    fn the_scenario_typo_style_is_caught() {
        // The nginx fix in the incident used a non-existent directive; ferry names the fix.
        let got = problems(&MINIMAL.replace(
            "upstream = \"backend\"",
            "upstream = \"backend\"\nproxy_cache_off = true",
        ));
        assert_eq!(got.len(), 1);
        assert!(
            got[0].contains("route[0].proxy_cache_off: unknown key"),
            "{got:#?}"
        );
        assert!(got[0].contains("known keys here"), "{got:#?}");
    }

    #[test]
    fn an_unknown_key_in_every_kind_of_table_is_reported() {
        // One typo per kind of table: top level, tables, inline tables, arrays
        // of tables and user-named tables, each with its key path and suggestion.
        let src = r#"
sever = 1

[admin]
addr = "127.0.0.1:9901"
adr = 1

[server]
shutdown = "1s"
access_log = { formt = "json" }

[[listen]]
addr = "127.0.0.1:8080"
tsl = true

[[certificate]]
cert = "c.pem"
key = "k.pem"
certs = 1

[upstream.backend]
servers = ["backend:8000"]
retrys = 1
health = { path = "/health", intervl = "1s" }

[[route]]
path_prefix = "/"
upstream = "backend"
redirect = { to = "https://x", stauts = 301 }
request_headers = { sett = {} }
response_headers = { remov = [] }
websocket = { ping_intervall = "1s" }
proxy_cache_off = true
"#;
        let got = problems(src);
        let want = [
            "2:1: sever: unknown key `sever` | did you mean `server`?",
            "6:1: admin.adr: unknown key `adr` | did you mean `addr`?",
            "9:1: server.shutdown: unknown key `shutdown` | known keys here: `trusted_proxies`, `shutdown_grace`, `handshake_timeout`, `header_read_timeout`, `idle_timeout`, `max_header_size`, `forwarded_header`, `max_connections`, `workers`, `access_log`, `pid_file`, `tls_min_version`, `hsts`",
            "10:16: server.access_log.formt: unknown key `formt` | did you mean `format`?",
            "14:1: listen[0].tsl: unknown key `tsl` | known keys here: `addr`, `tls`, `redirect_https`, `http2`, `websocket_over_http2`, `proxy_protocol`",
            "19:1: certificate[0].certs: unknown key `certs` | did you mean `cert`?",
            "23:1: upstream.backend.retrys: unknown key `retrys` | did you mean `retries`?",
            "24:30: upstream.backend.health.intervl: unknown key `intervl` | did you mean `interval`?",
            "29:32: route[0].redirect.stauts: unknown key `stauts` | did you mean `status`?",
            "30:21: route[0].request_headers.sett: unknown key `sett` | did you mean `set`?",
            "31:22: route[0].response_headers.remov: unknown key `remov` | did you mean `remove`?",
            "32:15: route[0].websocket.ping_intervall: unknown key `ping_intervall` | did you mean `ping_interval`?",
            "33:1: route[0].proxy_cache_off: unknown key `proxy_cache_off` | known keys here: `name`, `hosts`, `path_prefix`, `path_exact`, `path_regex`, `upstream`, `static`, `redirect`, `compress`, `read_timeout`, `max_body_size`, `request_headers`, `response_headers`, `websocket`, `hsts`",
        ];
        assert_eq!(got, want);
        let top = problems(&format!("zzzzzzzz = 1\n{MINIMAL}"));
        assert_eq!(
            top,
            [
                "1:1: zzzzzzzz: unknown key `zzzzzzzz` | known keys here: `admin`, `server`, `listen`, `certificate`, `upstream`, `route`"
            ]
        );
    }

    #[test]
    fn the_every_key_file_uses_every_key_the_types_have() {
        // So that a new field is also exercised through serde and validation.
        let (doc, errors) = DeTable::parse_recoverable(EVERY_KEY);
        assert!(errors.is_empty(), "{errors:?}");
        let (alternatives, errors) = DeTable::parse_recoverable(ALTERNATIVE_KEYS);
        assert!(errors.is_empty(), "{errors:?}");
        let mut missing = Vec::new();
        let docs = [doc.get_ref(), alternatives.get_ref()];
        missing_keys(&docs, schema::file_config(), "", &mut missing);
        assert!(missing.is_empty(), "EVERY_KEY does not use {missing:?}");
    }

    /// The keys of `fields` that none of `tables` has, recursively.
    fn missing_keys(
        tables: &[&DeTable<'_>],
        fields: &[(&str, Shape)],
        path: &str,
        missing: &mut Vec<String>,
    ) {
        for (key, shape) in fields {
            let path = join(path, key);
            let mut values: Vec<&DeValue<'_>> = tables
                .iter()
                .filter_map(|t| t.get(*key))
                .map(Spanned::get_ref)
                .collect();
            if values.is_empty() {
                missing.push(path);
                continue;
            }
            let mut shape = shape;
            loop {
                match shape {
                    Shape::Leaf => break,
                    Shape::Array(item) => {
                        values = values
                            .iter()
                            .filter_map(|v| v.as_array())
                            .flatten()
                            .map(Spanned::get_ref)
                            .collect();
                        shape = item;
                    }
                    Shape::Map(item) => {
                        values = values
                            .iter()
                            .filter_map(|v| v.as_table())
                            .flat_map(|t| t.values())
                            .map(Spanned::get_ref)
                            .collect();
                        shape = item;
                    }
                    Shape::Table(fields) => {
                        let tables: Vec<_> = values.iter().filter_map(|v| v.as_table()).collect();
                        missing_keys(&tables, fields, &path, missing);
                        break;
                    }
                }
            }
        }
    }
}
