//! `ferry route URL`: what ferry would do with a request, without sending it.
//!
//! The route, the origin verdict, the answer and the upstream request all
//! come from the [`decide`] the proxy itself executes, so this prints what
//! ferry does. Around it, what only the client's side of the story adds:
//! which listener the URL reaches (the incident's `wss://host:8000` shows up
//! as "no listener serves port 8000"), whether a certificate covers the host,
//! and why earlier routes were skipped. [`Report`] holds those facts; it is
//! printed for people ([`Report::text`]) or scripts ([`Report::json`]).

use std::net::IpAddr;
use std::process::ExitCode;

use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version, header};

use super::{CliError, Format, load, out};
use crate::app::ConfigSource;
use crate::config::{Config, ListenerConfig, ListenerKind};
use crate::proxy::decision::{Action, Decision, Inbound, decide};
use crate::proxy::headers::ip_value;
use crate::router::{each_match, normalize_path};
use crate::tls::certs::name_covers;
use crate::tls::{LoadedCert, SniResolver, load_certificates};

mod json;
mod text;

/// A `ferry route` argument that cannot be understood.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("`{url}` is not a URL: {source}")]
    Url {
        url: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    #[error("`{0}`: use an http://, https://, ws:// or wss:// URL")]
    Scheme(String),
    #[error("`{0}` has no host")]
    NoHost(String),
    #[error("`{0}`: write headers as 'Name: value'")]
    HeaderSyntax(String),
    #[error("`{0}` is not a header name")]
    HeaderName(String),
    #[error("`{0}` is not a header value")]
    HeaderValue(String),
    #[error("`{0}` is not an HTTP method")]
    Method(String),
    #[error("`{0}` is not an IP address (--client)")]
    Client(String),
}

/// The request to explain, as a client would send it.
#[derive(Debug, Clone)]
pub struct Query {
    pub url: Uri,
    pub method: Method,
    /// The headers given with `-H`.
    pub headers: HeaderMap,
    /// The TCP peer ferry would see (on a `proxy_protocol` listener: the
    /// PROXY header's source, which takes the peer's place).
    pub client: IpAddr,
}

impl Query {
    /// Parses the URL, the method, `Name: value` header arguments and the client address.
    pub fn parse(
        url: &str,
        method: &str,
        headers: &[String],
        client: &str,
    ) -> Result<Query, QueryError> {
        let uri: Uri = url.parse().map_err(|source| QueryError::Url {
            url: url.to_owned(),
            source,
        })?;
        if !matches!(uri.scheme_str(), Some("http" | "https" | "ws" | "wss")) {
            return Err(QueryError::Scheme(url.to_owned()));
        }
        if uri.host().is_none() {
            return Err(QueryError::NoHost(url.to_owned()));
        }
        let mut map = HeaderMap::new();
        for h in headers {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| QueryError::HeaderSyntax(h.clone()))?;
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| QueryError::HeaderName(name.to_owned()))?;
            let value = HeaderValue::from_str(value.trim())
                .map_err(|_| QueryError::HeaderValue(value.to_owned()))?;
            map.append(name, value);
        }
        let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| QueryError::Method(method.to_owned()))?;
        let client = client
            .trim_matches(['[', ']'])
            .parse()
            .map_err(|_| QueryError::Client(client.to_owned()))?;
        Ok(Query {
            url: uri,
            method,
            headers: map,
            client,
        })
    }

    /// A `ws://`/`wss://` URL, or an `Upgrade: websocket` header.
    pub fn is_websocket(&self) -> bool {
        matches!(self.url.scheme_str(), Some("ws" | "wss"))
            || self
                .headers
                .get(header::UPGRADE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    }

    fn is_tls(&self) -> bool {
        matches!(self.url.scheme_str(), Some("https" | "wss"))
    }

    fn port(&self) -> u16 {
        self.url
            .port_u16()
            .unwrap_or(if self.is_tls() { 443 } else { 80 })
    }

    /// The host as a TLS client names it (lowercase, no brackets).
    fn host(&self) -> String {
        self.url
            .host()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_ascii_lowercase()
    }

    /// The request head an HTTP/1.1 client (a browser, for a WebSocket)
    /// sends for this URL: `Host` from the URL unless `-H` gave one, and a
    /// WebSocket handshake's headers unless `-H` gave them.
    pub fn head(&self) -> Parts {
        let pq = self.url.path_and_query().map_or("/", |pq| pq.as_str());
        let mut head = http::Request::new(()).into_parts().0;
        head.method = self.method.clone();
        head.uri = pq.parse().unwrap_or_else(|_| Uri::from_static("/"));
        head.version = Version::HTTP_11;
        head.headers = self.headers.clone();
        let h = &mut head.headers;
        if let Some(authority) = self.url.authority() {
            let host = HeaderValue::from_str(authority.as_str()).expect("an authority is ASCII");
            h.entry(header::HOST).or_insert(host);
        }
        if self.is_websocket() {
            // RFC 6455's example key: a browser sends a random one.
            for (name, value) in [
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ] {
                h.entry(name).or_insert(HeaderValue::from_static(value));
            }
        }
        head
    }
}

