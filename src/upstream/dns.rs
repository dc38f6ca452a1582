//! Name resolution for upstream servers: at connect time, cached for
//! `resolve_every`, all addresses used.
//!
//! Tests replace the system resolver through [`set_resolver`] (the seam the
//! container-restart tests need: "backend" moving from 127.0.0.2 to 127.0.0.3
//! without touching /etc/hosts).

use std::collections::HashMap;
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

/// An answer and when it was obtained.
type Answer = (Arc<[SocketAddr]>, Instant);

/// How long a failed lookup is remembered: a stopped container's name must
/// not cost a resolver query per request.
const NEGATIVE_TTL: Duration = Duration::from_secs(1);

/// Recent answers per server.
#[derive(Debug)]
pub struct DnsCache {
    ttl: Duration,
    answers: Mutex<HashMap<Authority, Answer>>,
    /// Recent failures: the error kind and when.
    failures: Mutex<HashMap<Authority, (io::ErrorKind, Instant)>>,
}

impl DnsCache {
    pub fn new(ttl: Duration) -> DnsCache {
        DnsCache {
            ttl,
            answers: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The addresses of `server`, from the cache while fresh.
    pub async fn resolve(&self, server: &Authority) -> io::Result<Arc<[SocketAddr]>> {
        if let Some((addrs, at)) = self
            .answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(server)
        {
            if at.elapsed() < self.ttl {
                return Ok(addrs.clone());
            }
        }
        if let Some((kind, at)) = self
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(server)
        {
            if at.elapsed() < NEGATIVE_TTL.min(self.ttl) {
                return Err(io::Error::new(
                    *kind,
                    "name did not resolve (cached for 1s)",
                ));
            }
        }
        let addrs: Arc<[SocketAddr]> = match lookup(server).await {
            Ok(addrs) => addrs.into(),
            Err(e) => {
                self.failures
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(server.clone(), (e.kind(), Instant::now()));
                return Err(e);
            }
        };
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(server);
        self.answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(server.clone(), (addrs.clone(), Instant::now()));
        Ok(addrs)
    }

    /// Whether `addr` is still among `server`'s last known addresses (true when unknown).
    pub fn still_current(&self, server: &Authority, addr: SocketAddr) -> bool {
        match self
            .answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(server)
        {
            Some((addrs, _)) => addrs.contains(&addr),
            None => true,
        }
    }
}
