//! `[[route]]` blocks: which requests (hosts, a path condition) go where
//! (an upstream, a directory of files or a redirect), and what is changed on the way.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use http::StatusCode;
use regex::Regex;
use toml::Spanned;

use super::values::{duration, header_ops, one_or_many, parse_size, placeholders};
use crate::config::error::{Problems, did_you_mean};
use crate::config::file::{FileRedirect, FileRoute, FileSize, FileWebSocket, OneOrMany};
use crate::config::{OriginPattern, RouteAction, RouteConfig, UpstreamConfig, WebSocketConfig};
use crate::router::{HostPattern, Matcher, PathMatch};

/// Every route, in file order; names must be unique.
pub(super) fn build(
    file: &[Spanned<FileRoute>],
    upstreams: &[UpstreamConfig],
    base: &Path,
    p: &mut Problems<'_>,
) -> Vec<RouteConfig> {
    let mut routes = Vec::new();
    let mut names = HashSet::new();
    for (i, r) in file.iter().enumerate() {
        let route = build_route(i, r, upstreams, base, p);
        if !names.insert(route.name.clone()) {
            p.push(
                r.get_ref().name.as_ref().map(Spanned::span),
                format!("route[{i}].name"),
                format!("route name `{}` is used twice", route.name),
                Some("route names appear in logs and metrics: make them unique".into()),
            );
        }
        routes.push(route);
    }
    if routes.is_empty() {
        p.push(
            None,
            "route",
            "no routes: every request would get 404",
            Some("add\n        [[route]]\n        path_prefix = \"/\"\n        upstream = \"backend\"".into()),
        );
    }
    routes
}

fn build_route(
    i: usize,
    r: &Spanned<FileRoute>,
    upstreams: &[UpstreamConfig],
    base: &Path,
    p: &mut Problems<'_>,
) -> RouteConfig {
    let key = format!("route[{i}]");
    let f = r.get_ref();
    let name = name(i, &key, f, p);
    let hosts = hosts(&key, f, p);
    let path = path(&key, r, p);
    let action = action(&key, r, upstreams, base, p);
    let read_timeout = duration(p, &f.read_timeout, &key, "read_timeout");
    let max_body_size = max_body_size(&key, f, p);
    let request_headers = header_ops(p, &f.request_headers, &format!("{key}.request_headers"));
    let response_headers = header_ops(p, &f.response_headers, &format!("{key}.response_headers"));
    let websocket = websocket(p, &f.websocket, &format!("{key}.websocket"));
    let hsts = f
        .hsts
        .as_ref()
        .and_then(|v| super::tls::hsts(p, v, &format!("{key}.hsts")));
    let compress = f.compress.as_ref().is_some_and(|c| *c.get_ref());
    keys_without_effect(&key, f, &action, p);
    RouteConfig {
        name,
        matcher: Matcher { hosts, path },
        action,
        read_timeout,
        max_body_size,
        request_headers,
        response_headers,
        websocket,
        hsts,
        compress,
    }
}

/// Keys that mean nothing for what the route does: refused, so nobody
/// believes a redirect honours a `read_timeout` or a static route a body limit.
fn keys_without_effect(key: &str, f: &FileRoute, action: &RouteAction, p: &mut Problems<'_>) {
    type Span = Option<std::ops::Range<usize>>;
    let (kind, keys): (&str, Vec<(&str, Span)>) = match action {
        RouteAction::Upstream(_) => return,
        RouteAction::Redirect { .. } => (
            "redirect",
            vec![
                ("read_timeout", f.read_timeout.as_ref().map(Spanned::span)),
                ("websocket", f.websocket.as_ref().map(Spanned::span)),
                ("compress", f.compress.as_ref().map(Spanned::span)),
                ("max_body_size", f.max_body_size.as_ref().map(Spanned::span)),
                (
                    "request_headers",
                    f.request_headers.as_ref().map(Spanned::span),
                ),
            ],
        ),
        RouteAction::Static(_) => (
            "static",
            vec![
                ("read_timeout", f.read_timeout.as_ref().map(Spanned::span)),
                ("websocket", f.websocket.as_ref().map(Spanned::span)),
                ("max_body_size", f.max_body_size.as_ref().map(Spanned::span)),
                (
                    "request_headers",
                    f.request_headers.as_ref().map(Spanned::span),
                ),
            ],
        ),
    };
    for (name, span) in keys {
        if let Some(span) = span {
            p.push(
                Some(span),
                format!("{key}.{name}"),
                format!("`{name}` has no effect on a {kind} route"),
                Some("remove it".into()),
            );
        }
    }
}

