//! `FileConfig` → `Config`, collecting every problem before giving up.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use regex::Regex;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{Problems, did_you_mean};
use super::file::{
    FileConfig, FileHeaderOps, FileRoute, FileServerEntry, FileSize, FileWebSocket, OneOrMany,
    SCHEMA, Shape,
};
use super::{
    AccessLogConfig, AccessLogFormat, AccessLogTarget, AdminConfig, Balance, CertificateConfig,
    Config, ConfigError, HeaderOps, HealthConfig, IpNet, ListenerConfig, ListenerKind,
    OriginPattern, RouteAction, RouteConfig, ServerConfig, UpstreamConfig, WebSocketConfig,
    parse_duration,
};
use crate::router::{HostPattern, Matcher, PathMatch};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
const DEFAULT_POOL_MAX_IDLE: usize = 256;

pub(super) fn parse(src: &str, name: &str, base: &Path) -> Result<Config, ConfigError> {
    let mut problems = Problems::new(src);

    // 1. Syntax: every error the parser can recover from.
    let (doc, syntax_errors) = DeTable::parse_recoverable(src);
    for e in &syntax_errors {
        problems.push(e.span(), "", first_line(e.message()), None);
    }
    if !problems.is_empty() {
        return Err(problems.into_error(name));
    }

    // 2. Unknown keys, all of them, with suggestions.
    check_keys(doc.get_ref(), SCHEMA, "", &mut problems);

    // 3. Types (serde stops at the first one; unknown keys were reported above).
    let file: FileConfig = match toml::from_str(src) {
        Ok(file) => file,
        Err(e) => {
            if !e.message().starts_with("unknown field") || problems.is_empty() {
                problems.push(e.span(), "", first_line(e.message()), None);
            }
            return Err(problems.into_error(name));
        }
    };
    if !problems.is_empty() {
        return Err(problems.into_error(name));
    }

    // 4. Meaning.
    let config = build(file, name, base, &mut problems);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems.into_error(name))
    }
}

fn first_line(msg: &str) -> String {
    msg.lines().next().unwrap_or(msg).trim().to_owned()
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
            Some((_, shape)) => check_value(value, *shape, &key_path, problems),
        }
    }
}

