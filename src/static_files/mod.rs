//! A route's directory served as files: `static = { root = ... }`.
//!
//! [`serve`] answers one request from a [`StaticConfig`]: it resolves the
//! path safely under `root` ([`resolve`]), picks a precompressed sibling by
//! `Accept-Encoding`, answers validators (304) and ranges (206/416)
//! ([`conditional`]), sets the caching policy ([`cache`]) and streams the
//! file ([`FileBody`]). It knows nothing of the proxy: failures are
//! [`StaticError`]s, which [`crate::proxy`] maps to its statuses and answers.
//! [`explain`] is the same resolution, for `ferry route`.
//!
//! Why not tower-http's `ServeDir`: it would be a new dependency tree for
//! less than ferry needs. Its 0.7 has strong ETags, ranges and
//! precompressed siblings, but no symlink policy (it follows every link,
//! even out of the root), no dotfile policy (it serves `.env`), no SPA rule
//! by `Accept` and extension (its fallback is unconditional, so a missing
//! `app.js` would get HTML), no `Cache-Control` policy, it answers `..` and
//! `%2F` with 404 rather than refusing them, and it brings its own body and
//! `io::Error`-based error types that ferry would have to map back into its
//! error table and log line.
//!
//! Nothing is cached in memory: every request resolves, opens and stats the
//! file afresh (one blocking-pool hop, which also reads a small file
//! whole), so a file changed on disk is served at once with a new ETag.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode, Uri};

use crate::config::StaticConfig;

mod body;
pub mod cache;
pub mod conditional;
pub mod mime;
pub mod resolve;

pub use body::FileBody;
use conditional::RangeAsk;
pub use resolve::{FileTarget, Kind, Located, locate};

/// Why a request to a static route gets no file.
#[derive(Debug, thiserror::Error)]
pub enum StaticError {
    /// Nothing to serve; the reason is for the log and `ferry route`.
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// Not GET or HEAD (answered with `Allow: GET, HEAD`).
    #[error("a static route serves GET and HEAD only")]
    MethodNotAllowed,
    /// A `Range` outside the file (answered with `Content-Range: bytes */len`).
    #[error("the range is outside the file ({len} bytes)")]
    RangeNotSatisfiable { len: u64 },
    /// A path refused before the file system is asked.
    #[error("bad path: {0}")]
    BadPath(&'static str),
    /// The file system failed in a way that is not a missing file.
    #[error("cannot read the file: {0}")]
    Io(#[source] std::io::Error),
}

impl StaticError {
    /// The status this failure is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            StaticError::NotFound(_) => StatusCode::NOT_FOUND,
            StaticError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            StaticError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            StaticError::BadPath(_) => StatusCode::BAD_REQUEST,
            StaticError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the client is told.
    pub fn public_message(&self) -> &'static str {
        match self {
            StaticError::NotFound(_) => "not found",
            StaticError::MethodNotAllowed => "method not allowed",
            StaticError::RangeNotSatisfiable { .. } => "range not satisfiable",
            StaticError::BadPath(why) => why,
            StaticError::Io(_) => "cannot read the file",
        }
    }

    /// The header the answer must carry: `Allow` on 405, `Content-Range` on 416.
    pub fn header(&self) -> Option<(HeaderName, HeaderValue)> {
        match self {
            StaticError::MethodNotAllowed => {
                Some((header::ALLOW, HeaderValue::from_static("GET, HEAD")))
            }
            StaticError::RangeNotSatisfiable { len } => Some((
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}")).ok()?,
            )),
            _ => None,
        }
    }
}

/// Answers the request `head` from the directory `files`. The file-system
/// work (resolve, open, stat, and reading a file of at most 64 KiB) is one
/// hop to tokio's blocking pool; a larger body reads its chunks there too.
pub async fn serve(
    files: &Arc<StaticConfig>,
    head: &Parts,
) -> Result<Response<FileBody>, StaticError> {
    let files = files.clone();
    let (method, uri, headers) = (head.method.clone(), head.uri.clone(), head.headers.clone());
    tokio::task::spawn_blocking(move || answer(&files, &method, &uri, &headers))
        .await
        .map_err(|e| StaticError::Io(std::io::Error::other(e)))?
}

