//! [`ProxyToml`]: builds the config a test starts ferry with, so tests need
//! not copy `[[listen]]`, `[[certificate]]`, `[upstream.x]` and `[[route]]`
//! blocks. The output is plain TOML, as a person would write it, so a
//! failing test's config reads as a file.

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::Path;

/// A ferry config, one table at a time. Listeners bind 127.0.0.1 port 0 (or
/// an address the test chose); keys passed as `keys` go in verbatim.
///
/// Tables come out in a fixed order, whatever the order of the calls:
/// `[server]`, `[admin]`, `[[listen]]`, `[[certificate]]`, `[upstream.*]`,
/// `[[route]]`, then [`raw`](Self::raw) text. Listeners, certificates and
/// routes keep the order they were added in (route order is match order).
///
/// ```text
/// ProxyToml::new()
///     .tls_listener()
///     .upstream("backend", &[backend.addr])
///     .route("all", "/", "backend")
///     .build()
/// ```
#[derive(Debug, Clone, Default)]
pub struct ProxyToml {
    /// Keys of the one `[server]` table.
    server: Vec<String>,
    admin: Option<String>,
    /// Whole tables, each rendered when added.
    listeners: Vec<String>,
    certificates: Vec<String>,
    /// A TLS listener was added: without certificates of the test's own,
    /// [`build`](Self::build) adds the `{cert}`/`{key}` placeholder one.
    tls: bool,
    upstreams: Vec<String>,
    routes: Vec<String>,
    raw: Vec<String>,
}

impl ProxyToml {
    pub fn new() -> ProxyToml {
        ProxyToml::default()
    }

    /// The minimal config: a TLS listener and a plain one, upstream `backend`
    /// at `backend`, and one catch-all route `all`.
    pub fn simple(backend: SocketAddr) -> ProxyToml {
        ProxyToml::simple_with(backend, "")
    }

    /// [`simple`](Self::simple), with more keys on its route (`read_timeout = ...`).
    pub fn simple_with(backend: SocketAddr, route_keys: &str) -> ProxyToml {
        ProxyToml::new()
            .tls_listener()
            .plain_listener()
            .upstream("backend", &[backend])
            .route_with("all", "/", "backend", route_keys)
    }

    /// Adds `keys` to the `[server]` table.
    pub fn server(mut self, keys: &str) -> ProxyToml {
        if !keys.trim().is_empty() {
            self.server.push(keys.trim().to_owned());
        }
        self
    }

    /// `[admin]` on port 0.
    pub fn admin(self) -> ProxyToml {
        self.admin_at("127.0.0.1:0".parse().unwrap())
    }

    /// `[admin]` on an address the test chose (one it bound and freed);
    /// replaces an earlier [`admin`](Self::admin).
    pub fn admin_at(mut self, addr: SocketAddr) -> ProxyToml {
        self.admin = Some(format!("[admin]\naddr = {}\n", quote(addr)));
        self
    }

    /// A `[[listen]]` with `tls = true`. Unless the test adds certificates of
    /// its own ([`certificate`](Self::certificate)), the config gets one
    /// `[[certificate]]` whose `{cert}` and `{key}` placeholders
    /// `TestProxy` fills with a leaf for localhost.
    pub fn tls_listener(self) -> ProxyToml {
        self.tls_listener_with("")
    }

    /// [`tls_listener`](Self::tls_listener) with more keys (`websocket_over_http2 = false`).
    pub fn tls_listener_with(mut self, keys: &str) -> ProxyToml {
        self.tls = true;
        self.listener(&join(["tls = true", keys]))
    }

    /// A plain-HTTP `[[listen]]`.
    pub fn plain_listener(self) -> ProxyToml {
        self.plain_listener_with("")
    }

    /// A plain-HTTP `[[listen]]` with more keys (`redirect_https = true`).
    pub fn plain_listener_with(self, keys: &str) -> ProxyToml {
        self.listener(keys)
    }

