//! `ferry reload`: ask the running ferry to reload, through the admin
//! listener when `[admin]` is configured, else by SIGHUP to the pid in
//! `server.pid_file`.
//!
//! The admin listener refuses requests whose `Host` does not name it and,
//! with `[admin] token`, those without the token: `ferry reload` connects to
//! loopback when the admin is bound to every interface, names that address
//! in `Host`, and sends the token from `$FERRY_ADMIN_TOKEN` or, failing
//! that, the config's `token` / `token_file`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};

use super::{CliError, load, out, small_runtime};
use crate::app::ConfigSource;

/// How long the admin listener has to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long it has to finish the reload and answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the running ferry could not be asked to reload.
#[derive(Debug, thiserror::Error)]
pub enum ReloadCommandError {
    #[error(
        "cannot reach the admin listener at {addr}: {source}\n  is ferry running with this config?"
    )]
    Admin {
        addr: SocketAddr,
        #[source]
        source: AdminError,
    },
    #[error("cannot read {}: {source}\n  is ferry running with this config?", path.display())]
    PidFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot signal pid {pid} (from {})", path.display())]
    Signal { pid: String, path: PathBuf },
    #[error(
        "this config has no [admin] listener and no server.pid_file, so `ferry reload` cannot find the process.\n  \
         add `[admin] addr = \"127.0.0.1:9901\"`, or send SIGHUP yourself: kill -HUP <pid>, docker kill -s HUP <container>"
    )]
    NoProcess,
    #[error("{0}\n  or set ${TOKEN_ENV} to the admin token")]
    Token(#[source] crate::config::AdminTokenError),
}

/// Where to reach a listener bound to `addr`: loopback for a wildcard bind.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// A failed `POST /reload`.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Connect(#[source] std::io::Error),
    #[error("{0}")]
    Http(#[source] hyper::Error),
}

/// The environment variable whose token overrides the config's.
pub const TOKEN_ENV: &str = "FERRY_ADMIN_TOKEN";

pub(super) fn run(source: &ConfigSource) -> Result<ExitCode, CliError> {
    let config = load(source)?;
    if let Some(admin) = &config.admin {
        let token = match std::env::var(TOKEN_ENV) {
            Ok(token) if !token.trim().is_empty() => Some(token.trim().to_owned()),
            _ => match &admin.token {
                Some(token) => Some(token.resolve().map_err(ReloadCommandError::Token)?),
                None => None,
            },
        };
        let addr = reachable(admin.addr);
        let (status, body) = small_runtime()?
            .block_on(post_reload(addr, token.as_deref()))
            .map_err(|source| ReloadCommandError::Admin { addr, source })?;
        // The admin listener's answer says what happened either way.
        return Ok(if status == 200 {
            out(&body);
            ExitCode::SUCCESS
        } else {
            eprint!("{body}");
            ExitCode::FAILURE
        });
    }
    let Some(pid_file) = &config.server.pid_file else {
        return Err(ReloadCommandError::NoProcess.into());
    };
    let pid = std::fs::read_to_string(pid_file)
        .map_err(|source| ReloadCommandError::PidFile {
            path: pid_file.clone(),
            source,
        })?
        .trim()
        .to_owned();
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status();
    if !sent.is_ok_and(|status| status.success()) {
        let path = pid_file.clone();
        return Err(ReloadCommandError::Signal { pid, path }.into());
    }
    out(&format!(
        "sent SIGHUP to ferry (pid {pid}); its log says whether the reload succeeded\n"
    ));
    Ok(ExitCode::SUCCESS)
}

/// `POST /reload` on the admin listener; returns the status and body.
async fn post_reload(addr: SocketAddr, token: Option<&str>) -> Result<(u16, String), AdminError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| AdminError::Timeout)?
        .map_err(AdminError::Connect)?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(AdminError::Http)?;
    tokio::spawn(conn);
    let mut req = http::Request::post("/reload")
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .expect("a static request is valid");
    if let Some(token) = token {
        // Validated as visible ASCII when the config (or file) was read; from
        // the environment it may not be, and is then left out (and refused).
        if let Ok(mut value) = http::HeaderValue::from_str(&format!("Bearer {token}")) {
            value.set_sensitive(true);
            req.headers_mut().insert(http::header::AUTHORIZATION, value);
        }
    }
    let exchange = async {
        let res = sender.send_request(req).await?;
        let status = res.status().as_u16();
        let body = res.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(ANSWER_TIMEOUT, exchange)
        .await
        .map_err(|_| AdminError::Timeout)?
        .map_err(AdminError::Http)
}
