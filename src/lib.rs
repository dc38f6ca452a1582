//! ferry: a TLS-terminating edge reverse proxy.
//!
//! Where things are:
//! - [`config`]: `proxy.toml` → validated [`config::Config`] (every problem at once).
//! - [`router`]: the route table, host + path → route (pure).
//! - [`proxy`]: the request path in phases ([`proxy::http`]), header
//!   rewriting ([`proxy::headers`]), failures → statuses ([`proxy::error`]),
//!   WebSockets: handshakes and the frame-aware relay ([`proxy::websocket`]).
//! - [`upstream`]: server choice, passive and active health, retries
//!   ([`upstream::Upstream::send`]), keep-alive pools, DNS.
//! - [`tls`]: certificate loading, SNI selection, the development CA.
//! - [`server`]: listeners, accept loops, TLS handshakes, HTTP/1.1 or HTTP/2
//!   by ALPN; [`drain`]: shutdown signalling that server and proxy share.
//! - [`app`]: wiring: load, bind, serve.
//! - [`check`], [`explain`], [`probe`]: `ferry check`, `ferry route`, `ferry probe`.
//! - [`reload`]: rebuild the snapshot aside and swap it; [`admin`] and
//!   [`metrics`]: `/metrics`, `/healthz`, `/readyz`, `/reload`;
//!   [`access_log`]: one line per request and per WebSocket session.
//! - [`cli`], [`signal`], [`telemetry`]: the binary's flags, signals and logs.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod app;
pub mod check;
pub mod cli;
pub mod config;
pub mod drain;
pub mod explain;
pub mod metrics;
pub mod probe;
pub mod proxy;
pub mod reload;
pub mod router;
pub mod server;
pub mod signal;
pub mod telemetry;
pub mod tls;
pub mod upstream;
