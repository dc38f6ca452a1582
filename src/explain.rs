//! `ferry route URL`: what ferry would do with a request, without sending it.
//!
//! Walks the same decisions as the request path — listener, route (and why
//! earlier routes were skipped), redirect or upstream, headers, WebSocket
//! origin check — and says each in a sentence. The incident that started
//! ferry (a frontend dialling `wss://host:8000`) shows up as "no listener
//! serves port 8000".

use std::fmt::Write as _;

use http::{HeaderMap, HeaderName, HeaderValue, Uri};

use crate::config::{Config, ListenerKind, RouteAction};
use crate::router::{HostPattern, PathMatch, each_match, normalize_path};
use crate::tls::certs::name_covers;

/// The request to explain.
#[derive(Debug, Clone)]
pub struct Probe {
    pub url: Uri,
    pub method: String,
    pub headers: HeaderMap,
}

impl Probe {
    /// Parses the URL and `Name: value` header arguments.
    pub fn parse(url: &str, method: &str, headers: &[String]) -> Result<Probe, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http" | "https" | "ws" | "wss") => {}
            _ => {
                return Err(format!(
                    "`{url}`: use an http://, https://, ws:// or wss:// URL"
                ));
            }
        }
        if uri.host().is_none() {
            return Err(format!("`{url}` has no host"));
        }
        let mut map = HeaderMap::new();
        for h in headers {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| format!("`{h}`: write headers as 'Name: value'"))?;
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| format!("`{name}` is not a header name"))?;
            let value = HeaderValue::from_str(value.trim())
                .map_err(|_| format!("`{value}` is not a header value"))?;
            map.append(name, value);
        }
        Ok(Probe {
            url: uri,
            method: method.to_ascii_uppercase(),
            headers: map,
        })
    }

    fn is_websocket(&self) -> bool {
        matches!(self.url.scheme_str(), Some("ws" | "wss"))
            || self
                .headers
                .get("upgrade")
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
}

/// The explanation, and whether the request would reach an upstream (or a redirect).
#[derive(Debug)]
pub struct Explanation {
    pub text: String,
    pub served: bool,
}