/// The route's name, `route<index>` when unnamed.
fn name(i: usize, key: &str, f: &FileRoute, p: &mut Problems<'_>) -> Arc<str> {
    if f.name
        .as_ref()
        .is_some_and(|n| n.get_ref().trim().is_empty())
    {
        p.push(
            f.name.as_ref().map(Spanned::span),
            format!("{key}.name"),
            "a route name cannot be empty",
            None,
        );
    }
    f.name
        .as_ref()
        .map_or_else(|| format!("route{i}"), |n| n.get_ref().clone())
        .into()
}

fn hosts(key: &str, f: &FileRoute, p: &mut Problems<'_>) -> Vec<HostPattern> {
    let mut hosts = Vec::new();
    let Some(h) = &f.hosts else { return hosts };
    let list = one_or_many(h);
    if list.is_empty() {
        p.push(
            Some(h.span()),
            format!("{key}.hosts"),
            "`hosts` is empty, so this route matches no request",
            Some("remove `hosts` to match any host".into()),
        );
    }
    for host in list {
        match HostPattern::parse(host) {
            Some(pattern) => hosts.push(pattern),
            None => p.push(
                Some(h.span()),
                format!("{key}.hosts"),
                format!("`{host}` is not a host name"),
                Some("write bare names like \"example.com\" or \"*.example.com\" (no scheme, port or path)".into()),
            ),
        }
    }
    hosts
}

/// The one path condition: `path_prefix`, `path_exact` or `path_regex`.
fn path(key: &str, r: &Spanned<FileRoute>, p: &mut Problems<'_>) -> PathMatch {
    let f = r.get_ref();
    let conditions = [
        f.path_prefix.is_some(),
        f.path_exact.is_some(),
        f.path_regex.is_some(),
    ];
    if conditions.iter().filter(|c| **c).count() > 1 {
        p.push(
            Some(r.span()),
            key,
            "a route can have only one of `path_prefix`, `path_exact` and `path_regex`",
            Some("split it into two [[route]] blocks".into()),
        );
    }
    if let Some(prefix) = &f.path_prefix {
        PathMatch::Prefix(check_paths(p, prefix, &format!("{key}.path_prefix")))
    } else if let Some(exact) = &f.path_exact {
        PathMatch::Exact(check_paths(p, exact, &format!("{key}.path_exact")))
    } else if let Some(re) = &f.path_regex {
        match Regex::new(re.get_ref()) {
            Ok(re) => PathMatch::Regex(re),
            Err(e) => {
                p.push(
                    Some(re.span()),
                    format!("{key}.path_regex"),
                    format!(
                        "invalid regex: {}",
                        e.to_string().replace('\n', "\n        ")
                    ),
                    Some(
                        "the syntax is Rust's `regex` crate (no look-around or back-references)"
                            .into(),
                    ),
                );
                PathMatch::Any
            }
        }
    } else {
        PathMatch::Any
    }
}

fn check_paths(p: &mut Problems<'_>, v: &Spanned<OneOrMany>, key: &str) -> Vec<String> {
    let list = one_or_many(v);
    if list.is_empty() {
        p.push(
            Some(v.span()),
            key,
            "the list is empty, so this route matches no request",
            None,
        );
    }
    for path in &list {
        if !path.starts_with('/') {
            p.push(
                Some(v.span()),
                key,
                format!("`{path}` does not start with `/`"),
                Some(format!("write \"/{path}\"")),
            );
        } else if path.contains('?') {
            p.push(
                Some(v.span()),
                key,
                format!("`{path}` contains a query; paths are matched without the query"),
                None,
            );
        }
    }
    list.into_iter().map(str::to_owned).collect()
}

