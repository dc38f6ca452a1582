//! The one test harness: a ferry started from a TOML string on port 0, real
//! upstream servers, and real TLS clients (HTTP/1.1 or HTTP/2) that trust a
//! CA generated for the test. Every network wait has a timeout.
//!
//! - [`ca`]: the test CA and its leaf certificates
//! - [`proxy`]: [`TestProxy`], ferry in this process
//! - [`clients`]: HTTP clients, requests, responses read whole, metrics samples
//! - [`backends`]: upstream HTTP servers ([`Backend`]) and [`dead_addr`]
//! - [`ws`]: the WebSocket upstream and clients
//! - [`process`]: [`FerryProcess`], the real binary
//! - [`raw`]: bytes as written: [`RawBackend`], [`raw_h1`], [`RawH2`]
//! - [`scripted`]: [`ScriptedBackend`], an upstream scripted per connection
//!   that logs each connection's bytes
//! - [`toml`]: [`ProxyToml`], the config builder
//!
//! Each test binary uses a subset, hence `dead_code` is allowed here (and
//! in every submodule, which inherits it).
#![allow(dead_code)]

mod backends;
mod ca;
mod clients;
mod process;
mod proxy;
mod raw;
mod scripted;
mod toml;
mod ws;

// So that `use common::*;` reaches everything; a binary that needs no
// WebSockets (say) leaves some of these unused.
#[allow(unused_imports)]
pub use self::{
    backends::*, ca::*, clients::*, process::*, proxy::*, raw::*, scripted::*, toml::*, ws::*,
};

use std::future::Future;
use std::time::Duration;

/// Upper bound for any single network wait in a test.
pub const WAIT: Duration = Duration::from_secs(20);

/// Awaits `fut`, failing the test if it takes longer than [`WAIT`]; the
/// failure names the line that waited.
#[track_caller]
pub fn within<T>(fut: impl Future<Output = T>) -> impl Future<Output = T> {
    let caller = std::panic::Location::caller();
    async move {
        match tokio::time::timeout(WAIT, fut).await {
            Ok(value) => value,
            Err(_) => panic!("timed out after {WAIT:?} waiting on the network at {caller}"),
        }
    }
}
