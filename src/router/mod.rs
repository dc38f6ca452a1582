//! Routing: host + path → the first matching route. Pure: no I/O, no
//! allocation per lookup unless the host or path needs normalising
//! ([`path`] says how a path is normalised, and which paths are refused).
//!
//! Routes are tried in file order and the first match wins, like Caddy's
//! `handle` blocks and unlike nginx's longest-prefix rule; [`Matcher::covers`]
//! lets `ferry check` warn about a route that an earlier one always takes.

use std::borrow::Cow;

use regex::Regex;

mod path;
pub use path::{normalize_path, path_refusal};

/// A `hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `example.com`, stored lowercase; matches that name only.
    Exact(String),
    /// `*.example.com`, stored as the suffix `.example.com`; matches any
    /// subdomain at any depth (as nginx does), not the bare domain.
    Wildcard(String),
}

impl HostPattern {
    /// Parses a `hosts` entry; `None` if it is not a plausible host name.
    pub fn parse(s: &str) -> Option<HostPattern> {
        let lower = s.trim_end_matches('.').to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let valid = !name.is_empty()
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            || (!wild && name.parse::<std::net::IpAddr>().is_ok())
            || (!wild && name.starts_with('[') && name.ends_with(']'));
        if !valid {
            return None;
        }
        Some(if wild {
            HostPattern::Wildcard(format!(".{name}"))
        } else {
            HostPattern::Exact(name.to_owned())
        })
    }

    /// `host` must already be lowercase and without a port.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => host == name,
            HostPattern::Wildcard(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Wildcard(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// A route's path condition.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// No path condition: every path.
    Any,
    /// Segment-aware prefixes: `/api` matches `/api` and `/api/x`, not `/apix`.
    /// A prefix ending in `/` matches by plain `starts_with`.
    Prefix(Vec<String>),
    /// Exact paths.
    Exact(Vec<String>),
    /// A regex over the path (query excluded).
    Regex(Regex),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Any => true,
            PathMatch::Prefix(prefixes) => prefixes.iter().any(|p| prefix_matches(p, path)),
            PathMatch::Exact(paths) => paths.iter().any(|p| p == path),
            PathMatch::Regex(re) => re.is_match(path),
        }
    }
}

/// As `ferry check` and `ferry route` describe it: `prefix /api, /auth`.
impl std::fmt::Display for PathMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathMatch::Any => f.write_str("any path"),
            PathMatch::Prefix(p) => write!(f, "prefix {}", p.join(", ")),
            PathMatch::Exact(p) => write!(f, "exactly {}", p.join(", ")),
            PathMatch::Regex(re) => write!(f, "regex {}", re.as_str()),
        }
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// One route's conditions.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Empty = any host.
    pub hosts: Vec<HostPattern>,
    pub path: PathMatch,
}

impl Matcher {
    /// `any host`, or the host patterns: `example.com, *.example.com`.
    pub fn describe_hosts(&self) -> String {
        if self.hosts.is_empty() {
            return "any host".to_owned();
        }
        let hosts: Vec<String> = self.hosts.iter().map(ToString::to_string).collect();
        hosts.join(", ")
    }

    fn host_matches(&self, host: &str) -> bool {
        self.hosts.is_empty() || self.hosts.iter().any(|h| h.matches(host))
    }