/// Explains `probe` against `config`. `cert_names` are the names of the loaded
/// certificates, when they could be read.
pub fn explain(config: &Config, probe: &Probe, cert_names: Option<&[String]>) -> Explanation {
    let mut out = String::new();
    let host = probe
        .url
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = probe.port();
    let path = probe.url.path();
    let ws = probe.is_websocket();
    let _ = writeln!(
        out,
        "request: {} {}{}",
        probe.method,
        probe.url,
        if ws { " (WebSocket handshake)" } else { "" }
    );

    // Listener.
    let wanted = if probe.is_tls() {
        ListenerKind::Tls
    } else {
        ListenerKind::Plain
    };
    let on_port: Vec<_> = config
        .listeners
        .iter()
        .filter(|l| l.addr.port() == port)
        .collect();
    let listener = on_port.iter().find(|l| {
        l.kind == wanted || (wanted == ListenerKind::Plain && l.kind == ListenerKind::RedirectHttps)
    });
    let Some(listener) = listener else {
        let ports: Vec<String> = config
            .listeners
            .iter()
            .map(|l| {
                let what = match l.kind {
                    ListenerKind::Tls => "https/wss",
                    ListenerKind::Plain => "http/ws",
                    ListenerKind::RedirectHttps => "http, redirected to https",
                };
                format!("{} ({what})", l.addr.port())
            })
            .collect();
        let _ = writeln!(
            out,
            "listener: NONE. No listener serves {} on port {port}.",
            if probe.is_tls() { "TLS" } else { "plain HTTP" }
        );
        let _ = writeln!(out, "  ferry listens on: {}", ports.join(", "));
        if !on_port.is_empty() {
            let _ = writeln!(
                out,
                "  port {port} is served, but not with {}: check the URL's scheme",
                if probe.is_tls() { "TLS" } else { "plain HTTP" }
            );
        } else if let Some(tls) = config
            .listeners
            .iter()
            .find(|l| l.kind == ListenerKind::Tls)
        {
            let fixed = with_port(&probe.url, tls.addr.port(), probe.is_tls() || ws);
            let _ = writeln!(
                out,
                "  the client is dialling a port ferry does not serve (a backend's own port?): it must go through ferry instead:\n    {fixed}"
            );
        }
        if ws {
            let _ = writeln!(
                out,
                "  a browser reports this as WebSocket close code 1006 (connection failed, no close frame)"
            );
        }
        return Explanation {
            text: out,
            served: false,
        };
    };
    let _ = writeln!(
        out,
        "listener: {} ({})",
        listener.addr,
        match listener.kind {
            ListenerKind::Tls => "TLS",
            ListenerKind::Plain => "plain HTTP",
            ListenerKind::RedirectHttps => "redirects to https",
        }
    );
    if listener.kind == ListenerKind::RedirectHttps {
        let https = config.https_port().unwrap_or(443);
        let _ = writeln!(
            out,
            "result: 308 redirect to {}",
            with_port(&probe.url, https, true)
        );
        return Explanation {
            text: out,
            served: true,
        };
    }
    if listener.kind == ListenerKind::Tls {
        match cert_names {
            Some(names) => match names.iter().find(|n| name_covers(n, &host)) {
                Some(n) => {
                    let _ = writeln!(out, "certificate: covers {host} (name {n})");
                }
                None => {
                    let _ = writeln!(
                        out,
                        "certificate: NONE covers {host}; the default certificate is served and browsers will reject it (names: {})",
                        names.join(", ")
                    );
                }
            },
            None => {
                let _ = writeln!(
                    out,
                    "certificate: not checked (certificate files not readable here)"
                );
            }
        }
    }

    // Route.
    let normalized = normalize_path(path);
    if normalized != path {
        let _ = writeln!(out, "path: {path} is matched as {normalized}");
    }
    let found = config.route(&host, path).map(|(i, _)| i);
    let matches = each_match(config.routes.iter().map(|r| &r.matcher), &host, path);
    for (i, (host_ok, path_ok)) in matches.into_iter().enumerate() {
        if Some(i) == found {
            break;
        }
        let r = &config.routes[i];
        let why = match (host_ok, path_ok) {
            (false, _) => format!(
                "host {host} is not in [{}]",
                r.matcher
                    .hosts
                    .iter()
                    .map(HostPattern::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (true, false) => format!(
                "path {normalized} does not match {}",
                describe_path(&r.matcher.path)
            ),
            (true, true) => "matched".into(),
        };
        let _ = writeln!(out, "  skipped route {} `{}`: {why}", i + 1, r.name);
    }
    let Some(index) = found else {
        let _ = writeln!(out, "route: NONE matches; ferry answers 404");
        return Explanation {
            text: out,
            served: false,
        };
    };
    let route = &config.routes[index];
    let _ = writeln!(
        out,
        "route: {} `{}` ({})",
        index + 1,
        route.name,
        describe_path(&route.matcher.path)
    );

    let upstream = match &route.action {
        RouteAction::Redirect { to, status } => {
            let _ = writeln!(
                out,
                "result: {} redirect to {to} (placeholders filled from the request)",
                status.as_u16()
            );
            return Explanation {
                text: out,
                served: true,
            };
        }
        RouteAction::Upstream(i) => &config.upstreams[*i],
    };
    let servers: Vec<_> = upstream.servers.iter().map(|s| s.as_str()).collect();
    let _ = writeln!(
        out,
        "upstream: `{}` → {} (resolved when connecting)",
        upstream.name,
        servers.join(", ")
    );
    let _ = writeln!(
        out,
        "timeouts: connect {:?}, read {:?}{}",
        upstream.connect_timeout,
        route.read_timeout.unwrap_or(upstream.read_timeout),
        if route.read_timeout.is_some() {
            " (route override)"
        } else {
            ""
        }
    );
    let proto = if probe.is_tls() { "https" } else { "http" };
    let _ = writeln!(
        out,
        "headers set: Host: {}, X-Forwarded-For: <client ip>, X-Real-IP, X-Forwarded-Proto: {proto}, X-Forwarded-Host",
        probe.url.authority().map_or("", |a| a.as_str())
    );
    let _ = writeln!(
        out,
        "headers removed: Connection and the headers it names, Keep-Alive, Proxy-Connection, TE (but trailers), Trailer, Transfer-Encoding, Upgrade (unless a WebSocket), Proxy-Authorization"
    );
    let ops = &route.request_headers;
    if !ops.is_empty() {
        let list = |v: &Vec<(HeaderName, HeaderValue)>| {
            v.iter()
                .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "route request_headers: remove [{}], set [{}], add [{}]",
            ops.remove
                .iter()
                .map(HeaderName::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            list(&ops.set),
            list(&ops.add)
        );
    }

    if ws {
        let wsc = &route.websocket;
        let origin = probe.headers.get("origin").and_then(|v| v.to_str().ok());
        let verdict = match origin {
            None if wsc.require_origin => {
                Err("no Origin header and this route requires one: 403".to_owned())
            }
            None => Ok("no Origin header (non-browser client): allowed".to_owned()),
            Some(_) if wsc.allowed_origins.is_empty() => {
                Ok("any origin is allowed on this route (no allowed_origins)".to_owned())
            }
            Some(o) if wsc.allowed_origins.iter().any(|p| p.matches(o)) => {
                Ok(format!("origin {o} is allowed"))
            }
            Some(o) => Err(format!(
                "origin {o} is NOT in allowed_origins [{}]: 403, upstream not contacted",
                wsc.allowed_origins
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
        let served = verdict.is_ok();
        let _ = writeln!(out, "websocket: {}", verdict.unwrap_or_else(|e| e));
        let _ = writeln!(
            out,
            "websocket: upgraded to the upstream over HTTP/1.1; idle timeout {:?}{}{}",
            wsc.idle_timeout,
            wsc.max_lifetime
                .map_or(String::new(), |d| format!(", max lifetime {d:?}")),
            wsc.ping_interval
                .map_or(String::new(), |d| format!(", ping every {d:?}"))
        );
        if listener.websocket_over_http2 {
            let _ = writeln!(
                out,
                "websocket: browsers on an HTTP/2 connection use RFC 8441 (extended CONNECT); ferry bridges it"
            );
        }
        return Explanation { text: out, served };
    }
    Explanation {
        text: out,
        served: true,
    }
}

fn describe_path(p: &PathMatch) -> String {
    match p {
        PathMatch::Any => "any path".into(),
        PathMatch::Prefix(v) => format!("prefix {}", v.join(" or ")),
        PathMatch::Exact(v) => format!("exactly {}", v.join(" or ")),
        PathMatch::Regex(r) => format!("regex {}", r.as_str()),
    }
}

/// `url` with `port` (omitted when it is the scheme's default).
fn with_port(url: &Uri, port: u16, tls: bool) -> String {
    let ws = matches!(url.scheme_str(), Some("ws" | "wss"));
    let scheme = match (ws, tls) {
        (true, true) => "wss",
        (true, false) => "ws",
        (false, true) => "https",
        (false, false) => "http",
    };
    let host = url.host().unwrap_or_default();
    let default = if tls { 443 } else { 80 };
    let port = if port == default {
        String::new()
    } else {
        format!(":{port}")
    };
    let pq = url.path_and_query().map_or("/", |pq| pq.as_str());
    format!("{scheme}://{host}{port}{pq}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Config {
        let src = include_str!("../proxy.toml.example").replace(
                "path_regex = \"(?i)^/api/v1/(communications|notifications)/ws/\"\nupstream = \"backend\"",
                "path_regex = \"(?i)^/api/v1/(communications|notifications)/ws/\"\nupstream = \"backend\"\nwebsocket = { allowed_origins = [\"https://tlumaczeniamt.com.pl\"] }",
            );
        Config::parse(
            &src,
            "proxy.toml.example",
            std::path::Path::new("/etc/ferry"),
        )
        .unwrap()
    }

    fn run(url: &str, headers: &[&str]) -> Explanation {
        let headers: Vec<String> = headers.iter().map(|s| s.to_string()).collect();
        explain(
            &example(),
            &Probe::parse(url, "GET", &headers).unwrap(),
            None,
        )
    }

    #[test]
    fn the_incident_url_is_caught() {
        let e = run(
            "wss://tlumaczeniamt.com.pl:8000/api/v1/communications/ws/current-user",
            &[],
        );
        assert!(!e.served);
        assert!(
            e.text.contains("No listener serves TLS on port 8000"),
            "{}",
            e.text
        );
        assert!(
            e.text
                .contains("wss://tlumaczeniamt.com.pl/api/v1/communications/ws/current-user"),
            "{}",
            e.text
        );
        assert!(e.text.contains("1006"), "{}", e.text);
    }

    #[test]
    fn routes_origins_and_redirects() {
        let ok = run(
            "wss://tlumaczeniamt.com.pl/api/v1/communications/ws/42",
            &["Origin: https://tlumaczeniamt.com.pl"],
        );
        assert!(ok.served, "{}", ok.text);
        assert!(ok.text.contains("route: 1 `websockets`"), "{}", ok.text);
        assert!(
            ok.text
                .contains("origin https://tlumaczeniamt.com.pl is allowed"),
            "{}",
            ok.text
        );
        let denied = run(
            "wss://tlumaczeniamt.com.pl/api/v1/communications/ws/42",
            &["Origin: https://evil.test"],
        );
        assert!(
            !denied.served && denied.text.contains("NOT in allowed_origins"),
            "{}",
            denied.text
        );

        let api = run("https://www.tlumaczeniamt.com.pl/auth/login", &[]);
        assert!(
            api.text
                .contains("skipped route 1 `websockets`: path /auth/login does not match"),
            "{}",
            api.text
        );
        assert!(api.text.contains("route: 2 `api`"), "{}", api.text);
        assert!(
            api.text.contains("read 60s (route override)"),
            "{}",
            api.text
        );

        let other = run("https://example.org/", &[]);
        assert!(
            !other.served && other.text.contains("route: NONE"),
            "{}",
            other.text
        );

        let redirect = run("http://tlumaczeniamt.com.pl/x?y=1", &[]);
        assert!(
            redirect
                .text
                .contains("308 redirect to https://tlumaczeniamt.com.pl/x?y=1"),
            "{}",
            redirect.text
        );
    }

    #[test]
    fn certificate_coverage() {
        let probe = Probe::parse("https://tlumaczeniamt.com.pl/", "GET", &[]).unwrap();
        let names = vec!["other.test".to_owned()];
        let e = explain(&example(), &probe, Some(&names));
        assert!(
            e.text
                .contains("certificate: NONE covers tlumaczeniamt.com.pl"),
            "{}",
            e.text
        );
    }
}
