//! Name resolution as ferry's users see it: a backend container restarted on
//! a new IP is reached without restarting ferry, a name that stopped
//! resolving is not looked up per request, and an address is never looked
//! up. Uses the resolver seam (process-wide), so it lives in its own test
//! binary; one resolver serves every test here, each with names of its own.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Once};
use std::time::Instant;

use common::*;
use ferry::upstream::dns::set_resolver;
use tokio::net::TcpListener;

/// What the test resolver answers per `host:port` (absent: not found), and
/// how often each name was asked for.
static ANSWERS: Mutex<Option<HashMap<String, SocketAddr>>> = Mutex::new(None);
static ASKED: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);

fn answer(name: &str, addr: Option<SocketAddr>) {
    install();
    let mut answers = ANSWERS.lock().unwrap();
    let answers = answers.get_or_insert_with(HashMap::new);
    match addr {
        Some(a) => answers.insert(name.to_owned(), a),
        None => answers.remove(name),
    };
}

fn asked(name: &str) -> usize {
    ASKED
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|m| m.get(name).copied())
        .unwrap_or(0)
}

fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        set_resolver(Some(Arc::new(|name: &str| {
            *ASKED
                .lock()
                .unwrap()
                .get_or_insert_with(HashMap::new)
                .entry(name.to_owned())
                .or_default() += 1;
            let answers = ANSWERS.lock().unwrap();
            answers.as_ref()?.get(name).map(|a| vec![*a])
        })));
    });
}

/// [`simple_config`] with `server` (a name or an address) and `extra` keys on its upstream.
fn config_for(server: &str, extra: &str) -> String {
    ProxyToml::new()
        .tls_listener()
        .plain_listener()
        .upstream_with("backend", &[server], extra)
        .route("all", "/", "backend")
        .build()
}

#[tokio::test]
async fn a_restarted_backend_on_a_new_address_is_reached() {
    // "backend.test" first lives on 127.0.0.2, then on 127.0.0.3 (same port).
    let first = TcpListener::bind("127.0.0.2:0").await.unwrap();
    let port = first.local_addr().unwrap().port();
    let name = format!("backend.test:{port}");
    answer(&name, Some(first.local_addr().unwrap()));
    let old = Backend::serve_on(first, |_req| async { http::Response::new(body("old")) });

    let proxy = TestProxy::start(&config_for(&name, "resolve_every = \"100ms\"")).await;
    let mut c = proxy.client(Proto::H1).await;
    assert_eq!(c.get("localhost", "/").await.text(), "old");

    // The container restarts: the old address goes away, DNS now says 127.0.0.3.
    drop(old);
    let second = TcpListener::bind(("127.0.0.3", port))
        .await
        .expect("bind 127.0.0.3 on the same port");
    answer(&name, Some(second.local_addr().unwrap()));
    let _new = Backend::serve_on(second, |_req| async { http::Response::new(body("new")) });

    // Within resolve_every (100ms) the old answer may still be used (a pooled
    // connection, or a refusal); after it, the new address answers and the
    // pooled connection to the old one is retired, with no restart of ferry.
    within(async {
        loop {
            let res = c.get("localhost", "/").await;
            match (res.status(), res.text()) {
                (200, "new") => break,
                (200, "old") | (502, _) => continue,
                (status, text) => panic!("unexpected {status}: {text}"),
            }
        }
    })
    .await;
    // And it stays on the new address.
    for _ in 0..5 {
        assert_eq!(c.get("localhost", "/").await.text(), "new");
    }
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_not_looked_up_per_request() {
    // A stopped compose service: its name is gone from DNS.
    let name = "stopped.test:8000";
    answer(name, None);
    let proxy = TestProxy::start(&config_for(name, "resolve_every = \"1m\"")).await;
    let mut c = proxy.client(Proto::H1).await;
    let started = Instant::now();
    for _ in 0..20 {
        let res = c.get("localhost", "/").await;
        assert_eq!(res.status(), 502, "{}", res.text());
    }
    // A failure is remembered for a second: one lookup per second at most.
    let bound = started.elapsed().as_secs() as usize + 1;
    let n = asked(name);
    assert!(
        (1..=bound).contains(&n),
        "{n} lookups for 20 requests in {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_server_written_as_an_address_is_never_looked_up() {
    // The resolver seam is installed and counts every name it is asked for.
    install();
    let backend = Backend::echo("b").await;
    let server = backend.addr.to_string();
    let proxy = TestProxy::start(&config_for(&server, "resolve_every = \"10ms\"")).await;
    let mut c = proxy.client(Proto::H1).await;
    for _ in 0..10 {
        assert_eq!(c.get("localhost", "/").await.status(), 200);
    }
    assert_eq!(asked(&server), 0);
}
