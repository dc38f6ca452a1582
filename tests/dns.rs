//! A backend container restarted on a new IP is reached without restarting
//! ferry. Uses the resolver seam (process-wide), so it lives in its own test binary.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::*;
use ferry::upstream::dns::set_resolver;
use tokio::net::TcpListener;

#[tokio::test]
async fn a_restarted_backend_on_a_new_address_is_reached() {
    // "backend.test" first lives on 127.0.0.2, then on 127.0.0.3 (same port).
    let first = TcpListener::bind("127.0.0.2:0").await.unwrap();
    let port = first.local_addr().unwrap().port();
    let current: Arc<Mutex<SocketAddr>> = Arc::new(Mutex::new(first.local_addr().unwrap()));
    let answer = current.clone();
    set_resolver(Some(Arc::new(move |name: &str| {
        (name == format!("backend.test:{port}")).then(|| vec![*answer.lock().unwrap()])
    })));
    let old = Backend::serve_on(first, |_req| async { http::Response::new(body("old")) });

    let toml = simple_config("127.0.0.1:1".parse().unwrap()).replace(
        "servers = [\"127.0.0.1:1\"]",
        &format!("servers = [\"backend.test:{port}\"]\nresolve_every = \"100ms\""),
    );
    let proxy = TestProxy::start(&toml).await;
    let mut c = proxy.client(Proto::H1).await;
    assert_eq!(c.get("localhost", "/").await.text(), "old");

    // The container restarts: the old address goes away, DNS now says 127.0.0.3.
    drop(old);
    let second = TcpListener::bind(("127.0.0.3", port))
        .await
        .expect("bind 127.0.0.3 on the same port");
    *current.lock().unwrap() = second.local_addr().unwrap();
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
    set_resolver(None);
}
