//! The one place where a failed request becomes a status code and a body.
//!
//! A [`ProxyError`] records which side failed and why, with the typed cause:
//! the client (4xx) or the upstream (502/504). [`ProxyError::status`] is the
//! only function that picks a status for a failure, pinned by the table in
//! this file's tests; [`response::error`](super::response::error) turns it
//! into the short answer the client gets.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http::uri::Authority;

use crate::static_files::StaticError;
use crate::upstream::body::{BodyFailure, Progress};
use crate::upstream::{Failed, SendError};

/// Why a request could not be proxied.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route matches this host and path")]
    NoRoute,
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// A request ferry understands but does not serve: `CONNECT` (ferry is
    /// not a forward proxy), or an HTTP/2 extended CONNECT for a protocol
    /// other than WebSocket.
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
    /// The host is served with another client-certificate policy than the
    /// name this TLS connection was made for: the client must connect anew.
    #[error("the host has another client-certificate policy than this connection's TLS name")]
    Misdirected,
    #[error("WebSocket origin `{origin}` is not in this route's allowed_origins")]
    OriginNotAllowed { origin: String },
    #[error("WebSocket handshake without an Origin header, and this route requires one")]
    OriginRequired,
    #[error("the request body is larger than this route's max_body_size ({limit} bytes)")]
    PayloadTooLarge { limit: u64 },
    /// A static route has no file to answer with.
    #[error(transparent)]
    Static(#[from] StaticError),
    #[error("cannot connect to upstream `{upstream}` at {server}: {source}")]
    UpstreamConnect {
        upstream: Arc<str>,
        server: Authority,
        #[source]
        source: SendError,
    },
    #[error("connecting to upstream `{upstream}` at {server} timed out")]
    UpstreamConnectTimeout {
        upstream: Arc<str>,
        server: Authority,
    },
    #[error("upstream `{upstream}` at {server} sent no response within {timeout:?}")]
    UpstreamTimeout {
        upstream: Arc<str>,
        server: Authority,
        timeout: Duration,
    },
    #[error("upstream `{upstream}` at {server} failed: {source}")]
    UpstreamFailed {
        upstream: Arc<str>,
        server: Authority,
        #[source]
        source: UpstreamFailure,
    },
}

/// What went wrong in an exchange with an upstream server that answered.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamFailure {
    /// The HTTP/1.1 handshake or the exchange itself failed.
    #[error(transparent)]
    Send(SendError),
    /// A WebSocket bridged from HTTP/2: the 101 does not answer ferry's key.
    #[error("the upstream's 101 has a wrong Sec-WebSocket-Accept")]
    WrongAccept,
}

/// Which side a failure belongs to: decides the log level and the status family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something ferry refuses (logged at info).
    Client,
    /// The upstream could not be reached or failed (logged as a warning).
    Upstream,
}

