//! `ferry route`'s report for people: one sentence per step, in the order
//! the request meets them.

use std::fmt::Write as _;

use http::Uri;

use super::{Certificate, Report};
use crate::config::{ListenerKind, StaticConfig};
use crate::proxy::decision::{Action, Decision, Forward, OriginCheck, WebSocket};
use crate::proxy::headers::is_trusted;
use crate::static_files::{Kind, Located};

impl Report<'_> {
    /// The report as text.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let ws = self.query.is_websocket();
        let _ = writeln!(
            out,
            "request: {} {}{}",
            self.query.method,
            self.query.url,
            if ws { " (WebSocket handshake)" } else { "" }
        );
        let trusted = &self.config.server.trusted_proxies;
        let _ = writeln!(
            out,
            "client: {} ({}; --client sets it)",
            self.query.client,
            if is_trusted(trusted, self.query.client) {
                "in server.trusted_proxies: its X-Forwarded-* are kept and appended to"
            } else {
                "not a trusted proxy: X-Forwarded-* it sends are replaced"
            }
        );
        let (Some(listener), Some(decision)) = (self.listener, &self.decision) else {
            self.no_listener(&mut out);
            return out;
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
        if let Some(certificate) = &self.certificate {
            self.certificate(&mut out, certificate);
        }
        if listener.kind != ListenerKind::RedirectHttps {
            self.routes(&mut out, decision);
        }
        self.action(&mut out, decision);
        out
    }

    /// The URL reaches no listener: say where ferry listens, and the fix.
    fn no_listener(&self, out: &mut String) {
        let (config, query) = (self.config, self.query);
        let scheme = if query.is_tls() { "TLS" } else { "plain HTTP" };
        let port = query.port();
        let _ = writeln!(
            out,
            "listener: NONE. No listener serves {scheme} on port {port}."
        );
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
        let _ = writeln!(out, "  ferry listens on: {}", ports.join(", "));
        let ws = query.is_websocket();
        if config.listeners.iter().any(|l| l.addr.port() == port) {
            let _ = writeln!(
                out,
                "  port {port} is served, but not with {scheme}: check the URL's scheme"
            );
        } else if let Some(tls) = config
            .listeners
            .iter()
            .find(|l| l.kind == ListenerKind::Tls)
        {
            let fixed = with_port(&query.url, tls.addr.port(), query.is_tls() || ws);
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
    }

    fn certificate(&self, out: &mut String, certificate: &Certificate) {
        let host = self.query.host();
        let _ = match certificate {
            Certificate::Covers(file) => writeln!(out, "certificate: {file} covers {host}"),
            Certificate::Uncovered(names) => writeln!(
                out,
                "certificate: NONE covers {host}; the default certificate is served and browsers will reject it (names: {})",
                names.join(", ")
            ),
            Certificate::Unread => writeln!(
                out,
                "certificate: not checked (certificate files not readable here)"
            ),
        };
    }

    /// The path as matched, the routes skipped and why, and the route chosen.
    fn routes(&self, out: &mut String, decision: &Decision) {
        let normalized = self.normalized_path();
        if let Some(n) = &normalized {
            let _ = writeln!(out, "path: {} is matched as {n}", self.path());
        }
        let path = normalized.as_deref().unwrap_or(self.path());
        let host = self.query.host();
        for (i, host_ok, path_ok) in self.skipped() {
            let r = &self.config.routes[i];
            let why = match (host_ok, path_ok) {
                (false, _) => format!("host {host} is not in [{}]", r.matcher.describe_hosts()),
                (true, false) => format!("path {path} does not match {}", r.matcher.path),
                (true, true) => "matched".into(),
            };
            let _ = writeln!(out, "  skipped route {} `{}`: {why}", i + 1, r.name);
        }
        match decision.route {
            Some(i) => {
                let r = &self.config.routes[i];
                let _ = writeln!(out, "route: {} `{}` ({})", i + 1, r.name, r.matcher.path);
            }
            None if decision.host.is_some() => {
                let _ = writeln!(out, "route: NONE matches; ferry answers 404");
            }
            None => {}
        }
    }

    /// The answer, or the upstream and what it receives.
    fn action(&self, out: &mut String, decision: &Decision) {
        if let Some(i) = decision.upstream {
            let u = &self.config.upstreams[i];
            let servers: Vec<_> = u.servers.iter().map(|s| s.as_str()).collect();
            let _ = writeln!(
                out,
                "upstream: `{}` → {} (resolved when connecting)",
                u.name,
                servers.join(", ")
            );
        }
        if let Some(ws) = &decision.websocket {
            self.websocket(out, decision, ws);
        }
        match &decision.action {
            // "route: NONE" said it.
            Action::Refuse(_) if decision.route.is_none() && decision.host.is_some() => {}
            Action::Refuse(e) => {
                let _ = writeln!(
                    out,
                    "result: {} ({}); the upstream is not contacted",
                    e.status(),
                    e.public_message()
                );
            }
            Action::Redirect { status, location } => {
                let location = String::from_utf8_lossy(location.as_bytes());
                let _ = writeln!(out, "result: {} redirect to {location}", status.as_u16());
            }
            Action::Forward(forward) => self.forward(out, decision, forward),
            Action::Static(files) => self.static_file(out, files),
        }
    }

    /// A static route: the file, the SPA fallback, the redirect, or the 404 and why.
    fn static_file(&self, out: &mut String, files: &StaticConfig) {
        let _ = writeln!(out, "static: files from {}", files.root.display());
        let Some(answer) = &self.static_answer else {
            return;
        };
        let status = answer.status().as_u16();
        let _ = match &answer.result {
            Ok(Located::File(target)) => {
                let how = match target.kind {
                    Kind::File => String::new(),
                    Kind::Index => " (the directory's index)".to_owned(),
                    Kind::SpaFallback => {
                        " (SPA fallback: no file at this path, extension-less, Accept allows HTML)"
                            .to_owned()
                    }
                };
                let encoding = match target.encoding {
                    Some(e) => format!(
                        "; Content-Encoding: {} from {}",
                        e.token(),
                        target.served_path().display()
                    ),
                    None => String::new(),
                };
                writeln!(
                    out,
                    "result: {status} file {}{how}{encoding}; Cache-Control: {}",
                    target.path.display(),
                    answer.cache_control.unwrap_or_default()
                )
            }
            Ok(Located::Redirect { location }) => {
                writeln!(out, "result: {status} redirect to {location} (a directory)")
            }
            Err(e) => writeln!(out, "result: {status} ({e})"),
        };
    }

    fn websocket(&self, out: &mut String, decision: &Decision, ws: &WebSocket) {
        let route = decision.route.map(|i| &self.config.routes[i]);
        let verdict = match &ws.origin {
            OriginCheck::NotSent => "no Origin header (non-browser client): allowed".to_owned(),
            OriginCheck::Unrestricted(_) => {
                "any origin is allowed on this route (no allowed_origins)".to_owned()
            }
            OriginCheck::Allowed(o) => format!("origin {o} is allowed"),
            OriginCheck::Missing => "no Origin header and this route requires one: 403".to_owned(),
            OriginCheck::NotAllowed(o) => {
                let allowed = route.map_or_else(Vec::new, |r| {
                    r.websocket
                        .allowed_origins
                        .iter()
                        .map(ToString::to_string)
                        .collect()
                });
                format!(
                    "origin {o} is NOT in allowed_origins [{}]: 403, upstream not contacted",
                    allowed.join(", ")
                )
            }
        };
        let _ = writeln!(out, "websocket: {verdict}");
    }

    /// A forwarded request: timeouts, WebSocket settings, the upstream's request head.
    fn forward(&self, out: &mut String, decision: &Decision, forward: &Forward) {
        let route = &self.config.routes[forward.route];
        let upstream = &self.config.upstreams[forward.upstream];
        let _ = writeln!(
            out,
            "timeouts: connect {:?}, read {:?}{}",
            upstream.connect_timeout,
            forward.read_timeout,
            if route.read_timeout.is_some() {
                " (route override)"
            } else {
                ""
            }
        );
        if decision.websocket.is_some() {
            let wsc = &route.websocket;
            let _ = writeln!(
                out,
                "websocket: upgraded to the upstream over HTTP/1.1; idle timeout {:?}{}{}",
                wsc.idle_timeout,
                wsc.max_lifetime
                    .map_or(String::new(), |d| format!(", max lifetime {d:?}")),
                wsc.ping_interval
                    .map_or(String::new(), |d| format!(", ping every {d:?}"))
            );
            if self.listener.is_some_and(|l| l.websocket_over_http2) {
                let _ = writeln!(
                    out,
                    "websocket: browsers on an HTTP/2 connection use RFC 8441 (extended CONNECT); ferry bridges it"
                );
            }
        }
        let Some(head) = &self.upstream_head else {
            return;
        };
        let _ = writeln!(out, "upstream request (what the backend receives):");
        let _ = writeln!(out, "  {} {} HTTP/1.1", head.method, head.uri);
        for (name, value) in &head.headers {
            let _ = writeln!(
                out,
                "  {name}: {}",
                String::from_utf8_lossy(value.as_bytes())
            );
        }
        let removed = super::removed(&self.client_head.headers, &head.headers);
        if !removed.is_empty() {
            let _ = writeln!(
                out,
                "headers removed: {} (hop-by-hop, or named by Connection)",
                removed.join(", ")
            );
        }
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