    /// Whether every request `later` matches is certainly matched by `self`
    /// (so `later`, placed after `self`, can never be chosen). Conservative:
    /// `false` when it cannot tell (regexes other than "match everything").
    pub fn covers(&self, later: &Matcher) -> bool {
        let hosts = self.hosts.is_empty()
            || (!later.hosts.is_empty()
                && later.hosts.iter().all(|h| match h {
                    HostPattern::Exact(name) => self.host_matches(name),
                    HostPattern::Wildcard(suffix) => self.hosts.iter().any(|mine| match mine {
                        HostPattern::Wildcard(s) => suffix.ends_with(s.as_str()),
                        HostPattern::Exact(_) => false,
                    }),
                }));
        if !hosts {
            return false;
        }
        match (&self.path, &later.path) {
            (PathMatch::Any, _) => true,
            // Every path under prefix (or equal to path) `t` is under `m` when `m` matches `t` itself.
            (PathMatch::Prefix(mine), PathMatch::Prefix(theirs) | PathMatch::Exact(theirs)) => {
                theirs
                    .iter()
                    .all(|t| mine.iter().any(|m| prefix_matches(m, t)))
            }
            (PathMatch::Exact(mine), PathMatch::Exact(theirs)) => {
                theirs.iter().all(|t| mine.contains(t))
            }
            (PathMatch::Prefix(mine), _) => mine.iter().any(|m| m == "/"),
            _ => false,
        }
    }
}

/// Where a request goes: the index of the first of `matchers` (the routes in
/// file order) that matches `host` (any case, port allowed) and `path`
/// (normalised before matching, so `/app/../api` is routed as `/api`).
///
/// The route table is the validated config's `routes` itself: each route's
/// conditions were compiled (regexes, host patterns) when the file was read.
pub fn first_match<'a>(
    matchers: impl IntoIterator<Item = &'a Matcher>,
    host: &str,
    path: &str,
) -> Option<usize> {
    let host = normalize_host(host);
    let path = normalize_path(path);
    matchers
        .into_iter()
        .position(|m| m.host_matches(&host) && m.path.matches(&path))
}

/// For each of `matchers`, in order: whether its host condition and its path
/// condition match (`ferry route` says why earlier routes were skipped).
pub fn each_match<'a>(
    matchers: impl IntoIterator<Item = &'a Matcher>,
    host: &str,
    path: &str,
) -> Vec<(bool, bool)> {
    let host = normalize_host(host);
    let path = normalize_path(path);
    matchers
        .into_iter()
        .map(|m| (m.host_matches(&host), m.path.matches(&path)))
        .collect()
}

