//! Who may use the admin listener: the checks every admin request passes
//! before an endpoint sees it (pure; unit-tested below).
//!
//! A browser on the operator's machine can be made to send requests to the
//! admin port: a page on any site can `POST /reload` (CSRF), and a name the
//! attacker controls can be re-pointed at 127.0.0.1 (DNS rebinding) so that
//! its scripts read `/metrics`. Both are refused by what the browser cannot
//! hide:
//!
//! 1. **Host** must name the admin listener: its bound `ip:port`, a loopback
//!    name (`localhost`, `127.0.0.1`, `[::1]`) with the bound port, any IP
//!    address with the bound port when the listener is bound to all
//!    interfaces, or a name from `[admin] hosts`. A rebinding page's
//!    requests carry the attacker's name, so they fail here.
//! 2. **Origin**, when sent, must be the admin's own (`http://` + the Host);
//!    `Sec-Fetch-Site`, when sent, must be `same-origin` or `none`. A
//!    cross-site request from a page fails here (even from another port of
//!    localhost, which is `same-site`).
//! 3. **Token**: with `[admin] token`, `Authorization: Bearer TOKEN`
//!    (compared in constant time) on every endpoint but `/healthz` and
//!    `/readyz`, which orchestrators poll without credentials.

use std::net::{IpAddr, SocketAddr};

use http::header::{AUTHORIZATION, HOST, ORIGIN};
use http::uri::Authority;
use http::{HeaderMap, StatusCode};

/// What a request must match.
#[derive(Debug)]
pub struct Guard<'a> {
    /// The admin listener's bound address.
    pub bound: SocketAddr,
    /// `[admin] hosts`, lowercase.
    pub hosts: &'a [String],
    /// The bearer token, when one is configured.
    pub token: Option<&'a str>,
}

/// Why a request was refused; the status and the line for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No Host, several, or one that does not name this listener.
    Host,
    /// An `Origin` of another site (or `null`).
    Origin,
    /// `Sec-Fetch-Site: cross-site` or `same-site`.
    FetchSite,
    /// A token is configured and the request has none.
    NoToken,
    /// A token is configured and the request's is another.
    WrongToken,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::Host | Refusal::Origin | Refusal::FetchSite => StatusCode::FORBIDDEN,
            Refusal::NoToken | Refusal::WrongToken => StatusCode::UNAUTHORIZED,
        }
    }

    /// For the log and the answer's body (never the token).
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Host => "the Host header does not name the admin listener (DNS rebinding?)",
            Refusal::Origin => "a cross-origin request (Origin of another site)",
            Refusal::FetchSite => "a cross-site request (Sec-Fetch-Site)",
            Refusal::NoToken => "no Authorization: Bearer token",
            Refusal::WrongToken => "wrong bearer token",
        }
    }
}

/// Endpoints that answer without the token: liveness and readiness probes.
pub fn open_endpoint(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

impl Guard<'_> {
    /// Checks `headers` of a request for `path`.
    pub fn check(&self, path: &str, headers: &HeaderMap) -> Result<(), Refusal> {
        let mut hosts = headers.get_all(HOST).iter();
        let (Some(host), None) = (hosts.next(), hosts.next()) else {
            return Err(Refusal::Host);
        };
        let host = host
            .to_str()
            .ok()
            .and_then(|h| h.parse::<Authority>().ok())
            .ok_or(Refusal::Host)?;
        if !self.host_allowed(&host) {
            return Err(Refusal::Host);
        }
        if let Some(origin) = headers.get(ORIGIN) {
            let own = format!("http://{}", host.as_str());
            if !origin.as_bytes().eq_ignore_ascii_case(own.as_bytes()) {
                return Err(Refusal::Origin);
            }
        }
        if let Some(site) = headers.get("sec-fetch-site") {
            if site != "same-origin" && site != "none" {
                return Err(Refusal::FetchSite);
            }
        }
        match self.token {
            Some(token) if !open_endpoint(path) => check_token(token, headers),
            _ => Ok(()),
        }
    }

    fn host_allowed(&self, host: &Authority) -> bool {
        if host.as_str().contains('@') {
            return false;
        }
        let port_ok = match host.port_u16() {
            Some(port) => port == self.bound.port(),
            // A client leaves out only the default port.
            None => self.bound.port() == 80,
        };
        if !port_ok {
            return false;
        }
        let name = host.host();
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            // A rebinding page cannot make its requests carry an IP address:
            // the browser sends the name in its address bar.
            return ip == self.bound.ip() || ip.is_loopback() || self.bound.ip().is_unspecified();
        }
        name.eq_ignore_ascii_case("localhost")
            || self.hosts.iter().any(|h| name.eq_ignore_ascii_case(h))
    }
}