/// `upstream`, `static` or `redirect`: exactly one. On a problem the route
/// points at upstream 0, which is never served because the config is rejected.
fn action(
    key: &str,
    r: &Spanned<FileRoute>,
    upstreams: &[UpstreamConfig],
    base: &Path,
    p: &mut Problems<'_>,
) -> RouteAction {
    let f = r.get_ref();
    match (&f.upstream, &f.static_files, &f.redirect) {
        (Some(u), None, None) => upstream_action(key, u, upstreams, p),
        (None, Some(s), None) => super::static_files::action(key, s.get_ref(), base, p),
        (None, None, Some(redirect)) => redirect_action(key, redirect.get_ref(), p),
        (None, None, None) => {
            let help = match upstreams.first() {
                Some(u) => format!(
                    "add `upstream = \"{}\"`, or `static = {{ root = \"dist\" }}` to serve files",
                    u.name
                ),
                None => "add an [upstream.NAME] table and `upstream = \"NAME\"` here, or `static = { root = \"dist\" }` to serve files".into(),
            };
            p.push(
                Some(r.span()),
                key,
                "a route needs `upstream`, `static` or `redirect`",
                Some(help),
            );
            RouteAction::Upstream(0)
        }
        _ => {
            p.push(
                Some(r.span()),
                key,
                "a route has exactly one of `upstream`, `static` and `redirect`",
                Some("split it into two [[route]] blocks".into()),
            );
            RouteAction::Upstream(0)
        }
    }
}