/// Lowercases and drops the port: `Example.COM:8443` → `example.com`, `[::1]:443` → `[::1]`.
/// Only a numeric port after a name or a bracketed address is dropped, and
/// trailing dots are trimmed before and after, so normalising a normalised
/// host changes nothing (`[::1::443` and `a..` used to change twice).
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    let host = host.trim_end_matches('.');
    let host = match host.rfind(':') {
        Some(i)
            if host[i + 1..].bytes().all(|b| b.is_ascii_digit())
                && (host[..i].ends_with(']')
                    || (!host.starts_with('[') && !host[..i].contains(':'))) =>
        {
            &host[..i]
        }
        _ => host,
    };
    let host = host.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Table(Vec<Matcher>);

    impl Table {
        fn find(&self, host: &str, path: &str) -> Option<usize> {
            first_match(&self.0, host, path)
        }
    }

    fn table(routes: &[(&[&str], PathMatch)]) -> Table {
        Table(
            routes
                .iter()
                .map(|(hosts, path)| matcher(hosts, path.clone()))
                .collect(),
        )
    }

    fn prefix(p: &[&str]) -> PathMatch {
        PathMatch::Prefix(p.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn prefixes_are_segment_aware() {
        let p = prefix(&["/api", "/auth"]);
        assert!(p.matches("/api"));
        assert!(p.matches("/api/"));
        assert!(p.matches("/api/v1/x"));
        assert!(p.matches("/auth/login"));
        assert!(!p.matches("/apix"));
        assert!(!p.matches("/ap"));
        assert!(!p.matches("/"));
        assert!(prefix(&["/"]).matches("/anything/at/all"));
        let slash = prefix(&["/static/"]);
        assert!(slash.matches("/static/app.js"));
        assert!(!slash.matches("/static"));
    }

    #[test]
    fn first_match_wins_in_file_order() {
        let t = table(&[
            (
                &[],
                PathMatch::Regex(
                    Regex::new("(?i)^/api/v1/(communications|notifications)/ws/").unwrap(),
                ),
            ),
            (&[], prefix(&["/api", "/auth"])),
            (&[], prefix(&["/"])),
        ]);
        assert_eq!(t.find("h", "/api/v1/communications/ws/42"), Some(0));
        assert_eq!(t.find("h", "/API/V1/Notifications/ws/42"), Some(0));
        assert_eq!(t.find("h", "/api/v1/users"), Some(1));
        assert_eq!(t.find("h", "/auth"), Some(1));
        assert_eq!(t.find("h", "/apix"), Some(2));
        assert_eq!(t.find("h", "/"), Some(2));
    }

    #[test]
    fn hosts_exact_and_wildcard() {
        let t = table(&[
            (&["Example.com"], PathMatch::Exact(vec!["/x".into()])),
            (&["*.example.com"], PathMatch::Any),
        ]);
        assert_eq!(t.find("example.com", "/x"), Some(0));
        assert_eq!(t.find("EXAMPLE.com:8443", "/x"), Some(0));
        assert_eq!(t.find("example.com.", "/x"), Some(0));
        assert_eq!(t.find("example.com", "/y"), None);
        assert_eq!(t.find("www.example.com", "/y"), Some(1));
        assert_eq!(t.find("a.b.example.com", "/"), Some(1));
        assert_eq!(t.find("badexample.com", "/"), None);
        assert_eq!(t.find("other.org", "/x"), None);
    }

    fn matcher(hosts: &[&str], path: PathMatch) -> Matcher {
        Matcher {
            hosts: hosts
                .iter()
                .map(|h| HostPattern::parse(h).unwrap())
                .collect(),
            path,
        }
    }

    #[test]
    fn shadowing() {
        let catch_all = matcher(&[], prefix(&["/"]));
        let api = matcher(&[], prefix(&["/api", "/auth"]));
        let api_v1 = matcher(&[], prefix(&["/api/v1"]));
        let ws = matcher(&[], PathMatch::Regex(Regex::new("^/api/v1/ws/").unwrap()));
        let health = matcher(&[], PathMatch::Exact(vec!["/api/health".into()]));
        assert!(catch_all.covers(&api));
        assert!(catch_all.covers(&ws));
        assert!(api.covers(&api_v1));
        assert!(api.covers(&health));
        assert!(!api_v1.covers(&api));
        assert!(!api.covers(&ws), "regexes are not analysed");
        assert!(!api.covers(&matcher(&[], prefix(&["/apix"]))));
        // Hosts: a host-specific route does not cover other hosts.
        let example = matcher(&["example.com"], prefix(&["/"]));
        assert!(!example.covers(&api));
        assert!(example.covers(&matcher(&["example.com"], prefix(&["/x"]))));
        assert!(!example.covers(&matcher(&["other.com"], prefix(&["/x"]))));
        let wild = matcher(&["*.example.com"], PathMatch::Any);
        assert!(wild.covers(&matcher(
            &["a.example.com", "*.b.example.com"],
            PathMatch::Any
        )));
        assert!(!wild.covers(&matcher(&["example.com"], PathMatch::Any)));
    }

    #[test]
    fn host_patterns_reject_garbage() {
        assert!(HostPattern::parse("").is_none());
        assert!(HostPattern::parse("*.").is_none());
        assert!(HostPattern::parse("a b.com").is_none());
        assert!(HostPattern::parse("http://x.com").is_none());
        assert!(HostPattern::parse("127.0.0.1").is_some());
        assert!(HostPattern::parse("localhost").is_some());
    }

    #[test]
    fn host_normalisation() {
        assert_eq!(normalize_host("Example.COM:8443"), "example.com");
        assert_eq!(normalize_host("[::1]:443"), "[::1]");
        assert_eq!(normalize_host("[::1]"), "[::1]");
        assert_eq!(normalize_host("127.0.0.1:80"), "127.0.0.1");
        assert_eq!(normalize_host("plain"), "plain");
    }
}
