//! Content codings: which one a client accepts ([`AcceptEncoding`]), shared
//! by precompressed static files and by compression of proxied responses,
//! and the streaming [`Encoder`] that compresses a body on the way out.

mod encoder;

pub use encoder::{BROTLI_QUALITY, Encoder, GZIP_LEVEL, ZSTD_LEVEL};

use http::header::ACCEPT_ENCODING;
use http::{HeaderMap, HeaderValue};

/// A content coding ferry serves or applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Brotli,
    Zstd,
    Gzip,
}

impl Encoding {
    /// Every coding, in ferry's order of preference when q-values tie.
    pub const ALL: [Encoding; 3] = [Encoding::Brotli, Encoding::Zstd, Encoding::Gzip];

    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
            Encoding::Gzip => "gzip",
        }
    }

    /// The precompressed sibling's suffix (`app.js` + `.br`).
    pub fn extension(self) -> &'static str {
        match self {
            Encoding::Brotli => ".br",
            Encoding::Zstd => ".zst",
            Encoding::Gzip => ".gz",
        }
    }
}

/// A request's `Accept-Encoding`, as q-values in thousandths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcceptEncoding {
    /// `(coding, q)` as listed, lower-cased; `x-gzip` counts as `gzip`.
    listed: Vec<(String, u16)>,
}

impl AcceptEncoding {
    /// Every `Accept-Encoding` field of `headers`, merged. Malformed members
    /// are skipped (a client that cannot write the header gets identity).
    pub fn from_headers(headers: &HeaderMap) -> AcceptEncoding {
        AcceptEncoding::from_values(headers.get_all(ACCEPT_ENCODING))
    }

    /// [`from_headers`](Self::from_headers) for field values kept aside
    /// (the request's, after its head went upstream).
    pub fn from_values<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> AcceptEncoding {
        let mut listed = Vec::new();
        for value in values {
            let Ok(value) = value.to_str() else { continue };
            for member in value.split(',') {
                let mut parts = member.split(';');
                let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
                if coding.is_empty() {
                    continue;
                }
                let mut q = Some(1000);
                for param in parts {
                    if let Some((name, v)) = param.split_once('=') {
                        if name.trim().eq_ignore_ascii_case("q") {
                            q = parse_q(v.trim());
                        }
                    }
                }
                let Some(q) = q else { continue };
                let coding = if coding == "x-gzip" {
                    "gzip".to_owned()
                } else {
                    coding
                };
                listed.push((coding, q));
            }
        }
        AcceptEncoding { listed }
    }

    /// The q-value (0–1000) of `coding`: as listed, else `*`'s, else 0
    /// (identity: 1000 unless refused).
    pub fn q(&self, coding: &str) -> u16 {
        let find = |name: &str| {
            self.listed
                .iter()
                .filter(|(c, _)| c == name)
                .map(|(_, q)| *q)
                .max()
        };
        match find(coding) {
            Some(q) => q,
            None if coding == "identity" => match find("*") {
                Some(0) => 0,
                _ => 1000,
            },
            None => find("*").unwrap_or(0),
        }
    }

    /// The best of `offered` the client accepts: highest q-value, ties to the
    /// earlier in `offered`. `None`: send identity.
    pub fn choose(&self, offered: &[Encoding]) -> Option<Encoding> {
        let mut best: Option<(Encoding, u16)> = None;
        for &e in offered {
            let q = self.q(e.token());
            if q > 0 && best.is_none_or(|(_, b)| q > b) {
                best = Some((e, q));
            }
        }
        best.map(|(e, _)| e)
    }

    /// Whether an uncompressed body is acceptable (`identity;q=0` or
    /// `*;q=0` refuse it; ferry then still sends it, as nginx does, rather
    /// than answer 406).
    pub fn identity_allowed(&self) -> bool {
        self.q("identity") > 0
    }
}

/// `q=0.8` → 800; `None` for anything RFC 9110's `qvalue` is not.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value = format!("{frac:0<3}").parse::<u16>().ok()?;
    match int {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> AcceptEncoding {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        AcceptEncoding::from_headers(&h)
    }

    #[test]
    fn q_values_decide_ties_go_to_the_offer_order() {
        let all = Encoding::ALL;
        assert_eq!(
            accept("gzip, deflate, br, zstd").choose(&all),
            Some(Encoding::Brotli)
        );
        assert_eq!(
            accept("gzip;q=1, br;q=0.5").choose(&all),
            Some(Encoding::Gzip)
        );
        assert_eq!(
            accept("br;q=0, gzip;q=0.1").choose(&all),
            Some(Encoding::Gzip)
        );
        assert_eq!(accept("*").choose(&all), Some(Encoding::Brotli));
        assert_eq!(accept("*;q=0.5, br;q=0").choose(&all), Some(Encoding::Zstd));
        assert_eq!(accept("x-gzip").choose(&all), Some(Encoding::Gzip));
        assert_eq!(accept("identity").choose(&all), None);
        assert_eq!(accept("GZIP;Q=0.500").choose(&all), Some(Encoding::Gzip));
        assert_eq!(AcceptEncoding::default().choose(&all), None);
        // Malformed q-values drop the member, not the header.
        assert_eq!(accept("br;q=2, gzip").choose(&all), Some(Encoding::Gzip));
        assert_eq!(
            accept("br;q=0.5555, gzip;q=0.1").choose(&all),
            Some(Encoding::Gzip)
        );
        assert_eq!(accept("gzip").choose(&[Encoding::Brotli]), None);
    }

    #[test]
    fn identity() {
        assert!(accept("gzip").identity_allowed());
        assert!(!accept("gzip, identity;q=0").identity_allowed());
        assert!(!accept("gzip, *;q=0").identity_allowed());
        assert!(accept("*;q=0, identity").identity_allowed());
        assert!(AcceptEncoding::default().identity_allowed());
    }
}