/// What [`serve`] would answer, without opening the file: for `ferry route`.
#[derive(Debug)]
pub struct Explanation {
    pub result: Result<Located, StaticError>,
    /// The `Cache-Control` a file gets (before `response_headers`).
    pub cache_control: Option<&'static str>,
}

impl Explanation {
    /// The status a client would get (a file: 200 before validators and ranges).
    pub fn status(&self) -> StatusCode {
        match &self.result {
            Ok(Located::File(_)) => StatusCode::OK,
            Ok(Located::Redirect { .. }) => StatusCode::MOVED_PERMANENTLY,
            Err(e) => e.status(),
        }
    }
}

/// The resolution [`serve`] does, for `ferry route` (it reads the file system).
pub fn explain(files: &StaticConfig, head: &Parts) -> Explanation {
    let result = locate(files, &head.method, &head.uri, &head.headers);
    let cache_control = match &result {
        Ok(Located::File(target)) => Some(cache::policy(files, target)),
        _ => None,
    };
    Explanation {
        result,
        cache_control,
    }
}

/// The whole answer, on the blocking pool.
fn answer(
    files: &StaticConfig,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response<FileBody>, StaticError> {
    let target = match locate(files, method, uri, headers)? {
        Located::Redirect { location } => {
            let mut res = Response::new(FileBody::empty());
            *res.status_mut() = StatusCode::MOVED_PERMANENTLY;
            if let Ok(location) = HeaderValue::from_str(&location) {
                res.headers_mut().insert(header::LOCATION, location);
            }
            return Ok(res);
        }
        Located::File(target) => target,
    };
    let mut file = File::open(target.served_path()).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
            StaticError::NotFound("the file went away while it was opened")
        }
        _ => StaticError::Io(e),
    })?;
    let meta = file.metadata().map_err(StaticError::Io)?;
    if !meta.is_file() {
        return Err(StaticError::NotFound("not a regular file"));
    }
    let len = meta.len();
    let mtime = meta.modified().map_err(StaticError::Io)?;
    let etag = conditional::etag(len, mtime, target.encoding);

    let mut res = Response::new(FileBody::empty());
    let h = res.headers_mut();
    h.insert(header::ETAG, value(&etag));
    h.insert(
        header::LAST_MODIFIED,
        value(&httpdate::fmt_http_date(mtime)),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache::policy(files, &target)),
    );
    if !target.siblings.is_empty() {
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if conditional::not_modified(headers, &etag, mtime) {
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(res);
    }
    h.insert(header::CONTENT_TYPE, mime::content_type(&target.path));
    if let Some(e) = target.encoding {
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(e.token()),
        );
    } else {
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }

    // Ranges of the identity body of a GET; an encoded body is sent whole.
    let ranged = target.encoding.is_none()
        && *method == Method::GET
        && conditional::if_range_allows(headers, &etag, mtime);
    let (start, count) = match ranged.then(|| conditional::range(headers, len)) {
        Some(RangeAsk::Single { start, end }) => {
            *res.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_RANGE,
                value(&format!("bytes {start}-{end}/{len}")),
            );
            (start, end - start + 1)
        }
        Some(RangeAsk::Unsatisfiable) => return Err(StaticError::RangeNotSatisfiable { len }),
        Some(RangeAsk::Full) | None => (0, len),
    };
    res.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if *method == Method::HEAD || count == 0 {
        return Ok(res);
    }
    if start > 0 {
        file.seek(SeekFrom::Start(start)).map_err(StaticError::Io)?;
    }
    *res.body_mut() = if count <= body::SMALL {
        FileBody::full(body::read_chunk(&file, count).map_err(StaticError::Io)?)
    } else {
        FileBody::stream(file, count)
    };
    Ok(res)
}

/// A header value from text ferry formatted (always visible ASCII).
fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}
