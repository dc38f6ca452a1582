//! ferry: a TLS-terminating edge reverse proxy.
//!
//! Where things are:
//! - Where a request is routed, checked and rewritten for the upstream:
//!   [`proxy::decision`], one pure function that the proxy executes and
//!   `ferry route` prints. Header rules: [`proxy::headers`].
//! - The request path that executes it: [`proxy::http`] (phases: decide,
//!   send, response, log); failures → statuses: [`proxy::error`].
//! - WebSockets: [`proxy::websocket`] (handshakes), [`proxy::websocket::relay`]
//!   (the frame-aware relay).
//! - [`config`]: `proxy.toml` → validated [`config::Config`] (every problem at once).
//! - [`router`]: host + path → the first matching route (pure).
//! - [`upstream`]: server choice, passive and active health, retries
//!   ([`upstream::Upstream::send`]), keep-alive pools, DNS.
//! - [`static_files`]: a route's directory served as files (SPA fallback,
//!   precompressed siblings, validators, ranges); [`encoding`]: content
//!   codings and `Accept-Encoding`.
//! - [`tls`]: certificate loading, SNI selection, the development CA.
//! - [`server`]: listeners, accept loops, TLS handshakes, HTTP/1.1 or HTTP/2 by ALPN.
//! - [`drain`]: shutdown signalling and tunnel tracking, shared by server and proxy.
//! - [`reload`]: rebuild the snapshot aside and swap it; [`admin`] and
//!   [`metrics`]: `/metrics`, `/healthz`, `/readyz`, `/reload`;
//!   [`access_log`]: one line per request and per WebSocket session.
//! - [`app`]: wiring: load, bind, serve. [`cli`]: the commands (`run`,
//!   `check`, `route`, `probe`, `reload`, `cert`); [`signal`], [`telemetry`].
//!
//! The module graph points one way. Top-level modules in layers, each using
//! only modules in the layers below it (`tests/module_graph.rs` checks this):
//!
//! ```text
//! 1  cli
//! 2  app
//! 3  admin  signal
//! 4  reload  server
//! 5  proxy
//! 6  upstream  tls  access_log  static_files
//! 7  config
//! 8  router  metrics  drain  telemetry  encoding
//! ```
//!
//! Inside [`proxy`]: `http → websocket → {decision, response, context}`,
//! `response → body → context → error`, `decision → {headers, error}`.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod drain;
pub mod encoding;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod router;
pub mod server;
pub mod signal;
pub mod static_files;
pub mod telemetry;
pub mod tls;
pub mod upstream;
