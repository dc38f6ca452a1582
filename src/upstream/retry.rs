//! Sending a request again on a fresh connection after a reused one failed.
//!
//! The race this is for: an upstream closes an idle keep-alive connection
//! (uvicorn after 5 s, gunicorn after 2 s) at the moment ferry writes a
//! request on it. The write succeeds, then the connection ends with no
//! response byte ("connection closed before message completed"). Browsers,
//! nginx and hyper's pooled client recover from it; so does ferry, once, and
//! only when sending again cannot repeat an effect (RFC 9110 §9.2.2):
//!
//! - never after a byte of the response arrived (the upstream acted);
//! - never when the request body was read from (ferry does not buffer
//!   bodies, so it could not send it again);
//! - a request the upstream may have had whole (no body, or an empty one)
//!   only when its method is idempotent;
//! - a request whose body had not started is sent again whatever its
//!   method: the upstream had a head waiting for its body, not a request.

use http::{HeaderMap, Method, Request, Uri, Version};

use super::body::{Recovered, Replay, RequestBody};
use super::proxy_protocol::ProxySource;

/// Why a request was sent again (the `reason` label of `ferry_upstream_retries_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    /// A reused connection turned out closed before the request went out.
    ReusedUnsent,
    /// A reused connection closed after the request went out, before any
    /// response byte (the keep-alive race).
    ReusedClosed,
    /// Nothing reached the server (connect failed): tried on another one.
    OtherServer,
}

impl RetryReason {
    pub fn label(self) -> &'static str {
        match self {
            RetryReason::ReusedUnsent => "reused_unsent",
            RetryReason::ReusedClosed => "reused_closed",
            RetryReason::OtherServer => "other_server",
        }
    }
}

/// RFC 9110 §9.2.2: sending these twice has the effect of sending them once.
pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Whether a request the upstream dropped without answering may be sent
/// again; `complete`: nothing of it was left to send (see the module docs).
pub fn may_resend(method: &Method, complete: bool) -> bool {
    !complete || idempotent(method)
}

/// What sending a request again needs: a copy of its head, and its body if
/// hyper drops it unread. `decide` clears the client's extensions; the one
/// an upstream request may carry is its [`ProxySource`] (for
/// `send_proxy_protocol`), so the head is method, target, version, fields
/// and that.
#[derive(Debug)]
pub struct Resend {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    source: Option<ProxySource>,
    body: Replay,
}

impl Resend {
    /// Keeps what `req` needs to be sent again; `None` when the rule could
    /// never allow it (a non-idempotent request without a body), which
    /// spares the copy.
    pub fn prepare(req: &mut Request<RequestBody>) -> Option<Resend> {
        if !idempotent(req.method()) && http_body::Body::is_end_stream(req.body()) {
            return None;
        }
        Some(Resend {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
            source: req.extensions().get::<ProxySource>().copied(),
            body: req.body_mut().replay(),
        })
    }

    /// The request again, if its body came back unread and the rule allows
    /// it; waits at most `wait` for hyper to drop the body.
    pub async fn recover(self, wait: std::time::Duration) -> Option<Request<RequestBody>> {
        let Recovered { body, complete } = self.body.recover(wait).await?;
        if !may_resend(&self.method, complete) {
            return None;
        }
        let mut req = Request::new(body);
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers;
        if let Some(source) = self.source {
            req.extensions_mut().insert(source);
        }
        Some(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule, for every method RFC 9110 names and one it does not.
    #[test]
    fn resend_rule() {
        for m in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            let m: Method = m.parse().unwrap();
            assert!(may_resend(&m, true), "{m} complete");
            assert!(may_resend(&m, false), "{m} unsent body");
        }
        for m in ["POST", "PATCH", "CONNECT", "LOCK"] {
            let m: Method = m.parse().unwrap();
            assert!(!may_resend(&m, true), "{m} complete");
            assert!(may_resend(&m, false), "{m} unsent body");
        }
    }
}
