//! The validated `[admin]` table, and its bearer token, which is a secret:
//! its `Debug` never shows it, and `token_file` is read when the token is
//! needed (at start, by `ferry check` and `ferry reload`, per admin request)
//! so a rotated file applies without a reload.

use std::net::SocketAddr;
use std::path::PathBuf;

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub addr: SocketAddr,
    /// `allow_remote = true`: the address may be reachable from other machines.
    pub allow_remote: bool,
    /// Extra names a request's `Host` may carry (lowercase, without port):
    /// the name a scraper uses, `ferry` on a docker-compose network.
    pub hosts: Vec<String>,
    /// `token` / `token_file`: required as `Authorization: Bearer …`.
    pub token: Option<AdminToken>,
}

/// Where the admin bearer token comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum AdminToken {
    /// `token = "…"`, checked when the config was validated.
    Inline(String),
    /// `token_file = "…"`, resolved against the config file's directory.
    File(PathBuf),
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminToken::Inline(_) => f.write_str("Inline(<redacted>)"),
            AdminToken::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// A `token_file` that cannot serve as a token.
#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    #[error("cannot read admin.token_file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("admin.token_file {}: {problem}", path.display())]
    Invalid {
        path: PathBuf,
        problem: &'static str,
    },
}

impl AdminToken {
    /// The token's bytes (a file's contents without surrounding whitespace).
    pub fn resolve(&self) -> Result<String, AdminTokenError> {
        match self {
            AdminToken::Inline(token) => Ok(token.clone()),
            AdminToken::File(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| AdminTokenError::Read {
                        path: path.clone(),
                        source,
                    })?;
                let token = text.trim();
                token_problem(token).map_or(Ok(token.to_owned()), |problem| {
                    Err(AdminTokenError::Invalid {
                        path: path.clone(),
                        problem,
                    })
                })
            }
        }
    }
}

/// Why `token` cannot be a bearer token, if it cannot: it must fit in an
/// `Authorization` header as typed (visible ASCII, no spaces).
pub fn token_problem(token: &str) -> Option<&'static str> {
    if token.is_empty() {
        Some("the token is empty")
    } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
        Some("the token must be visible ASCII without spaces (e.g. `openssl rand -hex 32`)")
    } else {
        None
    }
}
