//! Compression of responses on a route with `compress = true`: the policy
//! (whether a response may be compressed, and with what) and the body that
//! compresses as it streams.
//!
//! The policy, decided from the request's method and `Accept-Encoding` and
//! the response's status and headers:
//! - never for HEAD or CONNECT, for 1xx, 204, 206 and 304, when
//!   `Content-Encoding` is already set, or when `Cache-Control` says
//!   `no-transform`;
//! - only for compressible types (text/*, JSON, JavaScript, XML, SVG, wasm)
//!   whose length is unknown or above [`MIN_LENGTH`];
//! - such a response gets `Vary: Accept-Encoding` whether or not this client
//!   accepts a coding (a cache must not hand one client's answer to the other);
//! - compressed (gzip, br or zstd by q-value, ties to br, zstd, gzip): a
//!   strong `ETag` becomes weak, `Content-Length` and `Accept-Ranges` go.
//!
//! The body is streaming-safe: whatever the inner body has ready is fed to
//! the encoder, and when the inner body has nothing more for now (Pending)
//! the encoder is flushed, so a server-sent event reaches the client as soon
//! as the upstream wrote it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};

use super::body::{BoxError, ProxyBody};
use crate::encoding::{AcceptEncoding, Encoder, Encoding};

/// A body of known length up to this many bytes is sent as it is: the
/// coding's framing would eat most of the gain.
pub const MIN_LENGTH: u64 = 1024;

/// What the policy needs from the request, kept before its head is
/// rewritten for the upstream (phase 1).
#[derive(Debug, Default)]
pub struct RequestFacts {
    method: Method,
    /// The raw `Accept-Encoding` fields: parsed only for a response that
    /// may be compressed.
    accept_encoding: Vec<HeaderValue>,
}

impl RequestFacts {
    /// The facts of a request with this head (cheap: the values are
    /// reference-counted; nothing is kept when the client sent none).
    pub fn capture(head: &http::request::Parts) -> RequestFacts {
        RequestFacts {
            method: head.method.clone(),
            accept_encoding: head
                .headers
                .get_all(header::ACCEPT_ENCODING)
                .iter()
                .cloned()
                .collect(),
        }
    }
}

/// Applies the policy to `res`: compressed, or as it was (with `Vary` when
/// the answer depended on `Accept-Encoding`).
pub fn apply(mut res: Response<ProxyBody>, request: &RequestFacts) -> Response<ProxyBody> {
    let length = content_length(res.headers()).or_else(|| res.body().size_hint().exact());
    if !eligible(&request.method, res.status(), res.headers(), length) {
        return res;
    }
    add_vary(res.headers_mut());
    let accept = AcceptEncoding::from_values(&request.accept_encoding);
    let Some(encoding) = accept.choose(&Encoding::ALL) else {
        return res;
    };
    let Ok(encoder) = Encoder::new(encoding) else {
        // Only allocation can fail here: send the body as it is.
        return res;
    };
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(encoding.token()),
    );
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::ACCEPT_RANGES);
    weaken_etag(headers);
    res.map(|body| ProxyBody::stream(CompressBody::new(body, encoder)))
}

/// Whether a response may be compressed at all, whatever the client accepts.
pub fn eligible(
    method: &Method,
    status: StatusCode,
    headers: &HeaderMap,
    length: Option<u64>,
) -> bool {
    if method == Method::HEAD || method == Method::CONNECT {
        return false;
    }
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return false;
    }
    if headers.contains_key(header::CONTENT_ENCODING) || no_transform(headers) {
        return false;
    }
    if length.is_some_and(|n| n <= MIN_LENGTH) {
        return false;
    }
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(compressible)
}