/// `Authorization: Bearer TOKEN`, the token compared in constant time (as
/// SHA-256 digests, so that the comparison does not reveal its length either).
fn check_token(token: &str, headers: &HeaderMap) -> Result<(), Refusal> {
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or(Refusal::NoToken)?;
    let digest = |s: &str| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    let (given, want) = (digest(given), digest(token));
    aws_lc_rs::constant_time::verify_slices_are_equal(given.as_ref(), want.as_ref())
        .map_err(|_| Refusal::WrongToken)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, value.parse().unwrap());
        }
        h
    }

    fn check(
        bound: &str,
        token: Option<&str>,
        path: &str,
        pairs: &[(&'static str, &str)],
    ) -> Result<(), Refusal> {
        let hosts = ["ferry".to_owned()];
        let guard = Guard {
            bound: bound.parse().unwrap(),
            hosts: &hosts,
            token,
        };
        guard.check(path, &headers(pairs))
    }

    #[test]
    fn host_must_name_the_listener() {
        let loopback = "127.0.0.1:9901";
        for ok in [
            "127.0.0.1:9901",
            "localhost:9901",
            "LOCALHOST:9901",
            "[::1]:9901",
            "ferry:9901",
        ] {
            assert_eq!(
                check(loopback, None, "/reload", &[("host", ok)]),
                Ok(()),
                "{ok}"
            );
        }
        for bad in [
            "evil.example",
            "evil.example:9901",
            "localhost",
            "localhost:80",
            "127.0.0.1:9902",
            "10.0.0.5:9901",
            "localhost.evil.example:9901",
            "user@localhost:9901",
        ] {
            assert_eq!(
                check(loopback, None, "/reload", &[("host", bad)]),
                Err(Refusal::Host),
                "{bad}"
            );
        }
        assert_eq!(check(loopback, None, "/metrics", &[]), Err(Refusal::Host));
        assert_eq!(
            check(
                loopback,
                None,
                "/metrics",
                &[("host", "localhost:9901"), ("host", "localhost:9901")]
            ),
            Err(Refusal::Host)
        );
        // Bound to every interface: any address of the machine, not any name.
        let all = "0.0.0.0:9901";
        assert_eq!(
            check(all, None, "/metrics", &[("host", "172.18.0.4:9901")]),
            Ok(())
        );
        assert_eq!(
            check(all, None, "/metrics", &[("host", "ferry:9901")]),
            Ok(())
        );
        assert_eq!(
            check(all, None, "/metrics", &[("host", "backend:9901")]),
            Err(Refusal::Host)
        );
        assert_eq!(
            check("0.0.0.0:80", None, "/metrics", &[("host", "10.1.1.1")]),
            Ok(())
        );
    }

    #[test]
    fn cross_site_requests_are_refused() {
        let b = "127.0.0.1:9901";
        let host = ("host", "127.0.0.1:9901");
        assert_eq!(
            check(
                b,
                None,
                "/reload",
                &[host, ("origin", "http://127.0.0.1:9901")]
            ),
            Ok(())
        );
        for origin in [
            "https://evil.example",
            "null",
            "http://localhost:9901",
            "http://127.0.0.1:5173",
        ] {
            assert_eq!(
                check(b, None, "/reload", &[host, ("origin", origin)]),
                Err(Refusal::Origin),
                "{origin}"
            );
        }
        assert_eq!(
            check(b, None, "/reload", &[host, ("sec-fetch-site", "none")]),
            Ok(())
        );
        assert_eq!(
            check(
                b,
                None,
                "/reload",
                &[host, ("sec-fetch-site", "same-origin")]
            ),
            Ok(())
        );
        for site in ["cross-site", "same-site"] {
            assert_eq!(
                check(b, None, "/reload", &[host, ("sec-fetch-site", site)]),
                Err(Refusal::FetchSite)
            );
        }
    }

    #[test]
    fn the_token_is_required_except_for_probes() {
        let b = "127.0.0.1:9901";
        let host = ("host", "localhost:9901");
        let t = Some("s3cret");
        assert_eq!(check(b, t, "/reload", &[host]), Err(Refusal::NoToken));
        assert_eq!(
            check(b, t, "/metrics", &[host, ("authorization", "Basic s3cret")]),
            Err(Refusal::NoToken)
        );
        assert_eq!(
            check(b, t, "/metrics", &[host, ("authorization", "Bearer s3cre")]),
            Err(Refusal::WrongToken)
        );
        assert_eq!(
            check(
                b,
                t,
                "/metrics",
                &[host, ("authorization", "Bearer s3cret")]
            ),
            Ok(())
        );
        assert_eq!(
            check(b, t, "/reload", &[host, ("authorization", "bearer s3cret")]),
            Ok(())
        );
        assert_eq!(check(b, t, "/healthz", &[host]), Ok(()));
        assert_eq!(check(b, t, "/readyz", &[host]), Ok(()));
        // The Host check comes first, also for the probes.
        assert_eq!(
            check(b, t, "/healthz", &[("host", "evil.example")]),
            Err(Refusal::Host)
        );
        assert_eq!(Refusal::WrongToken.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(Refusal::Origin.status(), StatusCode::FORBIDDEN);
    }
}