fn upstream_action(
    key: &str,
    u: &Spanned<String>,
    upstreams: &[UpstreamConfig],
    p: &mut Problems<'_>,
) -> RouteAction {
    if let Some(idx) = upstreams.iter().position(|x| *x.name == **u.get_ref()) {
        return RouteAction::Upstream(idx);
    }
    let help = match did_you_mean(u.get_ref(), upstreams.iter().map(|x| &*x.name)) {
        Some(s) => format!("did you mean `{s}`?"),
        None if upstreams.is_empty() => format!(
            "define it:\n        [upstream.{}]\n        servers = [\"host:port\"]",
            u.get_ref()
        ),
        None => format!(
            "defined upstreams: {}",
            upstreams
                .iter()
                .map(|x| format!("`{}`", x.name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    p.push(
        Some(u.span()),
        format!("{key}.upstream"),
        format!("unknown upstream `{}`", u.get_ref()),
        Some(help),
    );
    RouteAction::Upstream(0)
}

fn redirect_action(key: &str, rd: &FileRedirect, p: &mut Problems<'_>) -> RouteAction {
    let to = rd.to.get_ref().clone();
    if to.trim().is_empty() {
        p.push(
            Some(rd.to.span()),
            format!("{key}.redirect.to"),
            "`to` is empty",
            Some("e.g. to = \"https://example.com{uri}\"".into()),
        );
    }
    for placeholder in placeholders(&to) {
        if !matches!(placeholder, "uri" | "host" | "path" | "query" | "scheme") {
            p.push(
                Some(rd.to.span()),
                format!("{key}.redirect.to"),
                format!("unknown placeholder `{{{placeholder}}}`"),
                Some("available: {scheme}, {host}, {path}, {query}, {uri} (path and query)".into()),
            );
        }
    }
    let status = match &rd.status {
        None => StatusCode::PERMANENT_REDIRECT,
        Some(s) => match *s.get_ref() {
            301 | 302 | 303 | 307 | 308 => {
                StatusCode::from_u16(*s.get_ref() as u16).expect("valid status")
            }
            other => {
                p.push(
                    Some(s.span()),
                    format!("{key}.redirect.status"),
                    format!("{other} is not a redirect status"),
                    Some("use 301, 302, 303, 307 or 308".into()),
                );
                StatusCode::PERMANENT_REDIRECT
            }
        },
    };
    RouteAction::Redirect { to, status }
}

fn max_body_size(key: &str, f: &FileRoute, p: &mut Problems<'_>) -> Option<u64> {
    let s = f.max_body_size.as_ref()?;
    match s.get_ref() {
        FileSize::Bytes(n) if *n > 0 => Some(*n as u64),
        FileSize::Text(t) => parse_size(t).or_else(|| {
            p.push(
                Some(s.span()),
                format!("{key}.max_body_size"),
                format!("`{t}` is not a size"),
                Some("write a number of bytes or e.g. \"10MB\", \"512KiB\", \"1GB\"".into()),
            );
            None
        }),
        FileSize::Bytes(n) => {
            p.push(
                Some(s.span()),
                format!("{key}.max_body_size"),
                format!("{n} is not a positive size"),
                None,
            );
            None
        }
    }
}

fn websocket(
    p: &mut Problems<'_>,
    ws: &Option<Spanned<FileWebSocket>>,
    key: &str,
) -> WebSocketConfig {
    let mut out = WebSocketConfig::default();
    let Some(ws) = ws else { return out };
    let f = ws.get_ref();
    if let Some(d) = duration(p, &f.idle_timeout, key, "idle_timeout") {
        out.idle_timeout = d;
    }
    out.max_lifetime = duration(p, &f.max_lifetime, key, "max_lifetime");
    out.ping_interval = duration(p, &f.ping_interval, key, "ping_interval");
    if let (Some(ping), Some(span)) = (out.ping_interval, f.ping_interval.as_ref()) {
        if ping >= out.idle_timeout {
            p.push(
                Some(span.span()),
                format!("{key}.ping_interval"),
                format!(
                    "a ping every {ping:?} cannot keep a session with idle_timeout {:?} alive",
                    out.idle_timeout
                ),
                Some("make ping_interval shorter than idle_timeout".into()),
            );
        }
    }
    for (i, origin) in f.allowed_origins.iter().flatten().enumerate() {
        match OriginPattern::parse(origin.get_ref()) {
            Ok(pattern) => out.allowed_origins.push(pattern),
            Err(e) => p.push(
                Some(origin.span()),
                format!("{key}.allowed_origins[{i}]"),
                e.to_string(),
                None,
            ),
        }
    }
    out.require_origin = f.require_origin.as_ref().is_some_and(|r| *r.get_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::assert_semantic;

    #[test]
    fn semantic_checks() {
        assert_semantic(&[
            (
                "path_prefix = \"/\"",
                "path_prefix = \"api\"",
                "does not start with `/`",
            ),
            (
                "path_prefix = \"/\"",
                "path_regex = \"(unclosed\"",
                "invalid regex",
            ),
            (
                "path_prefix = \"/\"",
                "path_prefix = \"/\"\npath_exact = \"/x\"",
                "only one of",
            ),
            (
                "path_prefix = \"/\"",
                "path_prefix = \"/\"\nhosts = [\"https://x.com\"]",
                "is not a host name",
            ),
            (
                "upstream = \"backend\"",
                "",
                "needs `upstream`, `static` or `redirect`",
            ),
            (
                "upstream = \"backend\"",
                "redirect = { to = \"https://x{url}\" }",
                "unknown placeholder `{url}`",
            ),
            (
                "upstream = \"backend\"",
                "redirect = { to = \"https://x\", status = 200 }",
                "not a redirect status",
            ),
            (
                "upstream = \"backend\"",
                "upstream = \"backend\"\nrequest_headers = { set = { \"Bad Name\" = \"x\" } }",
                "not a valid header name",
            ),
            (
                "upstream = \"backend\"",
                "upstream = \"backend\"\nread_timeout = \"0s\"",
                "greater than zero",
            ),
            (
                "upstream = \"backend\"",
                "upstream = \"backend\"\nwebsocket = { allowed_origins = [\"example.com\"] }",
                "is not an origin",
            ),
            (
                "upstream = \"backend\"",
                "upstream = \"backend\"\nwebsocket = { idle_timeout = \"30s\", ping_interval = \"1m\" }",
                "shorter than idle_timeout",
            ),
        ]);
    }
}