fn check_value(
    value: &Spanned<DeValue<'_>>,
    shape: Shape,
    path: &str,
    problems: &mut Problems<'_>,
) {
    match (shape, value.get_ref()) {
        (Shape::Table(fields), DeValue::Table(t)) => check_keys(t, fields, path, problems),
        (Shape::Tables(fields), DeValue::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if let DeValue::Table(t) = item.get_ref() {
                    check_keys(t, fields, &format!("{path}[{i}]"), problems);
                }
            }
        }
        (Shape::Named(fields), DeValue::Table(t)) => {
            for (name, item) in t.iter() {
                if let DeValue::Table(inner) = item.get_ref() {
                    check_keys(inner, fields, &join(path, name.get_ref()), problems);
                }
            }
        }
        // Wrong types are reported by serde with a precise message.
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn build(file: FileConfig, name: &str, base: &Path, p: &mut Problems<'_>) -> Config {
    let server = build_server(file.server, base, p);
    let admin = file.admin.as_ref().and_then(|a| build_admin(a, p));

    let mut listeners = Vec::new();
    let mut seen_addrs = HashSet::new();
    for (i, l) in file.listen.iter().enumerate() {
        let key = format!("listen[{i}]");
        let l = l.get_ref();
        let addr = match parse_listen_addr(l.addr.get_ref()) {
            Some(addr) => addr,
            None => {
                p.push(
                    Some(l.addr.span()),
                    format!("{key}.addr"),
                    format!("`{}` is not an address and port", l.addr.get_ref()),
                    Some("write it as \"0.0.0.0:443\", \"[::]:443\" or \"127.0.0.1:8443\"".into()),
                );
                continue;
            }
        };
        if addr.port() != 0 && !seen_addrs.insert(addr) {
            p.push(
                Some(l.addr.span()),
                format!("{key}.addr"),
                format!("{addr} is listed twice"),
                Some("remove one of the [[listen]] blocks".into()),
            );
        } else if let Some(other) = seen_addrs.iter().find(|o| {
            **o != addr
                && addr.port() != 0
                && o.port() == addr.port()
                && (o.ip().is_unspecified() || addr.ip().is_unspecified())
        }) {
            p.push(
                Some(l.addr.span()),
                format!("{key}.addr"),
                format!("{addr} conflicts with {other}: a wildcard address takes port {} on every interface", addr.port()),
                Some("listen once on the wildcard address, or only on specific addresses".into()),
            );
        }
        let tls = l.tls.as_ref().is_some_and(|t| *t.get_ref());
        let redirect = l.redirect_https.as_ref().is_some_and(|r| *r.get_ref());
        let kind = match (tls, redirect) {
            (true, true) => {
                p.push(
                    l.redirect_https.as_ref().map(Spanned::span),
                    format!("{key}.redirect_https"),
                    "a listener cannot both terminate TLS and redirect to https",
                    Some("use one [[listen]] with `tls = true` and another with `redirect_https = true`".into()),
                );
                ListenerKind::Tls
            }
            (true, false) => ListenerKind::Tls,
            (false, true) => ListenerKind::RedirectHttps,
            (false, false) => ListenerKind::Plain,
        };
        if let Some(h2) = &l.http2 {
            if *h2.get_ref() && kind != ListenerKind::Tls {
                p.push(
                    Some(h2.span()),
                    format!("{key}.http2"),
                    "HTTP/2 is offered by ALPN, so only on TLS listeners",
                    Some("remove `http2`, or add `tls = true`".into()),
                );
            }
        }
        let http2 = l.http2.as_ref().is_none_or(|h| *h.get_ref());
        if let Some(ws) = &l.websocket_over_http2 {
            if *ws.get_ref() && !(kind == ListenerKind::Tls && http2) {
                p.push(
                    Some(ws.span()),
                    format!("{key}.websocket_over_http2"),
                    "WebSockets over HTTP/2 need a TLS listener with HTTP/2",
                    Some("remove `websocket_over_http2`; WebSockets over HTTP/1.1 work on every listener".into()),
                );
            }
        }
        let websocket_over_http2 = kind == ListenerKind::Tls
            && http2
            && l.websocket_over_http2.as_ref().is_none_or(|w| *w.get_ref());
        listeners.push(ListenerConfig {
            addr,
            kind,
            http2,
            websocket_over_http2,
        });
    }
    if file.listen.is_empty() {
        p.push(
            None,
            "listen",
            "no listeners: ferry would accept nothing",
            Some(
                "add\n        [[listen]]\n        addr = \"0.0.0.0:443\"\n        tls = true"
                    .into(),
            ),
        );
    }

    let certificates: Vec<_> = file
        .certificate
        .iter()
        .map(|c| CertificateConfig {
            cert: base.join(c.get_ref().cert.get_ref()),
            key: base.join(c.get_ref().key.get_ref()),
        })
        .collect();
    if certificates.is_empty() && listeners.iter().any(|l| l.kind == ListenerKind::Tls) {
        let span = file
            .listen
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

    let mut upstreams = Vec::new();
    for (uname, u) in &file.upstream {
        let key = format!("upstream.{}", uname.get_ref());
        let u = u.get_ref();
        let mut servers = Vec::new();
        let mut weights = Vec::new();
        for (i, s) in u.servers.get_ref().iter().enumerate() {
            let (addr, weight) = match s.get_ref() {
                FileServerEntry::Addr(a) => (a.as_str(), 1),
                FileServerEntry::Weighted { addr, weight } => (addr.as_str(), *weight),
            };
            if !(1..=100).contains(&weight) {
                p.push(
                    Some(s.span()),
                    format!("{key}.servers[{i}].weight"),
                    format!("weight {weight} is out of range"),
                    Some("use a weight from 1 to 100".into()),
                );
            }
            match parse_server(addr) {
                Ok(auth) => {
                    servers.push(auth);
                    weights.push(weight.clamp(1, 100) as u32);
                }
                Err(why) => p.push(Some(s.span()), format!("{key}.servers[{i}]"), why.0, why.1),
            }
        }
        let balance = match u.balance.as_ref().map(|b| b.get_ref().as_str()) {
            None | Some("round_robin") => Balance::RoundRobin,
            Some("least_requests") => Balance::LeastRequests,
            Some("random_two") => Balance::RandomTwo,
            Some(other) => {
                let help = did_you_mean(other, ["round_robin", "least_requests", "random_two"])
                    .map_or(
                        "use \"round_robin\", \"least_requests\" or \"random_two\"".to_owned(),
                        |s| format!("did you mean `{s}`?"),
                    );
                p.push(
                    u.balance.as_ref().map(Spanned::span),
                    format!("{key}.balance"),
                    format!("unknown balance `{other}`"),
                    Some(help),
                );
                Balance::RoundRobin
            }
        };
        let retries = count(p, &u.retries, &format!("{key}.retries"), true).unwrap_or(2) as u32;
        let max_fails =
            count(p, &u.max_fails, &format!("{key}.max_fails"), true).unwrap_or(3) as u32;
        let fail_timeout =
            duration(p, &u.fail_timeout, &key, "fail_timeout").unwrap_or(Duration::from_secs(10));
        let resolve_every =
            duration(p, &u.resolve_every, &key, "resolve_every").unwrap_or(Duration::from_secs(5));
        let health = u.health.as_ref().map(|h| {
            let f = h.get_ref();
            let hkey = format!("{key}.health");
            if !f.path.get_ref().starts_with('/') {
                p.push(
                    Some(f.path.span()),
                    format!("{hkey}.path"),
                    format!("`{}` does not start with `/`", f.path.get_ref()),
                    Some("e.g. path = \"/health\"".into()),
                );
            }
            HealthConfig {
                path: f.path.get_ref().clone(),
                interval: duration(p, &f.interval, &hkey, "interval")
                    .unwrap_or(Duration::from_secs(5)),
                timeout: duration(p, &f.timeout, &hkey, "timeout")
                    .unwrap_or(Duration::from_secs(2)),
                healthy: count(p, &f.healthy, &format!("{hkey}.healthy"), false).unwrap_or(2)
                    as u32,
                unhealthy: count(p, &f.unhealthy, &format!("{hkey}.unhealthy"), false).unwrap_or(3)
                    as u32,
            }
        });
        if u.servers.get_ref().is_empty() {
            p.push(
                Some(u.servers.span()),
                format!("{key}.servers"),
                "an upstream needs at least one server",
                Some("e.g. servers = [\"backend:8000\"]".into()),
            );
        }
        let connect_timeout = duration(p, &u.connect_timeout, &key, "connect_timeout")
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let read_timeout =
            duration(p, &u.read_timeout, &key, "read_timeout").unwrap_or(DEFAULT_READ_TIMEOUT);
        let pool_idle_timeout = duration(p, &u.pool_idle_timeout, &key, "pool_idle_timeout")
            .unwrap_or(DEFAULT_POOL_IDLE_TIMEOUT);
        let pool_max_idle = count(p, &u.pool_max_idle, &format!("{key}.pool_max_idle"), true)
            .unwrap_or(DEFAULT_POOL_MAX_IDLE);
        upstreams.push(UpstreamConfig {
            name: uname.get_ref().as_str().into(),
            servers,
            connect_timeout,
            read_timeout,
            pool_idle_timeout,
            pool_max_idle,
            weights,
            balance,
            retries,
            max_fails,
            fail_timeout,
            resolve_every,
            health,
        });
    }

    let mut routes = Vec::new();
    let mut names = HashSet::new();
    for (i, r) in file.route.iter().enumerate() {
        let route = build_route(i, r, &upstreams, p);
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

    Config {
        source: name.to_owned(),
        server,
        listeners,
        certificates,
        upstreams,
        routes,
        admin,
    }
}

fn build_admin(
    admin: &Spanned<super::file::FileAdmin>,
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
    let remote_ok = f.allow_remote.as_ref().is_some_and(|r| *r.get_ref());
    if !addr.ip().is_loopback() && !remote_ok {
        p.push(
            Some(f.addr.span()),
            "admin.addr",
            format!("{addr} is reachable from other machines, and the admin listener can reload ferry"),
            Some("use 127.0.0.1:9901, or set `allow_remote = true` if the network is trusted (a docker-compose network, for a metrics scraper)".into()),
        );
    }
    Some(AdminConfig { addr })
}

fn build_access_log(
    log: &Spanned<super::file::FileAccessLog>,
    base: &Path,
    p: &mut Problems<'_>,
) -> Option<AccessLogConfig> {
    let f = log.get_ref();
    let format = match f.format.as_ref().map(|s| s.get_ref().as_str()) {
        None | Some("text") => AccessLogFormat::Text,
        Some("json") => AccessLogFormat::Json,
        Some(other) => {
            p.push(
                f.format.as_ref().map(Spanned::span),
                "server.access_log.format",
                format!("unknown format `{other}`"),
                Some("use \"json\" or \"text\"".into()),
            );
            return None;
        }
    };
    let target = match f.path.as_ref().map(|s| s.get_ref().as_str()) {
        None | Some("stdout") => AccessLogTarget::Stdout,
        Some("stderr") => AccessLogTarget::Stderr,
        Some("") => {
            p.push(
                f.path.as_ref().map(Spanned::span),
                "server.access_log.path",
                "the path is empty",
                Some("use \"stdout\", \"stderr\" or a file path".into()),
            );
            return None;
        }
        Some(path) => AccessLogTarget::File(base.join(path)),
    };
    Some(AccessLogConfig {
        format,
        target,
        query: f.query.as_ref().is_some_and(|q| *q.get_ref()),
    })
}

fn build_server(
    file: Option<Spanned<super::file::FileServer>>,
    base: &Path,
    p: &mut Problems<'_>,
) -> ServerConfig {
    let mut server = ServerConfig::default();
    let Some(file) = file else { return server };
    let f = file.get_ref();
    if let Some(list) = &f.trusted_proxies {
        for (i, s) in list.iter().enumerate() {
            match IpNet::parse(s.get_ref().trim()) {
                Some(net) => server.trusted_proxies.push(net),
                None => p.push(
                    Some(s.span()),
                    format!("server.trusted_proxies[{i}]"),
                    format!("`{}` is not an IP address or CIDR range", s.get_ref()),
                    Some("e.g. \"10.0.0.0/8\", \"172.16.0.0/12\" or \"192.168.1.10\"".into()),
                ),
            }
        }
    }
    let key = "server";
    if let Some(d) = duration(p, &f.shutdown_grace, key, "shutdown_grace") {
        server.shutdown_grace = d;
    }
    if let Some(d) = duration(p, &f.handshake_timeout, key, "handshake_timeout") {
        server.handshake_timeout = d;
    }
    if let Some(d) = duration(p, &f.idle_timeout, key, "idle_timeout") {
        server.idle_timeout = d;
    }
    if let Some(d) = duration(p, &f.header_read_timeout, key, "header_read_timeout") {
        server.header_read_timeout = d;
    }
    if let Some(n) = count(p, &f.max_connections, "server.max_connections", false) {
        server.max_connections = n;
    }
    server.workers = count(p, &f.workers, "server.workers", false);
    server.access_log = f
        .access_log
        .as_ref()
        .and_then(|a| build_access_log(a, base, p));
    server.pid_file = f.pid_file.as_ref().map(|s| base.join(s.get_ref()));
    server
}

fn build_route(
    i: usize,
    r: &Spanned<FileRoute>,
    upstreams: &[UpstreamConfig],
    p: &mut Problems<'_>,
) -> RouteConfig {
    let key = format!("route[{i}]");
    let f = r.get_ref();
    let name: std::sync::Arc<str> = f
        .name
        .as_ref()
        .map_or_else(|| format!("route{i}"), |n| n.get_ref().clone())
        .into();
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

    let mut hosts = Vec::new();
    if let Some(h) = &f.hosts {
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
    }

    let conditions = [
        f.path_prefix.is_some(),
        f.path_exact.is_some(),
        f.path_regex.is_some(),
    ];
    if conditions.iter().filter(|c| **c).count() > 1 {
        p.push(
            Some(r.span()),
            key.clone(),
            "a route can have only one of `path_prefix`, `path_exact` and `path_regex`",
            Some("split it into two [[route]] blocks".into()),
        );
    }
    let path = if let Some(prefix) = &f.path_prefix {
        let list = check_paths(p, prefix, &format!("{key}.path_prefix"));
        PathMatch::Prefix(list)
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
    };

    let action = match (&f.upstream, &f.redirect) {
        (Some(_), Some(redirect)) => {
            p.push(
                Some(redirect.span()),
                format!("{key}.redirect"),
                "a route has either `upstream` or `redirect`, not both",
                None,
            );
            RouteAction::Upstream(0)
        }
        (None, None) => {
            let help = match upstreams.first() {
                Some(u) => format!("add `upstream = \"{}\"`", u.name),
                None => "add an [upstream.NAME] table and `upstream = \"NAME\"` here".into(),
            };
            p.push(
                Some(r.span()),
                key.clone(),
                "a route needs `upstream` or `redirect`",
                Some(help),
            );
            RouteAction::Upstream(0)
        }
        (Some(u), None) => match upstreams.iter().position(|x| *x.name == **u.get_ref()) {
            Some(idx) => RouteAction::Upstream(idx),
            None => {
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
        },
        (None, Some(redirect)) => {
            let rd = redirect.get_ref();
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
                        Some(
                            "available: {scheme}, {host}, {path}, {query}, {uri} (path and query)"
                                .into(),
                        ),
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
    };

    let read_timeout = duration(p, &f.read_timeout, &key, "read_timeout");
    let max_body_size = f.max_body_size.as_ref().and_then(|s| match s.get_ref() {
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
    });
    if f.read_timeout.is_some() && f.redirect.is_some() {
        p.push(
            f.read_timeout.as_ref().map(Spanned::span),
            format!("{key}.read_timeout"),
            "`read_timeout` has no effect on a redirect route",
            Some("remove it".into()),
        );
    }
    let request_headers = header_ops(p, &f.request_headers, &format!("{key}.request_headers"));
    let response_headers = header_ops(p, &f.response_headers, &format!("{key}.response_headers"));
    let websocket = websocket(p, &f.websocket, &format!("{key}.websocket"));
    if f.websocket.is_some() && f.redirect.is_some() {
        p.push(
            f.websocket.as_ref().map(Spanned::span),
            format!("{key}.websocket"),
            "`websocket` has no effect on a redirect route",
            Some("remove it".into()),
        );
    }
    RouteConfig {
        name,
        matcher: Matcher { hosts, path },
        action,
        read_timeout,
        max_body_size,
        request_headers,
        response_headers,
        websocket,
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
            Err(why) => p.push(
                Some(origin.span()),
                format!("{key}.allowed_origins[{i}]"),
                why,
                None,
            ),
        }
    }
    out.require_origin = f.require_origin.as_ref().is_some_and(|r| *r.get_ref());
    out
}

/// `"10MB"` (10^6), `"10MiB"` (2^20), `"512KB"`, `"1GB"`, `"100"` (bytes).
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split].parse().ok()?;
    let unit: u64 = match s[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(unit).filter(|n| *n > 0)
}

fn one_or_many(v: &Spanned<OneOrMany>) -> Vec<&str> {
    match v.get_ref() {
        OneOrMany::One(s) => vec![s.as_str()],
        OneOrMany::Many(list) => list.iter().map(String::as_str).collect(),
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

fn placeholders(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find('{') {
        match rest[start..].find('}') {
            Some(end) => {
                out.push(&rest[start + 1..start + end]);
                rest = &rest[start + end + 1..];
            }
            None => break,
        }
    }
    out
}

fn header_ops(p: &mut Problems<'_>, ops: &Option<Spanned<FileHeaderOps>>, key: &str) -> HeaderOps {
    let mut out = HeaderOps::default();
    let Some(ops) = ops else { return out };
    let mut pair = |name: &Spanned<String>,
                    value: &Spanned<String>,
                    what: &str|
     -> Option<(HeaderName, HeaderValue)> {
        let n = header_name(p, name, &format!("{key}.{what}"))?;
        match HeaderValue::from_str(value.get_ref()) {
            Ok(v) => Some((n, v)),
            Err(_) => {
                p.push(
                    Some(value.span()),
                    format!("{key}.{what}.{}", name.get_ref()),
                    "header values cannot contain control characters or newlines",
                    None,
                );
                None
            }
        }
    };
    let f = ops.get_ref();
    out.set = f
        .set
        .iter()
        .filter_map(|(n, v)| pair(n, v, "set"))
        .collect();
    out.add = f
        .add
        .iter()
        .filter_map(|(n, v)| pair(n, v, "add"))
        .collect();
    out.remove = f
        .remove
        .iter()
        .filter_map(|n| header_name(p, n, &format!("{key}.remove")))
        .collect();
    out
}

fn header_name(p: &mut Problems<'_>, name: &Spanned<String>, key: &str) -> Option<HeaderName> {
    match HeaderName::from_bytes(name.get_ref().as_bytes()) {
        Ok(n) => Some(n),
        Err(_) => {
            p.push(
                Some(name.span()),
                key,
                format!("`{}` is not a valid header name", name.get_ref()),
                Some("header names are letters, digits and `-`, e.g. \"X-Frame-Options\"".into()),
            );
            None
        }
    }
}

fn duration(
    p: &mut Problems<'_>,
    v: &Option<Spanned<String>>,
    table: &str,
    field: &str,
) -> Option<Duration> {
    let v = v.as_ref()?;
    match parse_duration(v.get_ref()) {
        Some(d) if !d.is_zero() => Some(d),
        Some(_) => {
            p.push(
                Some(v.span()),
                join(table, field),
                "must be greater than zero",
                None,
            );
            None
        }
        None => {
            p.push(
                Some(v.span()),
                join(table, field),
                format!("`{}` is not a duration", v.get_ref()),
                Some(
                    "write a number and a unit: \"500ms\", \"30s\", \"5m\", \"24h\", \"7d\"".into(),
                ),
            );
            None
        }
    }
}

fn count(
    p: &mut Problems<'_>,
    v: &Option<Spanned<i64>>,
    key: &str,
    zero_ok: bool,
) -> Option<usize> {
    let v = v.as_ref()?;
    let n = *v.get_ref();
    if n < 0 || (n == 0 && !zero_ok) {
        p.push(
            Some(v.span()),
            key,
            format!("{n} is out of range"),
            Some(format!(
                "use a number {} or more",
                if zero_ok { 0 } else { 1 }
            )),
        );
        return None;
    }
    usize::try_from(n).ok()
}

/// `0.0.0.0:443`, `[::]:443`, `:443` (all IPv4 interfaces) or `443`.
fn parse_listen_addr(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    if let Ok(addr) = s.parse() {
        return Some(addr);
    }
    let port = s.strip_prefix(':').unwrap_or(s);
    let port: u16 = port.parse().ok()?;
    Some(SocketAddr::from(([0, 0, 0, 0], port)))
}

type Why = (String, Option<String>);

/// An upstream server: `host:port`, optionally written with `http://`.
fn parse_server(s: &str) -> Result<http::uri::Authority, Why> {
    let trimmed = s.trim();
    if trimmed.starts_with("https://") {
        return Err((
            "TLS to upstreams is not supported yet".to_owned(),
            Some("ferry terminates TLS at the edge; reach the backend over plain http: \"host:port\"".to_owned()),
        ));
    }
    let rest = trimmed.strip_prefix("http://").unwrap_or(trimmed);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err((
            format!("`{s}` has a path; upstream servers are host:port only"),
            Some("route paths are forwarded unchanged; remove the path".into()),
        ));
    }
    let with_port = if has_port(rest) {
        rest.to_owned()
    } else {
        format!("{rest}:80")
    };
    match with_port.parse::<http::uri::Authority>() {
        Ok(a) if !a.host().is_empty() && !a.as_str().contains('@') => Ok(a),
        _ => Err((
            format!("`{s}` is not a host:port"),
            Some("e.g. \"backend:8000\" or \"127.0.0.1:8000\"".into()),
        )),
    }
}

fn has_port(s: &str) -> bool {
    match s.rfind(':') {
        Some(i) => {
            s.starts_with('[') && s[..i].ends_with(']')
                || !s.starts_with('[') && !s[..i].contains(':')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(src: &str) -> Result<Config, ConfigError> {
        parse(src, "proxy.toml", Path::new("/etc/ferry"))
    }

    fn problems(src: &str) -> Vec<String> {
        let err = parse_str(src).expect_err("config should be invalid");
        err.problems()
            .iter()
            .map(|p| {
                format!(
                    "{}:{}: {}: {} | {}",
                    p.line.unwrap_or(0),
                    p.col.unwrap_or(0),
                    p.key,
                    p.message,
                    p.help.clone().unwrap_or_default()
                )
            })
            .collect()
    }

    const MINIMAL: &str = r#"
[[listen]]
addr = "127.0.0.1:8080"

[upstream.backend]
servers = ["backend:8000"]

[[route]]
path_prefix = "/"
upstream = "backend"
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse_str(MINIMAL).unwrap();
        assert_eq!(c.listeners[0].kind, ListenerKind::Plain);
        assert_eq!(c.upstreams[0].servers[0].as_str(), "backend:8000");
        assert_eq!(c.upstreams[0].read_timeout, DEFAULT_READ_TIMEOUT);
        assert_eq!(&*c.routes[0].name, "route0");
        assert_eq!(c.server.shutdown_grace, Duration::from_secs(30));
    }

    #[test]
    fn every_schema_key_is_understood_by_serde() {
        // A file using every key in SCHEMA: if serde rejects one, the two lists drifted.
        let src = r#"
[admin]
addr = "127.0.0.1:9901"
allow_remote = false

[server]
trusted_proxies = ["10.0.0.0/8"]
shutdown_grace = "30s"
access_log = { format = "json", path = "access.log", query = true }
pid_file = "ferry.pid"
handshake_timeout = "10s"
header_read_timeout = "30s"
idle_timeout = "3m"
max_connections = 100
workers = 1

[[listen]]
addr = "127.0.0.1:8443"
tls = true
http2 = true
websocket_over_http2 = true
[[listen]]
addr = "127.0.0.1:8080"
redirect_https = true

[[certificate]]
cert = "c.pem"
key = "k.pem"

[upstream.backend]
servers = ["http://backend:8000", { addr = "backend2:8000", weight = 3 }]
connect_timeout = "5s"
read_timeout = "60s"
pool_idle_timeout = "4s"
pool_max_idle = 8
balance = "least_requests"
retries = 1
max_fails = 2
fail_timeout = "30s"
resolve_every = "10s"
health = { path = "/health", interval = "5s", timeout = "2s", healthy = 2, unhealthy = 3 }

[[route]]
name = "old"
hosts = ["old.example.com"]
path_exact = ["/old"]
redirect = { to = "https://example.com{uri}", status = 301 }

[[route]]
name = "api"
hosts = "*.example.com"
path_regex = "^/api"
upstream = "backend"
read_timeout = "2m"
request_headers = { set = { "X-A" = "1" }, add = { "X-B" = "2" }, remove = ["X-C"] }
response_headers = { set = { "X-D" = "1" }, add = {}, remove = [] }
websocket = { idle_timeout = "1h", max_lifetime = "12h", ping_interval = "30s", allowed_origins = ["https://*.example.com", "http://localhost:5173"], require_origin = true }
"#;
        let c = parse_str(src).unwrap();
        assert_eq!(c.certificates[0].cert, Path::new("/etc/ferry/c.pem"));
        assert_eq!(c.admin.as_ref().unwrap().addr.port(), 9901);
        let log = c.server.access_log.as_ref().unwrap();
        assert_eq!(log.format, AccessLogFormat::Json);
        assert_eq!(
            log.target,
            AccessLogTarget::File("/etc/ferry/access.log".into())
        );
        assert_eq!(
            c.server.pid_file.as_deref(),
            Some(Path::new("/etc/ferry/ferry.pid"))
        );
        assert_eq!(c.https_port(), Some(8443));
        assert_eq!(c.listeners[1].kind, ListenerKind::RedirectHttps);
        assert!(
            matches!(c.routes[0].action, RouteAction::Redirect { status, .. } if status == 301)
        );
        assert_eq!(c.routes[1].read_timeout, Some(Duration::from_secs(120)));
        assert_eq!(c.routes[1].request_headers.set.len(), 1);
        assert_eq!(
            c.routes[1].websocket.idle_timeout,
            Duration::from_secs(3600)
        );
        assert_eq!(c.routes[1].websocket.allowed_origins.len(), 2);
        assert!(c.routes[1].websocket.require_origin);
        assert!(c.listeners[0].websocket_over_http2);
        assert!(!c.listeners[1].websocket_over_http2);
    }

    #[test]
    fn every_problem_at_once_with_line_key_and_help() {
        let src = r#"
[[listen]]
addr = "127.0.0.1:8080"

[upstream.backend]
servers = ["backend:8000"]
conect_timeout = "5s"

[[route]]
name = "api"
path_prefix = "/api"
upstream = "backnd"

[[route]]
path_prefix = "/"
upstrem = "backend"
"#;
        let got = problems(src);
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(got[0].starts_with("7:1: upstream.backend.conect_timeout: unknown key `conect_timeout` | did you mean `connect_timeout`?"), "{got:#?}");
        assert!(
            got[1].starts_with(
                "16:1: route[1].upstrem: unknown key `upstrem` | did you mean `upstream`?"
            ),
            "{got:#?}"
        );

        // Once keys are right, the meaning is checked: again, all at once.
        let src = src
            .replace("conect_timeout = \"5s\"", "connect_timeout = \"5\"")
            .replace("upstrem", "upstream");
        let got = problems(&src);
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(
            got[0].starts_with("7:19: upstream.backend.connect_timeout: `5` is not a duration"),
            "{got:#?}"
        );
        assert!(
            got[1].starts_with(
                "12:12: route[0].upstream: unknown upstream `backnd` | did you mean `backend`?"
            ),
            "{got:#?}"
        );
    }

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
            "9:1: server.shutdown: unknown key `shutdown` | known keys here: `trusted_proxies`, `shutdown_grace`, `handshake_timeout`, `header_read_timeout`, `idle_timeout`, `max_connections`, `workers`, `access_log`, `pid_file`",
            "10:16: server.access_log.formt: unknown key `formt` | did you mean `format`?",
            "14:1: listen[0].tsl: unknown key `tsl` | known keys here: `addr`, `tls`, `redirect_https`, `http2`, `websocket_over_http2`",
            "19:1: certificate[0].certs: unknown key `certs` | did you mean `cert`?",
            "23:1: upstream.backend.retrys: unknown key `retrys` | did you mean `retries`?",
            "24:30: upstream.backend.health.intervl: unknown key `intervl` | did you mean `interval`?",
            "29:32: route[0].redirect.stauts: unknown key `stauts` | did you mean `status`?",
            "30:21: route[0].request_headers.sett: unknown key `sett` | did you mean `set`?",
            "31:22: route[0].response_headers.remov: unknown key `remov` | did you mean `remove`?",
            "32:15: route[0].websocket.ping_intervall: unknown key `ping_intervall` | did you mean `ping_interval`?",
            "33:1: route[0].proxy_cache_off: unknown key `proxy_cache_off` | known keys here: `name`, `hosts`, `path_prefix`, `path_exact`, `path_regex`, `upstream`, `redirect`, `read_timeout`, `max_body_size`, `request_headers`, `response_headers`, `websocket`",
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
    fn syntax_errors_have_positions() {
        let got = problems("[[listen]\naddr = 1\n");
        assert!(got[0].starts_with("1:"), "{got:#?}");
    }

    #[test]
    fn type_errors_have_positions() {
        let got = problems(&MINIMAL.replace(
            "addr = \"127.0.0.1:8080\"",
            "addr = \"127.0.0.1:8080\"\ntls = \"yes\"",
        ));
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(got[0].starts_with("4:7:"), "{got:#?}");
    }

    #[test]
    fn semantic_checks() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "addr = \"127.0.0.1:8080\"",
                "addr = \"localhost\"",
                "is not an address and port",
            ),
            (
                "addr = \"127.0.0.1:8080\"",
                "addr = \"0.0.0.0:8080\"\n[[listen]]\naddr = \"127.0.0.1:8080\"",
                "conflicts with 0.0.0.0:8080",
            ),
            (
                "addr = \"127.0.0.1:8080\"",
                "addr = \"127.0.0.1:8080\"\ntls = true",
                "no [[certificate]]",
            ),
            (
                "servers = [\"backend:8000\"]",
                "servers = []",
                "at least one server",
            ),
            (
                "servers = [\"backend:8000\"]",
                "servers = [\"https://b:1\"]",
                "not supported yet",
            ),
            (
                "servers = [\"backend:8000\"]",
                "servers = [\"b:8000/api\"]",
                "has a path",
            ),
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
                "needs `upstream` or `redirect`",
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
        ];
        for (from, to, expect) in cases {
            let src = MINIMAL.replace(from, to);
            let got = problems(&src).join("\n");
            assert!(
                got.contains(expect),
                "{to:?}: expected {expect:?} in\n{got}"
            );
        }
        let got = problems("").join("\n");
        assert!(
            got.contains("no listeners") && got.contains("no routes"),
            "{got}"
        );
        let got = problems(&format!(
            "[server]\ntrusted_proxies = [\"10.0.0.0/99\"]\n{MINIMAL}"
        ))
        .join("\n");
        assert!(got.contains("2:20: server.trusted_proxies[0]"), "{got}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("10MB"), Some(10_000_000));
        assert_eq!(parse_size("10 MiB"), Some(10 << 20));
        assert_eq!(parse_size("1gb"), Some(1_000_000_000));
        for bad in ["", "MB", "1.5MB", "10 parsecs", "0"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        let c = parse_str(&MINIMAL.replace(
            "upstream = \"backend\"",
            "upstream = \"backend\"\nmax_body_size = \"1MiB\"",
        ))
        .unwrap();
        assert_eq!(c.routes[0].max_body_size, Some(1 << 20));
        let c = parse_str(&MINIMAL.replace(
            "upstream = \"backend\"",
            "upstream = \"backend\"\nmax_body_size = 4096",
        ))
        .unwrap();
        assert_eq!(c.routes[0].max_body_size, Some(4096));
    }

    #[test]
    fn server_addresses() {
        assert_eq!(parse_server("b:8000").unwrap().as_str(), "b:8000");
        assert_eq!(parse_server("http://b:8000/").unwrap().as_str(), "b:8000");
        assert_eq!(parse_server("b").unwrap().as_str(), "b:80");
        assert_eq!(parse_server("[::1]:9000").unwrap().as_str(), "[::1]:9000");
        assert_eq!(parse_server("[::1]").unwrap().as_str(), "[::1]:80");
        assert!(parse_server("user@b:80").is_err());
        assert!(parse_server("").is_err());
        assert_eq!(
            parse_listen_addr(":443"),
            Some(SocketAddr::from(([0, 0, 0, 0], 443)))
        );
        assert_eq!(parse_listen_addr("[::]:443").unwrap().port(), 443);
    }
}