/// Whether a `Content-Type` is worth compressing: text, and the text-like
/// application types (JSON, JavaScript, XML, SVG) and wasm.
pub fn compressible(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let subtype = subtype.to_ascii_lowercase();
    if kind.eq_ignore_ascii_case("text") {
        return true;
    }
    if subtype.ends_with("+json") || subtype.ends_with("+xml") {
        // application/ld+json, image/svg+xml, application/atom+xml, ...
        return true;
    }
    kind.eq_ignore_ascii_case("application")
        && matches!(
            subtype.as_str(),
            "json" | "javascript" | "x-javascript" | "ecmascript" | "xml" | "wasm"
        )
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `Cache-Control: no-transform` in any of its fields.
fn no_transform(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
}

/// Appends `Vary: Accept-Encoding` unless a `Vary` already lists it (or `*`).
fn add_vary(headers: &mut HeaderMap) {
    let listed = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|name| {
            let name = name.trim();
            name == "*" || name.eq_ignore_ascii_case("accept-encoding")
        });
    if !listed {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// A strong `ETag` names these exact bytes; the compressed ones differ, but
/// stay semantically the same: `W/` (as nginx does).
fn weaken_etag(headers: &mut HeaderMap) {
    let Some(etag) = headers.get(header::ETAG) else {
        return;
    };
    if etag.as_bytes().starts_with(b"\"") {
        let mut weak = Vec::with_capacity(etag.len() + 2);
        weak.extend_from_slice(b"W/");
        weak.extend_from_slice(etag.as_bytes());
        if let Ok(weak) = HeaderValue::from_bytes(&weak) {
            headers.insert(header::ETAG, weak);
        }
    }
}

/// A body compressed on the way out: each ready frame of the inner body
/// goes into the encoder; a sync flush when the inner body waits, the
/// encoder's end when it ends, then its trailers.
pub struct CompressBody {
    inner: ProxyBody,
    /// `None` once finished.
    encoder: Option<Encoder>,
    /// Bytes were fed in since the last flush (flushing again would only
    /// send an empty block).
    unflushed: bool,
    /// The inner body's trailers, sent after the encoder's last bytes.
    trailers: Option<HeaderMap>,
}

impl CompressBody {
    pub fn new(inner: ProxyBody, encoder: Encoder) -> CompressBody {
        CompressBody {
            inner,
            encoder: Some(encoder),
            unflushed: false,
            trailers: None,
        }
    }

    /// The encoder's last bytes (at most once).
    fn finish(&mut self) -> Option<Result<Frame<Bytes>, BoxError>> {
        let encoder = self.encoder.take()?;
        match encoder.finish() {
            Ok(out) => Some(Ok(Frame::data(out))),
            Err(e) => Some(Err(e.into())),
        }
    }
}

impl Body for CompressBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(encoder) = &mut this.encoder else {
                // Finished: the trailers, if any, then the end.
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            };
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        this.unflushed |= !data.is_empty();
                        match encoder.compress(&data) {
                            Ok(out) if out.is_empty() => continue,
                            Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                            Err(e) => return Poll::Ready(Some(Err(e.into()))),
                        }
                    }
                    Err(frame) => {
                        // Trailers end the body.
                        this.trailers = frame.into_trailers().ok();
                        return Poll::Ready(this.finish());
                    }
                },
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => return Poll::Ready(this.finish()),
                Poll::Pending => {
                    if !this.unflushed {
                        return Poll::Pending;
                    }
                    this.unflushed = false;
                    return match encoder.flush() {
                        Ok(out) if out.is_empty() => Poll::Pending,
                        Ok(out) => Poll::Ready(Some(Ok(Frame::data(out)))),
                        Err(e) => Poll::Ready(Some(Err(e.into()))),
                    };
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    const JSON: (&str, &str) = ("content-type", "application/json");

    #[test]
    fn compressible_types() {
        for t in [
            "text/html; charset=utf-8",
            "text/event-stream",
            "TEXT/CSS",
            "application/json",
            "application/problem+json",
            "application/javascript",
            "application/xml",
            "image/svg+xml",
            "application/wasm",
        ] {
            assert!(compressible(t), "{t}");
        }
        for t in [
            "image/png",
            "application/octet-stream",
            "video/mp4",
            "application/zip",
            "font/woff2",
            "",
            "json",
        ] {
            assert!(!compressible(t), "{t}");
        }
    }

    #[test]
    fn eligibility() {
        let get = Method::GET;
        let ok = StatusCode::OK;
        assert!(eligible(&get, ok, &headers(&[JSON]), None));
        assert!(eligible(&get, ok, &headers(&[JSON]), Some(1025)));
        assert!(!eligible(&get, ok, &headers(&[JSON]), Some(1024)));
        assert!(eligible(
            &get,
            StatusCode::NOT_FOUND,
            &headers(&[JSON]),
            None
        ));
        assert!(!eligible(&Method::HEAD, ok, &headers(&[JSON]), None));
        assert!(!eligible(&Method::CONNECT, ok, &headers(&[JSON]), None));
        for status in [101, 204, 206, 304] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(!eligible(&get, status, &headers(&[JSON]), None), "{status}");
        }
        assert!(!eligible(&get, ok, &headers(&[]), None));
        assert!(!eligible(
            &get,
            ok,
            &headers(&[("content-type", "image/png")]),
            None
        ));
        let encoded = headers(&[JSON, ("content-encoding", "gzip")]);
        assert!(!eligible(&get, ok, &encoded, None));
        let no_transform = headers(&[JSON, ("cache-control", "private, No-Transform")]);
        assert!(!eligible(&get, ok, &no_transform, None));
    }

    #[test]
    fn vary_is_appended_once() {
        let mut h = headers(&[("vary", "Origin")]);
        add_vary(&mut h);
        let all: Vec<_> = h.get_all("vary").iter().collect();
        assert_eq!(all, ["Origin", "Accept-Encoding"]);
        add_vary(&mut h);
        assert_eq!(h.get_all("vary").iter().count(), 2);
        let mut h = headers(&[("vary", "origin, accept-encoding")]);
        add_vary(&mut h);
        assert_eq!(h.get_all("vary").iter().count(), 1);
        let mut h = headers(&[("vary", "*")]);
        add_vary(&mut h);
        assert_eq!(h.get_all("vary").iter().count(), 1);
    }

    #[test]
    fn etags_become_weak() {
        let mut h = headers(&[("etag", "\"abc\"")]);
        weaken_etag(&mut h);
        assert_eq!(h["etag"], "W/\"abc\"");
        weaken_etag(&mut h);
        assert_eq!(h["etag"], "W/\"abc\"");
    }

    #[test]
    fn apply_rewrites_the_head() {
        let mut res = Response::new(ProxyBody::full(vec![b'a'; 4096]));
        res.headers_mut().extend(headers(&[
            ("content-type", "text/plain"),
            ("content-length", "4096"),
            ("accept-ranges", "bytes"),
            ("etag", "\"x\""),
        ]));
        let head = http::Request::get("/")
            .header("accept-encoding", "gzip;q=1, br;q=0.5")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let res = apply(res, &RequestFacts::capture(&head));
        let h = res.headers();
        assert_eq!(h["content-encoding"], "gzip");
        assert_eq!(h["vary"], "Accept-Encoding");
        assert_eq!(h["etag"], "W/\"x\"");
        assert!(h.get("content-length").is_none());
        assert!(h.get("accept-ranges").is_none());
    }

    #[test]
    fn apply_without_a_coding_only_varies() {
        let mut res = Response::new(ProxyBody::full(vec![b'a'; 4096]));
        res.headers_mut()
            .insert("content-type", HeaderValue::from_static("text/plain"));
        let head = http::Request::get("/")
            .header("accept-encoding", "br;q=0")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let res = apply(res, &RequestFacts::capture(&head));
        assert!(res.headers().get("content-encoding").is_none());
        assert_eq!(res.headers()["vary"], "Accept-Encoding");
    }
}
