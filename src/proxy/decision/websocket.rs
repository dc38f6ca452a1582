//! The WebSocket part of a decision: is this a handshake, and may its origin open one.

use http::header::{self, HeaderMap};
use http::request::Parts;
use http::{Method, Version};

use super::super::error::ProxyError;
use super::super::headers;
use crate::config::WebSocketConfig;

/// A WebSocket handshake: how it was asked for, and the origin check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocket {
    pub handshake: Handshake,
    pub origin: OriginCheck,
}

/// How a client asked for a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// `GET` with `Connection: upgrade` and `Upgrade: websocket`.
    Http1,
    /// `CONNECT` with `:protocol = websocket` (RFC 8441).
    Http2,
}

impl Handshake {
    /// `h1` or `h2`, as logs and `ferry route` say it.
    pub fn label(self) -> &'static str {
        match self {
            Handshake::Http1 => "h1",
            Handshake::Http2 => "h2",
        }
    }
}

/// The verdict on a WebSocket handshake's `Origin` (CORS does not cover
/// WebSocket handshakes, so the edge checks it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginCheck {
    /// No `Origin` header (a non-browser client), and the route does not require one.
    NotSent,
    /// The route has no `allowed_origins`: any origin is allowed.
    Unrestricted(String),
    /// The origin is in the route's `allowed_origins`.
    Allowed(String),
    /// Refused: no `Origin` header, and the route requires one.
    Missing,
    /// Refused: the origin is not in the route's `allowed_origins`.
    NotAllowed(String),
}

impl OriginCheck {
    /// Checks the handshake's `Origin` header against the route's settings.
    pub fn check(ws: &WebSocketConfig, headers: &HeaderMap) -> OriginCheck {
        let Some(value) = headers.get(header::ORIGIN) else {
            return if ws.require_origin {
                OriginCheck::Missing
            } else {
                OriginCheck::NotSent
            };
        };
        let origin = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if ws.allowed_origins.is_empty() {
            OriginCheck::Unrestricted(origin)
        } else if ws.allowed_origins.iter().any(|p| p.matches(&origin)) {
            OriginCheck::Allowed(origin)
        } else {
            OriginCheck::NotAllowed(origin)
        }
    }

    /// The `Origin` the client sent, if any.
    pub fn origin(&self) -> Option<&str> {
        match self {
            OriginCheck::Unrestricted(o) | OriginCheck::Allowed(o) | OriginCheck::NotAllowed(o) => {
                Some(o)
            }
            OriginCheck::NotSent | OriginCheck::Missing => None,
        }
    }

    /// The error a refused handshake gets; `None` when it may proceed.
    pub fn refusal(&self) -> Option<ProxyError> {
        match self {
            OriginCheck::Missing => Some(ProxyError::OriginRequired),
            OriginCheck::NotAllowed(origin) => Some(ProxyError::OriginNotAllowed {
                origin: origin.clone(),
            }),
            _ => None,
        }
    }
}

/// Whether `head` opens a WebSocket. Only `Connection: upgrade` plus
/// `Upgrade: websocket` counts on HTTP/1.1: any other upgrade (h2c) is
/// stripped and the request proxied as a plain one.
pub fn websocket_handshake(head: &Parts) -> Option<Handshake> {
    match head.version {
        Version::HTTP_11
            if head.method == Method::GET && headers::connection_has_upgrade(&head.headers) =>
        {
            let websocket = head
                .headers
                .get_all(header::UPGRADE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"));
            websocket.then_some(Handshake::Http1)
        }
        Version::HTTP_2 if head.method == Method::CONNECT => head
            .extensions
            .get::<hyper::ext::Protocol>()
            .filter(|p| p.as_str().eq_ignore_ascii_case("websocket"))
            .map(|_| Handshake::Http2),
        _ => None,
    }
}