/// Explains the request, printed as `format`; fails (exit 1) when ferry
/// would not serve it.
pub(super) fn run(
    source: &ConfigSource,
    url: &str,
    method: &str,
    headers: &[String],
    client: &str,
    format: Format,
) -> Result<ExitCode, CliError> {
    let config = load(source)?;
    let query = Query::parse(url, method, headers, client)?;
    let certs = load_certificates(&config.certificates).ok();
    let report = Report::new(&config, &query, certs.as_deref());
    match format {
        Format::Text => out(&report.text()),
        Format::Json => out(&format!("{}\n", report.json())),
    }
    Ok(if report.served() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Which certificate a TLS client gets for the host.
#[derive(Debug)]
pub enum Certificate {
    /// The certificate files could not be read here.
    Unread,
    /// The certificate (its file) covers the host.
    Covers(String),
    /// None does; the default is served and browsers reject it.
    Uncovered(Vec<String>),
}

/// Everything `ferry route` found out about one request.
#[derive(Debug)]
pub struct Report<'a> {
    pub config: &'a Config,
    pub query: &'a Query,
    /// The listener the URL reaches; `None`: nothing serves its port and scheme.
    pub listener: Option<&'a ListenerConfig>,
    /// On a TLS listener.
    pub certificate: Option<Certificate>,
    /// The request head the client sends.
    pub client_head: Parts,
    /// The head as the upstream receives it, when the request is forwarded.
    pub upstream_head: Option<Parts>,
    /// What ferry does with it, when a listener receives it.
    pub decision: Option<Decision>,
    /// On a static route: the file served, or why none is (the server's own
    /// resolution, run against the file system here).
    pub static_answer: Option<crate::static_files::Explanation>,
}

impl<'a> Report<'a> {
    /// Explains `query` under `config`; `certs` are the loaded certificates,
    /// when their files could be read.
    pub fn new(config: &'a Config, query: &'a Query, certs: Option<&[LoadedCert]>) -> Report<'a> {
        let listener = listener_for(config, query);
        let certificate = listener
            .filter(|l| l.kind == ListenerKind::Tls)
            .map(|_| certificate_for(certs, &query.host()));
        let client_head = query.head();
        let mut head = query.head();
        let decision = listener.map(|l| {
            let peer_value = ip_value(query.client);
            let inbound = Inbound {
                peer: query.client,
                peer_value: &peer_value,
                listener: l.kind,
                https_port: config.https_port(),
                client_auth: None,
            };
            decide(config, &inbound, &mut head)
        });
        let forwarded = decision
            .as_ref()
            .is_some_and(|d| matches!(d.action, Action::Forward(_)));
        let static_answer = match decision.as_ref().map(|d| &d.action) {
            Some(Action::Static(files)) => Some(crate::static_files::explain(files, &head)),
            _ => None,
        };
        Report {
            config,
            query,
            listener,
            certificate,
            client_head,
            upstream_head: forwarded.then_some(head),
            decision,
            static_answer,
        }
    }

    /// Whether the request would reach an upstream, get a redirect, or get
    /// a file (a static route's 404 is not served).
    pub fn served(&self) -> bool {
        let file_ok = self.static_answer.as_ref().is_none_or(|s| s.result.is_ok());
        file_ok
            && self
                .decision
                .as_ref()
                .is_some_and(|d| !matches!(d.action, Action::Refuse(_)))
    }

    /// For each route before the chosen one (all of them when none is):
    /// whether its host and its path condition matched.
    fn skipped(&self) -> Vec<(usize, bool, bool)> {
        let routes = &self.config.routes;
        let host = self.client_head.headers.get(header::HOST);
        let host = host.and_then(|h| h.to_str().ok()).unwrap_or_default();
        let chosen = self.decision.as_ref().and_then(|d| d.route);
        let matches = each_match(routes.iter().map(|r| &r.matcher), host, self.path());
        matches
            .into_iter()
            .enumerate()
            .take_while(|(i, _)| Some(*i) != chosen)
            .map(|(i, (host_ok, path_ok))| (i, host_ok, path_ok))
            .collect()
    }

    fn path(&self) -> &str {
        self.query.url.path()
    }

    /// The path as routes see it, when normalising changed it.
    fn normalized_path(&self) -> Option<String> {
        let normalized = normalize_path(self.path());
        (normalized != self.path()).then(|| normalized.into_owned())
    }
}

/// The listener a client reaches with this URL: by port, then by scheme
/// (plain HTTP also reaches a `redirect_https` listener).
fn listener_for<'c>(config: &'c Config, query: &Query) -> Option<&'c ListenerConfig> {
    let wanted = if query.is_tls() {
        ListenerKind::Tls
    } else {
        ListenerKind::Plain
    };
    config.listeners.iter().find(|l| {
        l.addr.port() == query.port()
            && (l.kind == wanted
                || (wanted == ListenerKind::Plain && l.kind == ListenerKind::RedirectHttps))
    })
}

/// The certificate the TLS acceptor picks for `host` (clients send no SNI
/// for an IP address: they get the default), and whether it covers `host`.
fn certificate_for(certs: Option<&[LoadedCert]>, host: &str) -> Certificate {
    let Some((certs, resolver)) = certs.and_then(|c| Some((c, SniResolver::new(c)?))) else {
        return Certificate::Unread;
    };
    let sni = host.parse::<IpAddr>().is_err().then_some(host);
    let (index, _) = resolver.select(sni);
    let cert = &certs[index];
    if cert.info.names.iter().any(|n| name_covers(n, host)) {
        Certificate::Covers(cert.config.cert.display().to_string())
    } else {
        Certificate::Uncovered(certs.iter().flat_map(|c| c.info.names.clone()).collect())
    }
}

/// Names of `before`'s headers that `after` no longer has.
fn removed(before: &HeaderMap, after: &HeaderMap) -> Vec<String> {
    before
        .keys()
        .filter(|k| !after.contains_key(*k))
        .map(|k| k.as_str().to_owned())
        .collect()
}

#[cfg(test)]
mod tests;