    fn listener(mut self, keys: &str) -> ProxyToml {
        self.listeners.push(table(
            "[[listen]]",
            &join([r#"addr = "127.0.0.1:0""#, keys]),
        ));
        self
    }

    /// A `[[certificate]]` from these files; the first one added is the
    /// default for clients without SNI.
    pub fn certificate(self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> ProxyToml {
        self.certificate_with(cert, key, "")
    }

    /// [`certificate`](Self::certificate) with more keys (`client_ca = ...`).
    pub fn certificate_with(
        mut self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
        keys: &str,
    ) -> ProxyToml {
        let block = certificate(
            &cert.as_ref().display().to_string(),
            &key.as_ref().display().to_string(),
        );
        self.certificates.push(join([block.as_str(), keys]) + "\n");
        self
    }

    /// `[upstream.NAME]` with `servers` (addresses or `host:port` names).
    pub fn upstream(self, name: &str, servers: &[impl Display]) -> ProxyToml {
        self.upstream_with(name, servers, "")
    }

    /// [`upstream`](Self::upstream) with more keys (`balance = ...`).
    pub fn upstream_with(self, name: &str, servers: &[impl Display], keys: &str) -> ProxyToml {
        let servers: Vec<String> = servers.iter().map(quote).collect();
        let servers = format!("servers = [{}]", servers.join(", "));
        self.upstream_keys(name, &join([servers.as_str(), keys]))
    }

    /// `[upstream.NAME]` of exactly `keys`, for `servers` that
    /// [`upstream`](Self::upstream) cannot write (weights).
    pub fn upstream_keys(mut self, name: &str, keys: &str) -> ProxyToml {
        self.upstreams
            .push(table(&format!("[upstream.{name}]"), keys));
        self
    }

    /// A `[[route]]` sending `path_prefix` to `upstream`.
    pub fn route(self, name: &str, path_prefix: &str, upstream: &str) -> ProxyToml {
        self.route_with(name, path_prefix, upstream, "")
    }

    /// [`route`](Self::route) with more keys (`hosts`, `websocket`, timeouts).
    pub fn route_with(
        self,
        name: &str,
        path_prefix: &str,
        upstream: &str,
        keys: &str,
    ) -> ProxyToml {
        let head = format!(
            "name = {}\npath_prefix = {}\nupstream = {}",
            quote(name),
            quote(path_prefix),
            quote(upstream)
        );
        self.route_keys(&join([head.as_str(), keys]))
    }

    /// A `[[route]]` of exactly `keys`: no name, a regex, a redirect, ...
    pub fn route_keys(mut self, keys: &str) -> ProxyToml {
        self.routes.push(table("[[route]]", keys));
        self
    }

    /// Text appended as is, after every table: start it with a table header.
    pub fn raw(mut self, text: &str) -> ProxyToml {
        self.raw.push(format!("{}\n", text.trim()));
        self
    }

    /// The config text, for `TestProxy::start` (which fills `{cert}`/`{key}`)
    /// or a file for `FerryProcess`.
    pub fn build(&self) -> String {
        let mut tables = Vec::new();
        if !self.server.is_empty() {
            tables.push(table("[server]", &self.server.join("\n")));
        }
        tables.extend(self.admin.clone());
        tables.extend(self.listeners.iter().cloned());
        if self.tls && self.certificates.is_empty() {
            tables.push(certificate("{cert}", "{key}"));
        }
        tables.extend(self.certificates.iter().cloned());
        tables.extend(self.upstreams.iter().cloned());
        tables.extend(self.routes.iter().cloned());
        tables.extend(self.raw.iter().cloned());
        tables.join("\n")
    }
}

fn certificate(cert: &str, key: &str) -> String {
    table(
        "[[certificate]]",
        &format!("cert = {}\nkey = {}", quote(cert), quote(key)),
    )
}

/// `header`, then `keys` one per line.
fn table(header: &str, keys: &str) -> String {
    format!("{header}\n{}\n", keys.trim())
}

/// The non-empty parts, one per line.
fn join<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let parts: Vec<&str> = parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    parts.join("\n")
}

/// A TOML basic string.
fn quote(value: impl Display) -> String {
    let value = value.to_string();
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// [`ProxyToml::simple`], as text.
pub fn simple_config(backend: SocketAddr) -> String {
    ProxyToml::simple(backend).build()
}
