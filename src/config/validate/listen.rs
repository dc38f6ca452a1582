//! The sockets ferry accepts on: `[[listen]]` blocks (`[admin]` is in `admin.rs`).

use std::collections::HashSet;
use std::net::SocketAddr;

use toml::Spanned;

use super::values::parse_listen_addr;
use crate::config::error::Problems;
use crate::config::file::FileListen;
use crate::config::{ListenerConfig, ListenerKind, ServerConfig};

/// Every `[[listen]]` with a valid address, in file order.
pub(super) fn build(file: &[Spanned<FileListen>], p: &mut Problems<'_>) -> Vec<ListenerConfig> {
    let mut listeners = Vec::new();
    let mut seen_addrs = HashSet::new();
    for (i, l) in file.iter().enumerate() {
        let key = format!("listen[{i}]");
        if let Some(listener) = build_listener(&key, l.get_ref(), &mut seen_addrs, p) {
            listeners.push(listener);
        }
    }
    if file.is_empty() {
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
    listeners
}

/// One listener; `None` when its address is unusable (nothing else can be checked).
fn build_listener(
    key: &str,
    l: &FileListen,
    seen_addrs: &mut HashSet<SocketAddr>,
    p: &mut Problems<'_>,
) -> Option<ListenerConfig> {
    let Some(addr) = parse_listen_addr(l.addr.get_ref()) else {
        p.push(
            Some(l.addr.span()),
            format!("{key}.addr"),
            format!("`{}` is not an address and port", l.addr.get_ref()),
            Some("write it as \"0.0.0.0:443\", \"[::]:443\" or \"127.0.0.1:8443\"".into()),
        );
        return None;
    };
    check_unique(addr, &l.addr, key, seen_addrs, p);
    let kind = kind(key, l, p);
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
    let proxy_protocol = l.proxy_protocol.as_ref().is_some_and(|b| *b.get_ref());
    Some(ListenerConfig {
        addr,
        kind,
        http2,
        websocket_over_http2,
        proxy_protocol,
    })
}

/// `proxy_protocol = true` believes only `server.trusted_proxies`: with none,
/// the listener would close every connection. An error rather than a
/// warning, because such a listener cannot serve anyone, and because
/// "trust every peer" would let any client name any address.
pub(super) fn check_proxy_protocol(
    file: &[Spanned<FileListen>],
    server: &ServerConfig,
    p: &mut Problems<'_>,
) {
    if !server.trusted_proxies.is_empty() {
        return;
    }
    for (i, l) in file.iter().enumerate() {
        if let Some(pp) = l.get_ref().proxy_protocol.as_ref().filter(|b| *b.get_ref()) {
            p.push(
                Some(pp.span()),
                format!("listen[{i}].proxy_protocol"),
                "the PROXY protocol header is accepted only from `server.trusted_proxies`, and that list is empty: every connection would be closed",
                Some("add the load balancer's addresses, e.g. [server] trusted_proxies = [\"10.0.0.0/8\"] (an AWS NLB: the VPC's CIDR)".into()),
            );
        }
    }
}

/// Two listeners cannot bind the same port, and a wildcard takes it on every interface.
fn check_unique(
    addr: SocketAddr,
    written: &Spanned<String>,
    key: &str,
    seen_addrs: &mut HashSet<SocketAddr>,
    p: &mut Problems<'_>,
) {
    // Port 0 asks the kernel for a fresh port each time, so it never clashes.
    if addr.port() != 0 && !seen_addrs.insert(addr) {
        p.push(
            Some(written.span()),
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
            Some(written.span()),
            format!("{key}.addr"),
            format!("{addr} conflicts with {other}: a wildcard address takes port {} on every interface", addr.port()),
            Some("listen once on the wildcard address, or only on specific addresses".into()),
        );
    }
}

fn kind(key: &str, l: &FileListen, p: &mut Problems<'_>) -> ListenerKind {
    let tls = l.tls.as_ref().is_some_and(|t| *t.get_ref());
    let redirect = l.redirect_https.as_ref().is_some_and(|r| *r.get_ref());
    match (tls, redirect) {
        (true, true) => {
            p.push(
                l.redirect_https.as_ref().map(Spanned::span),
                format!("{key}.redirect_https"),
                "a listener cannot both terminate TLS and redirect to https",
                Some(
                    "use one [[listen]] with `tls = true` and another with `redirect_https = true`"
                        .into(),
                ),
            );
            ListenerKind::Tls
        }
        (true, false) => ListenerKind::Tls,
        (false, true) => ListenerKind::RedirectHttps,
        (false, false) => ListenerKind::Plain,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::assert_semantic;

    #[test]
    fn semantic_checks() {
        assert_semantic(&[
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
                "addr = \"127.0.0.1:8080\"\nproxy_protocol = true",
                "4:18: listen[0].proxy_protocol: the PROXY protocol header is accepted only from `server.trusted_proxies`",
            ),
        ]);
    }

    #[test]
    fn proxy_protocol_with_trusted_proxies_is_fine() {
        let src = super::super::testing::MINIMAL.replace(
            "addr = \"127.0.0.1:8080\"",
            "addr = \"127.0.0.1:8080\"\nproxy_protocol = true",
        );
        let src = format!("[server]\ntrusted_proxies = [\"10.0.0.1\"]\n{src}");
        let c = super::super::testing::parse_str(&src).unwrap();
        assert!(c.listeners[0].proxy_protocol);
    }
}
