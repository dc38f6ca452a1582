//! Name resolution for upstream servers: at connect time, cached for
//! `resolve_every`, all addresses used. A server written as an IP address
//! and port is never looked up.
//!
//! Tests replace the system resolver through [`set_resolver`] (the seam the
//! container-restart tests need: "backend" moving from 127.0.0.2 to 127.0.0.3
//! without touching /etc/hosts).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use http::uri::Authority;

/// A replacement resolver: `host:port` → addresses (`None`: not found).
pub type ResolverFn = Arc<dyn Fn(&str) -> Option<Vec<SocketAddr>> + Send + Sync>;

static OVERRIDE: RwLock<Option<ResolverFn>> = RwLock::new(None);

/// Replaces the system resolver for this process (tests only; `None` restores it).
pub fn set_resolver(resolver: Option<ResolverFn>) {
    *OVERRIDE.write().unwrap_or_else(|e| e.into_inner()) = resolver;
}

async fn lookup(server: &Authority) -> io::Result<Vec<SocketAddr>> {
    let custom = OVERRIDE.read().unwrap_or_else(|e| e.into_inner()).clone();
    let addrs: Vec<SocketAddr> = match custom {
        Some(resolve) => resolve(server.as_str())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "name not found"))?,
        None => tokio::net::lookup_host(server.as_str()).await?.collect(),
    };
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the name resolved to no addresses",
        ));
    }
    Ok(addrs)
}

/// How long a failed lookup is remembered: a stopped container's name must
/// not cost a resolver query per request.
const NEGATIVE_TTL: Duration = Duration::from_secs(1);

/// The last answers for one name.
#[derive(Debug, Default)]
struct Last {
    /// The last good answer, and when. Kept after it expires: pooled
    /// connections to its addresses stay in use while a lookup fails.
    addrs: Option<(Arc<[SocketAddr]>, Instant)>,
    /// A failure since then, and when.
    failed: Option<(io::ErrorKind, Instant)>,
}

/// One server's addresses: fixed for an IP literal, else looked up and
/// cached for `ttl` (a failure for at most a second).
#[derive(Debug)]
pub struct Resolved {
    server: Authority,
    /// `Some` when the server is written as an address: no lookup, ever.
    literal: Option<Arc<[SocketAddr]>>,
    ttl: Duration,
    last: Mutex<Last>,
}

impl Resolved {
    pub fn new(server: Authority, ttl: Duration) -> Resolved {
        let literal = server
            .as_str()
            .parse::<SocketAddr>()
            .ok()
            .map(|a| Arc::from([a]));
        Resolved {
            server,
            literal,
            ttl,
            last: Mutex::new(Last::default()),
        }
    }

    /// The server as configured (`host:port`).
    pub fn server(&self) -> &Authority {
        &self.server
    }

    /// The addresses of the server, from the cache while fresh.
    pub async fn addrs(&self) -> io::Result<Arc<[SocketAddr]>> {
        if let Some(addrs) = &self.literal {
            return Ok(addrs.clone());
        }
        {
            let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((addrs, at)) = &last.addrs {
                if at.elapsed() < self.ttl {
                    return Ok(addrs.clone());
                }
            }
            if let Some((kind, at)) = last.failed {
                if at.elapsed() < NEGATIVE_TTL.min(self.ttl) {
                    return Err(io::Error::new(kind, "name did not resolve (cached for 1s)"));
                }
            }
        }
        let answer = lookup(&self.server).await;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match answer {
            Ok(addrs) => {
                let addrs: Arc<[SocketAddr]> = addrs.into();
                *last = Last {
                    addrs: Some((addrs.clone(), Instant::now())),
                    failed: None,
                };
                Ok(addrs)
            }
            Err(e) => {
                last.failed = Some((e.kind(), Instant::now()));
                Err(e)
            }
        }
    }

    /// Whether `addr` is still among the server's last known addresses (true when unknown).
    pub fn still_current(&self, addr: SocketAddr) -> bool {
        if self.literal.is_some() {
            return true;
        }
        match &self.last.lock().unwrap_or_else(|e| e.into_inner()).addrs {
            Some((addrs, _)) => addrs.contains(&addr),
            None => true,
        }
    }
}
