//! proxy.toml as the user writes it: serde types with spans, no interpretation.
//!
//! `validate/` turns these into a [`Config`](super::Config). The key names
//! here are ferry's public interface; `schema.rs` reads them off these types
//! so that every unknown key can be reported at once, with a suggestion.
//! Field order is the order help text lists a table's keys in.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub admin: Option<Spanned<FileAdmin>>,
    #[serde(default)]
    pub server: Option<Spanned<FileServer>>,
    #[serde(default)]
    pub listen: Vec<Spanned<FileListen>>,
    #[serde(default)]
    pub certificate: Vec<Spanned<FileCertificate>>,
    #[serde(default)]
    pub upstream: BTreeMap<Spanned<String>, Spanned<FileUpstream>>,
    #[serde(default)]
    pub route: Vec<Spanned<FileRoute>>,
}

/// `[admin]`: the metrics / health / reload listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAdmin {
    pub addr: Spanned<String>,
    pub allow_remote: Option<Spanned<bool>>,
    pub hosts: Option<Vec<Spanned<String>>>,
    pub token: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
}

/// `server.access_log = { ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAccessLog {
    pub format: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub query: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    pub shutdown_grace: Option<Spanned<String>>,
    pub handshake_timeout: Option<Spanned<String>>,
    pub header_read_timeout: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub max_header_size: Option<Spanned<FileSize>>,
    pub forwarded_header: Option<Spanned<bool>>,
    pub max_connections: Option<Spanned<i64>>,
    pub workers: Option<Spanned<i64>>,
    pub access_log: Option<Spanned<FileAccessLog>>,
    pub pid_file: Option<Spanned<String>>,
    pub tls_min_version: Option<Spanned<String>>,
    pub hsts: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListen {
    pub addr: Spanned<String>,
    #[serde(default)]
    pub tls: Option<Spanned<bool>>,
    #[serde(default)]
    pub redirect_https: Option<Spanned<bool>>,
    #[serde(default)]
    pub http2: Option<Spanned<bool>>,
    #[serde(default)]
    pub websocket_over_http2: Option<Spanned<bool>>,
    #[serde(default)]
    pub proxy_protocol: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCertificate {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
    pub client_ca: Option<Spanned<String>>,
    pub client_auth: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstream {
    pub servers: Spanned<Vec<Spanned<FileServerEntry>>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub read_timeout: Option<Spanned<String>>,
    pub pool_idle_timeout: Option<Spanned<String>>,
    pub pool_max_idle: Option<Spanned<i64>>,
    pub balance: Option<Spanned<String>>,
    pub retries: Option<Spanned<i64>>,
    pub max_fails: Option<Spanned<i64>>,
    pub fail_timeout: Option<Spanned<String>>,
    pub resolve_every: Option<Spanned<String>>,
    pub health: Option<Spanned<FileHealth>>,
    pub send_proxy_protocol: Option<Spanned<String>>,
}

/// `health = { path, interval, timeout, healthy, unhealthy }`: active health checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHealth {
    pub path: Spanned<String>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub healthy: Option<Spanned<i64>>,
    pub unhealthy: Option<Spanned<i64>>,
}

/// `"host:port"` or `{ addr = "host:port", weight = 3 }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum FileServerEntry {
    Addr(String),
    Weighted { addr: String, weight: i64 },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    pub name: Option<Spanned<String>>,
    pub hosts: Option<Spanned<OneOrMany>>,
    pub path_prefix: Option<Spanned<OneOrMany>>,
    pub path_exact: Option<Spanned<OneOrMany>>,
    pub path_regex: Option<Spanned<String>>,
    pub upstream: Option<Spanned<String>>,
    #[serde(rename = "static")]
    pub static_files: Option<Spanned<FileStatic>>,
    pub redirect: Option<Spanned<FileRedirect>>,
    pub compress: Option<Spanned<bool>>,
    pub read_timeout: Option<Spanned<String>>,
    pub max_body_size: Option<Spanned<FileSize>>,
    pub request_headers: Option<Spanned<FileHeaderOps>>,
    pub response_headers: Option<Spanned<FileHeaderOps>>,
    pub websocket: Option<Spanned<FileWebSocket>>,
    pub hsts: Option<Spanned<String>>,
}

/// `websocket = { ... }` on a route.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWebSocket {
    pub idle_timeout: Option<Spanned<String>>,
    pub max_lifetime: Option<Spanned<String>>,
    pub ping_interval: Option<Spanned<String>>,
    pub allowed_origins: Option<Vec<Spanned<String>>>,
    pub require_origin: Option<Spanned<bool>>,
}

/// `static = { root, spa, ... }` on a route: files served from a directory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStatic {
    pub root: Spanned<String>,
    pub spa: Option<Spanned<bool>>,
    pub index: Option<Spanned<String>>,
    pub immutable: Option<Spanned<String>>,
    pub precompressed: Option<Spanned<Vec<Spanned<String>>>>,
    pub hidden: Option<Spanned<bool>>,
    pub follow_symlinks: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRedirect {
    pub to: Spanned<String>,
    pub status: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHeaderOps {
    #[serde(default)]
    pub set: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    pub add: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    pub remove: Vec<Spanned<String>>,
}

/// A size: a number of bytes, or a string like `"10MB"`, `"512KiB"`, `"1GB"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum FileSize {
    Bytes(i64),
    Text(String),
}

/// A string or a list of strings (`path_prefix = "/"` or `["/api", "/auth"]`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}
