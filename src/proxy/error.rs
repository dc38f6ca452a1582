//! The one place where a failed request becomes a status code and a body.
//!
//! Decided by which side failed: the client (4xx), the upstream (502/504) or
//! ferry itself (500).

use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use super::body::ProxyBody;

/// Why a request could not be proxied.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route matches this host and path")]
    NoRoute,
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("WebSocket origin `{origin}` is not in this route's allowed_origins")]
    OriginNotAllowed { origin: String },
    #[error("WebSocket handshake without an Origin header, and this route requires one")]
    OriginRequired,
    #[error("the request body is larger than this route's max_body_size ({limit} bytes)")]
    PayloadTooLarge { limit: u64 },
    #[error("cannot connect to upstream `{upstream}` at {server}: {source}")]
    UpstreamConnect {
        upstream: String,
        server: String,
        #[source]
        source: BoxError,
    },
    #[error("connecting to upstream `{upstream}` at {server} timed out")]
    UpstreamConnectTimeout { upstream: String, server: String },
    #[error("upstream `{upstream}` at {server} sent no response within {timeout:?}")]
    UpstreamTimeout {
        upstream: String,
        server: String,
        timeout: std::time::Duration,
    },
    #[error("upstream `{upstream}` at {server} failed: {source}")]
    UpstreamFailed {
        upstream: String,
        server: String,
        #[source]
        source: BoxError,
    },
    #[error("internal error: {0}")]
    Internal(&'static str),
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which side a failure belongs to: decides the log level and the status family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Ferry,
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::OriginNotAllowed { .. } | ProxyError::OriginRequired => {
                StatusCode::FORBIDDEN
            }
            ProxyError::UpstreamConnect { .. } | ProxyError::UpstreamFailed { .. } => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::UpstreamConnectTimeout { .. } | ProxyError::UpstreamTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn side(&self) -> Side {
        match self {
            ProxyError::NoRoute
            | ProxyError::BadRequest(_)
            | ProxyError::OriginNotAllowed { .. }
            | ProxyError::OriginRequired
            | ProxyError::PayloadTooLarge { .. } => Side::Client,
            ProxyError::UpstreamConnect { .. }
            | ProxyError::UpstreamConnectTimeout { .. }
            | ProxyError::UpstreamTimeout { .. }
            | ProxyError::UpstreamFailed { .. } => Side::Upstream,
            ProxyError::Internal(_) => Side::Ferry,
        }
    }

    /// A short, stable label for logs and (later) metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no_route",
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::OriginNotAllowed { .. } => "origin_denied",
            ProxyError::OriginRequired => "origin_required",
            ProxyError::PayloadTooLarge { .. } => "body_too_large",
            ProxyError::UpstreamConnect { .. } => "connect",
            ProxyError::UpstreamConnectTimeout { .. } => "connect_timeout",
            ProxyError::UpstreamTimeout { .. } => "timeout",
            ProxyError::UpstreamFailed { .. } => "upstream",
            ProxyError::Internal(_) => "internal",
        }
    }

    /// What the client is told: short, and never the internal cause.
    fn public_message(&self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no route for this host and path",
            ProxyError::BadRequest(why) => why,
            ProxyError::OriginNotAllowed { .. } => "origin not allowed",
            ProxyError::OriginRequired => "origin required",
            ProxyError::PayloadTooLarge { .. } => "request body too large",
            ProxyError::UpstreamConnect { .. } => "upstream unavailable",
            ProxyError::UpstreamFailed { .. } => "upstream failed",
            ProxyError::UpstreamConnectTimeout { .. } | ProxyError::UpstreamTimeout { .. } => {
                "upstream timed out"
            }
            ProxyError::Internal(_) => "internal error",
        }
    }
}

/// The error response: JSON when the client accepts it, plain text otherwise.
pub fn error_response(err: &ProxyError, wants_json: bool) -> Response<ProxyBody> {
    status_response(err.status(), err.public_message(), wants_json)
}

/// Whether the client's `Accept` asks for JSON.
pub fn wants_json(request_headers: &HeaderMap) -> bool {
    request_headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json") || v.contains("+json"))
}

/// A short response with `status` and `message`, JSON when the client accepts JSON.
pub fn status_response(status: StatusCode, message: &str, wants_json: bool) -> Response<ProxyBody> {
    let (body, content_type) = if wants_json {
        (
            format!(
                "{{\"status\":{},\"error\":\"{}\"}}\n",
                status.as_u16(),
                message.replace('"', "'")
            ),
            "application/json",
        )
    } else {
        (
            format!("{} {}\n", status.as_u16(), message),
            "text/plain; charset=utf-8",
        )
    };
    let mut res = Response::new(ProxyBody::full(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io() -> BoxError {
        Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }

    #[test]
    fn status_table() {
        let up = || ("backend".to_owned(), "b:8000".to_owned());
        let cases: Vec<(ProxyError, u16, Side)> = vec![
            (ProxyError::NoRoute, 404, Side::Client),
            (ProxyError::BadRequest("missing Host"), 400, Side::Client),
            (
                ProxyError::OriginNotAllowed {
                    origin: "https://evil.test".into(),
                },
                403,
                Side::Client,
            ),
            (ProxyError::OriginRequired, 403, Side::Client),
            (ProxyError::PayloadTooLarge { limit: 1 }, 413, Side::Client),
            (
                ProxyError::UpstreamConnect {
                    upstream: up().0,
                    server: up().1,
                    source: io(),
                },
                502,
                Side::Upstream,
            ),
            (
                ProxyError::UpstreamFailed {
                    upstream: up().0,
                    server: up().1,
                    source: io(),
                },
                502,
                Side::Upstream,
            ),
            (
                ProxyError::UpstreamConnectTimeout {
                    upstream: up().0,
                    server: up().1,
                },
                504,
                Side::Upstream,
            ),
            (
                ProxyError::UpstreamTimeout {
                    upstream: up().0,
                    server: up().1,
                    timeout: std::time::Duration::from_secs(1),
                },
                504,
                Side::Upstream,
            ),
            (ProxyError::Internal("x"), 500, Side::Ferry),
        ];
        for (err, status, side) in cases {
            assert_eq!(err.status().as_u16(), status, "{err}");
            assert_eq!(err.side(), side, "{err}");
        }
    }

    #[test]
    fn json_when_accepted() {
        let mut h = HeaderMap::new();
        let res = error_response(&ProxyError::NoRoute, wants_json(&h));
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, */*"),
        );
        let res = error_response(&ProxyError::NoRoute, wants_json(&h));
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(res.status(), 404);
    }
}
