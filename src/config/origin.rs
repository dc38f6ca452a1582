//! WebSocket origin allowlist entries, compared as RFC 6454 origins:
//! scheme and host case-insensitively, ports with their scheme's default.

/// An `allowed_origins` entry: `https://example.com`, `https://*.example.com`,
/// `http://localhost:5173`, or `null` (sandboxed pages and `file:` URLs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: String,
    /// Lowercase host; for a wildcard, the suffix including the dot (`.example.com`).
    host: String,
    wildcard: bool,
    port: u16,
    /// The literal `null` origin.
    null: bool,
}

/// Why an `allowed_origins` entry was refused; the message says what a valid one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// Not `scheme://host[:port]` (or `null`).
    #[error(
        "`{0}` is not an origin; write scheme://host[:port] with no path, e.g. \"https://example.com\""
    )]
    NotAnOrigin(String),
    /// A `*` anywhere but as the whole left-most label.
    #[error("`{0}`: a wildcard must be the whole left-most label, e.g. \"https://*.example.com\"")]
    Wildcard(String),
}

/// A parsed `Origin` header value.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Splits `scheme://host[:port]` (no path) into lowercase parts with the port resolved.
fn split(s: &str) -> Option<(String, String, u16)> {
    let (scheme, rest) = s.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (addr, after) = v6.split_once(']')?;
        let host = format!("[{}]", addr.to_ascii_lowercase());
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p.parse::<u16>().ok()?)),
            None if after.is_empty() => (host, None),
            None => return None,
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p.parse::<u16>().ok()?)),
            None => (rest.to_ascii_lowercase(), None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = port.or_else(|| default_port(&scheme))?;
    Some((scheme, host, port))
}

impl OriginPattern {
    /// Parses an allowlist entry; the error says what a valid one looks like.
    pub fn parse(s: &str) -> Result<OriginPattern, OriginError> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("null") {
            return Ok(OriginPattern {
                scheme: String::new(),
                host: String::new(),
                wildcard: false,
                port: 0,
                null: true,
            });
        }
        let (scheme, host, port) =
            split(s).ok_or_else(|| OriginError::NotAnOrigin(s.to_owned()))?;
        let (host, wildcard) = match host.strip_prefix("*.") {
            Some(rest) if !rest.is_empty() && !rest.contains('*') => (format!(".{rest}"), true),
            _ if host.contains('*') => return Err(OriginError::Wildcard(s.to_owned())),
            _ => (host, false),
        };
        Ok(OriginPattern {
            scheme,
            host,
            wildcard,
            port,
            null: false,
        })
    }

    /// Whether the `Origin` header value `origin` is this origin.
    pub fn matches(&self, origin: &str) -> bool {
        let origin = origin.trim();
        if self.null {
            return origin.eq_ignore_ascii_case("null");
        }
        let Some((scheme, host, port)) = split(origin) else {
            return false;
        };
        let o = Origin { scheme, host, port };
        if o.scheme != self.scheme || o.port != self.port {
            return false;
        }
        if self.wildcard {
            o.host.len() > self.host.len() && o.host.ends_with(&self.host)
        } else {
            o.host == self.host
        }
    }
}

impl std::fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.null {
            return f.write_str("null");
        }
        let host = if self.wildcard {
            format!("*{}", self.host)
        } else {
            self.host.clone()
        };
        match default_port(&self.scheme) {
            Some(p) if p == self.port => write!(f, "{}://{host}", self.scheme),
            _ => write!(f, "{}://{host}:{}", self.scheme, self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> OriginPattern {
        OriginPattern::parse(s).unwrap()
    }

    #[test]
    fn exact_origins_compare_case_insensitively_with_default_ports() {
        let o = p("https://Example.com");
        assert!(o.matches("https://example.com"));
        assert!(o.matches("HTTPS://EXAMPLE.COM:443"));
        assert!(!o.matches("http://example.com"));
        assert!(!o.matches("https://example.com:8443"));
        assert!(!o.matches("https://example.com.evil.test"));
        assert!(!o.matches("https://evilexample.com"));
        assert!(!o.matches("null"));
        assert!(!o.matches(""));
        let dev = p("http://localhost:5173");
        assert!(dev.matches("http://localhost:5173"));
        assert!(!dev.matches("http://localhost"));
        assert!(p("http://localhost:80").matches("http://localhost"));
        assert!(p("http://[::1]:5173").matches("http://[::1]:5173"));
    }

    #[test]
    fn wildcards_cover_subdomains_only() {
        let o = p("https://*.example.com");
        assert!(o.matches("https://www.example.com"));
        assert!(o.matches("https://a.b.example.com"));
        assert!(!o.matches("https://example.com"));
        assert!(!o.matches("https://www.example.com:444"));
        assert!(!o.matches("https://wwwexample.com"));
    }

    #[test]
    fn null_and_bad_entries() {
        assert!(p("null").matches("null"));
        assert!(!p("https://x.test").matches("null"));
        for bad in [
            "example.com",
            "https://",
            "https://x.test/path",
            "https://a*.x.test",
            "https://x.test:99999",
            "*",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            p("https://*.Example.com:443").to_string(),
            "https://*.example.com"
        );
        assert_eq!(
            p("http://localhost:5173").to_string(),
            "http://localhost:5173"
        );
    }

    #[test]
    fn errors_say_what_a_valid_entry_looks_like() {
        assert_eq!(
            OriginPattern::parse(" example.com ")
                .unwrap_err()
                .to_string(),
            "`example.com` is not an origin; write scheme://host[:port] with no path, e.g. \"https://example.com\""
        );
        assert_eq!(
            OriginPattern::parse("https://a*.x.test").unwrap_err(),
            OriginError::Wildcard("https://a*.x.test".into())
        );
        assert_eq!(
            OriginPattern::parse("https://a*.x.test")
                .unwrap_err()
                .to_string(),
            "`https://a*.x.test`: a wildcard must be the whole left-most label, e.g. \"https://*.example.com\""
        );
    }
}