impl ProxyError {
    /// The status the client gets: the one place it is chosen.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ProxyError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::Static(e) => e.status(),
            ProxyError::OriginNotAllowed { .. } | ProxyError::OriginRequired => {
                StatusCode::FORBIDDEN
            }
            ProxyError::UpstreamConnect { .. } | ProxyError::UpstreamFailed { .. } => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::UpstreamConnectTimeout { .. } | ProxyError::UpstreamTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
        }
    }

    pub fn side(&self) -> Side {
        match self {
            ProxyError::NoRoute
            | ProxyError::BadRequest(_)
            | ProxyError::NotImplemented(_)
            | ProxyError::Misdirected
            | ProxyError::OriginNotAllowed { .. }
            | ProxyError::OriginRequired
            | ProxyError::PayloadTooLarge { .. }
            | ProxyError::Static(_) => Side::Client,
            ProxyError::UpstreamConnect { .. }
            | ProxyError::UpstreamConnectTimeout { .. }
            | ProxyError::UpstreamTimeout { .. }
            | ProxyError::UpstreamFailed { .. } => Side::Upstream,
        }
    }

    /// A send to `upstream` that failed, after retries, blamed on the right
    /// side: the request body (what `body` recorded about it: past
    /// `max_body_size`, or the client gone mid-upload) before the upstream.
    pub fn from_send(
        upstream: &Arc<str>,
        failed: Failed,
        body: &Progress,
        max_body_size: Option<u64>,
    ) -> ProxyError {
        let Failed { error, server } = failed;
        if let SendError::Exchange { .. } = error {
            match (body.failure(), max_body_size) {
                (Some(BodyFailure::TooLarge), Some(limit)) => {
                    return ProxyError::PayloadTooLarge { limit };
                }
                (Some(BodyFailure::ClientGone), _) => {
                    return ProxyError::BadRequest("request body ended early");
                }
                _ => {}
            }
        }
        let upstream = upstream.clone();
        match error {
            SendError::ConnectTimeout { .. } => {
                ProxyError::UpstreamConnectTimeout { upstream, server }
            }
            SendError::Timeout { timeout } => ProxyError::UpstreamTimeout {
                upstream,
                server,
                timeout,
            },
            SendError::Resolve { .. } | SendError::Connect { .. } => ProxyError::UpstreamConnect {
                upstream,
                server,
                source: error,
            },
            SendError::Handshake { .. } | SendError::Exchange { .. } => {
                ProxyError::UpstreamFailed {
                    upstream,
                    server,
                    source: UpstreamFailure::Send(error),
                }
            }
        }
    }

    /// What the client is told: short, and never the internal cause.
    pub fn public_message(&self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no route for this host and path",
            ProxyError::BadRequest(why) | ProxyError::NotImplemented(why) => why,
            ProxyError::Misdirected => "misdirected request: connect with this host's name",
            ProxyError::OriginNotAllowed { .. } => "origin not allowed",
            ProxyError::OriginRequired => "origin required",
            ProxyError::PayloadTooLarge { .. } => "request body too large",
            ProxyError::Static(e) => e.public_message(),
            ProxyError::UpstreamConnect { .. } => "upstream unavailable",
            ProxyError::UpstreamFailed { .. } => "upstream failed",
            ProxyError::UpstreamConnectTimeout { .. } | ProxyError::UpstreamTimeout { .. } => {
                "upstream timed out"
            }
        }
    }

    /// The error and its causes on one line, for the log.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            let text = s.to_string();
            if !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            source = s.source();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> Authority {
        Authority::from_static("b:8000")
    }

    fn refused() -> SendError {
        SendError::Connect {
            server: server(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        }
    }

    /// Every failure, its status and its side: the whole table.
    #[test]
    fn status_table() {
        let up: Arc<str> = "backend".into();
        let cases: Vec<(ProxyError, u16, Side)> = vec![
            (ProxyError::NoRoute, 404, Side::Client),
            (ProxyError::BadRequest("missing Host"), 400, Side::Client),
            (ProxyError::NotImplemented("CONNECT"), 501, Side::Client),
            (ProxyError::Misdirected, 421, Side::Client),
            (
                ProxyError::OriginNotAllowed {
                    origin: "https://evil.test".into(),
                },
                403,
                Side::Client,
            ),
            (ProxyError::OriginRequired, 403, Side::Client),
            (ProxyError::PayloadTooLarge { limit: 1 }, 413, Side::Client),
            (StaticError::NotFound("x").into(), 404, Side::Client),
            (StaticError::BadPath("x").into(), 400, Side::Client),
            (StaticError::MethodNotAllowed.into(), 405, Side::Client),
            (
                StaticError::RangeNotSatisfiable { len: 3 }.into(),
                416,
                Side::Client,
            ),
            (
                StaticError::Io(std::io::Error::other("disk")).into(),
                500,
                Side::Client,
            ),
            (
                ProxyError::UpstreamConnect {
                    upstream: up.clone(),
                    server: server(),
                    source: refused(),
                },
                502,
                Side::Upstream,
            ),
            (
                ProxyError::UpstreamFailed {
                    upstream: up.clone(),
                    server: server(),
                    source: UpstreamFailure::WrongAccept,
                },
                502,
                Side::Upstream,
            ),
            (
                ProxyError::UpstreamConnectTimeout {
                    upstream: up.clone(),
                    server: server(),
                },
                504,
                Side::Upstream,
            ),
            (
                ProxyError::UpstreamTimeout {
                    upstream: up,
                    server: server(),
                    timeout: Duration::from_secs(1),
                },
                504,
                Side::Upstream,
            ),
        ];
        for (err, status, side) in cases {
            assert_eq!(err.status().as_u16(), status, "{err}");
            assert_eq!(err.side(), side, "{err}");
        }
    }

    /// Send failures map by kind; a timeout waiting for the head is 504, not 502.
    #[test]
    fn send_failures_by_kind() {
        let up: Arc<str> = "backend".into();
        let body = Progress::default();
        let failed = |error| Failed {
            error,
            server: server(),
        };
        let cases = [
            (refused(), 502),
            (
                SendError::ConnectTimeout {
                    server: server(),
                    timeout: Duration::from_secs(1),
                },
                504,
            ),
            (
                SendError::Timeout {
                    timeout: Duration::from_secs(1),
                },
                504,
            ),
        ];
        for (error, status) in cases {
            let e = ProxyError::from_send(&up, failed(error), &body, None);
            assert_eq!(e.status().as_u16(), status, "{e}");
        }
        let e = ProxyError::from_send(&up, failed(refused()), &body, None);
        assert_eq!(
            e.chain(),
            "cannot connect to upstream `backend` at b:8000: cannot connect to b:8000: connection refused"
        );
    }

    /// An exchange that failed because of the request body is the client's
    /// failure, whatever the connection to the upstream then reported.
    #[tokio::test]
    async fn body_failures_are_the_clients() {
        let up: Arc<str> = "backend".into();
        let exchange_error = || async {
            // A real hyper error: a handshake with a peer that hangs up at once.
            let (io, _) = tokio::io::duplex(64);
            let io = hyper_util::rt::TokioIo::new(io);
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake::<_, http_body_util::Empty<bytes::Bytes>>(io)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let req = http::Request::new(http_body_util::Empty::new());
            sender.send_request(req).await.unwrap_err()
        };
        for (failure, status) in [(BodyFailure::TooLarge, 413), (BodyFailure::ClientGone, 400)] {
            let body = Progress::default();
            body.fail(failure);
            let failed = Failed {
                error: SendError::Exchange {
                    source: exchange_error().await,
                },
                server: server(),
            };
            let e = ProxyError::from_send(&up, failed, &body, Some(10));
            assert_eq!(
                (e.status().as_u16(), e.side()),
                (status, Side::Client),
                "{e}"
            );
        }
    }
}
