//! `[upstream.NAME]` tables: servers, timeouts, balancing, health checks.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::values::{count, duration, parse_server};
use crate::config::error::{Problems, did_you_mean};
use crate::config::file::{FileHealth, FileServerEntry, FileUpstream};
use crate::config::{Balance, HealthConfig, ProxyProtocolVersion, UpstreamConfig};

pub(super) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub(super) const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Below the shortest common backend keep-alive default (gunicorn: 2 s;
/// uvicorn, Node, Apache: 5 s), so that ferry retires an idle connection
/// before the backend closes it, rather than racing the close.
pub(super) const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_millis(1500);
pub(super) const DEFAULT_POOL_MAX_IDLE: usize = 256;

/// Every upstream, in name order (the order routes index them by).
pub(super) fn build(
    file: &BTreeMap<Spanned<String>, Spanned<FileUpstream>>,
    p: &mut Problems<'_>,
) -> Vec<UpstreamConfig> {
    file.iter()
        .map(|(name, u)| build_upstream(name.get_ref(), u.get_ref(), p))
        .collect()
}

fn build_upstream(name: &str, u: &FileUpstream, p: &mut Problems<'_>) -> UpstreamConfig {
    let key = format!("upstream.{name}");
    let (servers, weights) = servers(&key, u, p);
    let balance = balance(&key, &u.balance, p);
    let retries = count(p, &u.retries, &format!("{key}.retries"), true).unwrap_or(2) as u32;
    let max_fails = count(p, &u.max_fails, &format!("{key}.max_fails"), true).unwrap_or(3) as u32;
    let fail_timeout =
        duration(p, &u.fail_timeout, &key, "fail_timeout").unwrap_or(Duration::from_secs(10));
    let resolve_every =
        duration(p, &u.resolve_every, &key, "resolve_every").unwrap_or(Duration::from_secs(5));
    let health = u.health.as_ref().map(|h| health(&key, h.get_ref(), p));
    if u.servers.get_ref().is_empty() {
        p.push(
            Some(u.servers.span()),
            format!("{key}.servers"),
            "an upstream needs at least one server",
            Some("e.g. servers = [\"backend:8000\"]".into()),
        );
    }
    let connect_timeout =
        duration(p, &u.connect_timeout, &key, "connect_timeout").unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let read_timeout =
        duration(p, &u.read_timeout, &key, "read_timeout").unwrap_or(DEFAULT_READ_TIMEOUT);
    let pool_idle_timeout = duration(p, &u.pool_idle_timeout, &key, "pool_idle_timeout")
        .unwrap_or(DEFAULT_POOL_IDLE_TIMEOUT);
    let pool_max_idle = count(p, &u.pool_max_idle, &format!("{key}.pool_max_idle"), true)
        .unwrap_or(DEFAULT_POOL_MAX_IDLE);
    let send_proxy_protocol = send_proxy_protocol(&key, &u.send_proxy_protocol, p);
    UpstreamConfig {
        name: name.into(),
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
        send_proxy_protocol,
    }
}

fn send_proxy_protocol(
    key: &str,
    value: &Option<Spanned<String>>,
    p: &mut Problems<'_>,
) -> Option<ProxyProtocolVersion> {
    let value = value.as_ref()?;
    match value.get_ref().as_str() {
        "v1" => Some(ProxyProtocolVersion::V1),
        "v2" => Some(ProxyProtocolVersion::V2),
        other => {
            p.push(
                Some(value.span()),
                format!("{key}.send_proxy_protocol"),
                format!("unknown PROXY protocol version `{other}`"),
                Some(
                    "use \"v2\" (HAProxy's send-proxy-v2) or \"v1\"; remove the key to send none"
                        .into(),
                ),
            );
            None
        }
    }
}

/// The valid servers and their weights (same order, same length).
fn servers(
    key: &str,
    u: &FileUpstream,
    p: &mut Problems<'_>,
) -> (Vec<http::uri::Authority>, Vec<u32>) {
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
            Err(e) => p.push(
                Some(s.span()),
                format!("{key}.servers[{i}]"),
                e.to_string(),
                Some(e.help().into()),
            ),
        }
    }
    (servers, weights)
}

fn balance(key: &str, balance: &Option<Spanned<String>>, p: &mut Problems<'_>) -> Balance {
    match balance.as_ref().map(|b| b.get_ref().as_str()) {
        None | Some("round_robin") => Balance::RoundRobin,
        Some("least_requests") => Balance::LeastRequests,
        Some("random_two") => Balance::RandomTwo,
        Some(other) => {
            let help = did_you_mean(other, ["round_robin", "least_requests", "random_two"]).map_or(
                "use \"round_robin\", \"least_requests\" or \"random_two\"".to_owned(),
                |s| format!("did you mean `{s}`?"),
            );
            p.push(
                balance.as_ref().map(Spanned::span),
                format!("{key}.balance"),
                format!("unknown balance `{other}`"),
                Some(help),
            );
            Balance::RoundRobin
        }
    }
}

/// `health = { ... }`: every value defaulted, the path checked.
fn health(key: &str, f: &FileHealth, p: &mut Problems<'_>) -> HealthConfig {
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
        interval: duration(p, &f.interval, &hkey, "interval").unwrap_or(Duration::from_secs(5)),
        timeout: duration(p, &f.timeout, &hkey, "timeout").unwrap_or(Duration::from_secs(2)),
        healthy: count(p, &f.healthy, &format!("{hkey}.healthy"), false).unwrap_or(2) as u32,
        unhealthy: count(p, &f.unhealthy, &format!("{hkey}.unhealthy"), false).unwrap_or(3) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{MINIMAL, assert_semantic, parse_str};
    use super::DEFAULT_POOL_IDLE_TIMEOUT;

    /// Below gunicorn's 2 s keep-alive, the shortest common default.
    #[test]
    fn pool_idle_timeout_defaults_below_the_backends_keep_alive() {
        let c = parse_str(MINIMAL).unwrap();
        assert_eq!(c.upstreams[0].pool_idle_timeout, DEFAULT_POOL_IDLE_TIMEOUT);
        assert!(DEFAULT_POOL_IDLE_TIMEOUT < std::time::Duration::from_secs(2));
    }

    #[test]
    fn semantic_checks() {
        assert_semantic(&[
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
                "servers = [\"backend:8000\"]",
                "servers = [\"backend:8000\"]\nsend_proxy_protocol = \"2\"",
                "upstream.backend.send_proxy_protocol: unknown PROXY protocol version `2` | use \"v2\"",
            ),
            (
                "servers = [\"backend:8000\"]",
                "servers = [\"backend:8000\"]\npool_idle_timeout = \"1.5s\"",
                "upstream.backend.pool_idle_timeout: `1.5s` is not a duration",
            ),
            (
                "servers = [\"backend:8000\"]",
                "servers = [\"backend:8000\"]\npool_idle_timeout = \"0s\"",
                "must be greater than zero",
            ),
        ]);
    }
}
