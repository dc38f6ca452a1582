//! Validators and ranges: the `ETag`, `If-None-Match`/`If-Modified-Since`
//! (304), `Range` and `If-Range` (206/416), in RFC 9110's order.

use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use http::header::{self, HeaderValue};

use crate::encoding::Encoding;

/// The strong ETag of a file of `len` bytes modified at `mtime`:
/// `"<len hex>-<mtime nanos hex>"`, with `.br`/`.zst`/`.gz` inside the quotes
/// for a precompressed sibling.
pub fn etag(len: u64, mtime: SystemTime, encoding: Option<Encoding>) -> String {
    let nanos = mtime.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let ext = encoding.map_or("", Encoding::extension);
    format!("\"{len:x}-{nanos:x}{ext}\"")
}

/// Whether the client's copy is current (304): `If-None-Match` by weak
/// comparison (`*` matches any); only without it, `If-Modified-Since`.
pub fn not_modified(headers: &HeaderMap, etag: &str, mtime: SystemTime) -> bool {
    let mut inm = headers.get_all(header::IF_NONE_MATCH).iter().peekable();
    if inm.peek().is_some() {
        return inm
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .any(|tag| tag == "*" || opaque(tag) == opaque(etag));
    }
    let Some(since) = date(headers.get(header::IF_MODIFIED_SINCE)) else {
        return false;
    };
    // HTTP dates have whole seconds: the file is unmodified if its mtime,
    // truncated, is not after the client's date.
    truncate(mtime) <= since
}

/// An ETag without its weakness prefix.
fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

fn date(value: Option<&HeaderValue>) -> Option<SystemTime> {
    httpdate::parse_http_date(value?.to_str().ok()?).ok()
}

fn truncate(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

/// Whether `If-Range` (when sent) lets the `Range` apply: a strong ETag equal
/// to ours, or a date equal to `Last-Modified`. A weak ETag never matches.
pub fn if_range_allows(headers: &HeaderMap, etag: &str, mtime: SystemTime) -> bool {
    let Some(value) = headers.get(header::IF_RANGE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        return value == etag;
    }
    httpdate::parse_http_date(value).is_ok_and(|d| d == truncate(mtime))
}

/// What a `Range` header asks of a body of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAsk {
    /// No range, several, or one ferry does not understand: the full body.
    Full,
    /// Bytes `start..=end`.
    Single { start: u64, end: u64 },
    /// 416.
    Unsatisfiable,
}

/// Parses `Range` for a body of `len` bytes: one `bytes=` range (`a-b`,
/// `a-`, `-n`). Several ranges are answered in full (RFC 9110 allows it),
/// as is a header that does not parse (it must be ignored).
pub fn range(headers: &HeaderMap, len: u64) -> RangeAsk {
    let mut values = headers.get_all(header::RANGE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return RangeAsk::Full;
    };
    let Some(spec) = value.to_str().ok().and_then(|v| {
        let (unit, spec) = v.trim().split_once('=')?;
        unit.trim().eq_ignore_ascii_case("bytes").then_some(spec)
    }) else {
        return RangeAsk::Full;
    };
    if spec.contains(',') {
        return RangeAsk::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Full;
    };
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let (first, last) = (first.trim(), last.trim());
    match (first.is_empty(), number(first), number(last)) {
        // `-n`: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 || len == 0 {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::Single {
                    start: len.saturating_sub(n),
                    end: len - 1,
                }
            }
        }
        (false, Some(start), None) if last.is_empty() => {
            if start >= len {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::Single {
                    start,
                    end: len - 1,
                }
            }
        }
        (false, Some(start), Some(end)) if start <= end => {
            if start >= len {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::Single {
                    start,
                    end: end.min(len - 1),
                }
            }
        }
        _ => RangeAsk::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn with(name: header::HeaderName, v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(v).unwrap());
        h
    }

    fn r(v: &str, len: u64) -> RangeAsk {
        range(&with(header::RANGE, v), len)
    }

    fn single(start: u64, end: u64) -> RangeAsk {
        RangeAsk::Single { start, end }
    }

    #[test]
    fn ranges() {
        assert_eq!(range(&HeaderMap::new(), 10), RangeAsk::Full);
        assert_eq!(r("bytes=0-4", 10), single(0, 4));
        assert_eq!(r("bytes=2-", 10), single(2, 9));
        assert_eq!(r("bytes=-3", 10), single(7, 9));
        assert_eq!(r("bytes=-30", 10), single(0, 9));
        assert_eq!(r("bytes=5-100", 10), single(5, 9));
        assert_eq!(r("Bytes = 1-1", 10), single(1, 1));
        assert_eq!(r("bytes=10-", 10), RangeAsk::Unsatisfiable);
        assert_eq!(r("bytes=10-20", 10), RangeAsk::Unsatisfiable);
        assert_eq!(r("bytes=-0", 10), RangeAsk::Unsatisfiable);
        assert_eq!(r("bytes=0-", 0), RangeAsk::Unsatisfiable);
        assert_eq!(r("bytes=0-1,3-4", 10), RangeAsk::Full);
        assert_eq!(r("bytes=4-2", 10), RangeAsk::Full);
        assert_eq!(r("bytes=a-b", 10), RangeAsk::Full);
        assert_eq!(r("bytes=+1-2", 10), RangeAsk::Full);
        assert_eq!(r("items=0-1", 10), RangeAsk::Full);
        assert_eq!(r("bytes=-", 10), RangeAsk::Full);
        assert_eq!(r("bytes=99999999999999999999-", 10), RangeAsk::Full);
    }

    #[test]
    fn validators() {
        let mtime = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let tag = etag(4096, mtime, None);
        assert_eq!(tag, "\"1000-17979cfe3d85cd15\"");
        assert_eq!(
            etag(4096, mtime, Some(Encoding::Brotli)),
            "\"1000-17979cfe3d85cd15.br\""
        );
        let inm = |v: &str| not_modified(&with(header::IF_NONE_MATCH, v), &tag, mtime);
        assert!(inm(&tag));
        assert!(inm(&format!("W/{tag}")));
        assert!(inm(&format!("\"x\", {tag}")));
        assert!(inm("*"));
        assert!(!inm("\"x\""));
        let date = httpdate::fmt_http_date(mtime);
        let ims = |v: &str| not_modified(&with(header::IF_MODIFIED_SINCE, v), &tag, mtime);
        assert!(ims(&date));
        assert!(!ims(&httpdate::fmt_http_date(
            mtime - Duration::from_secs(1)
        )));
        // If-None-Match wins: a mismatch is 200 whatever the date says.
        let mut both = with(header::IF_NONE_MATCH, "\"x\"");
        both.insert(header::IF_MODIFIED_SINCE, date.parse().unwrap());
        assert!(!not_modified(&both, &tag, mtime));

        let ir = |v: &str| if_range_allows(&with(header::IF_RANGE, v), &tag, mtime);
        assert!(ir(&tag));
        assert!(!ir(&format!("W/{tag}")));
        assert!(!ir("\"other\""));
        assert!(ir(&date));
        assert!(!ir(&httpdate::fmt_http_date(
            mtime - Duration::from_secs(5)
        )));
        assert!(if_range_allows(&HeaderMap::new(), &tag, mtime));
    }
}
