//! The probe's HTTP steps: the request or WebSocket handshake, the upgrade,
//! the first echo, and what an error status means.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Report, STEP_TIMEOUT, Target};
use crate::proxy::websocket::{accept_key, new_key};

/// The HTTP request (or WebSocket handshake), and for a WebSocket the first echo.
pub(super) async fn steps<I>(
    mut r: Report,
    io: TokioIo<I>,
    t: &Target,
    origin: Option<&str>,
) -> Report
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        match hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io).await {
            Ok(pair) => pair,
            Err(e) => {
                r.diagnose(format!("HTTP/1.1 set-up failed: {e}"));
                return r;
            }
        };
    tokio::spawn(conn.with_upgrades());
    let key = new_key();
    let req = match request(t, origin, &key) {
        Ok(req) => req,
        Err(e) => {
            r.diagnose(e.to_string());
            return r;
        }
    };
    let res = match tokio::time::timeout(STEP_TIMEOUT * 2, sender.send_request(req)).await {
        Ok(Ok(res)) => res,
        Ok(Err(e)) => {
            r.step(false, "http", e.to_string());
            r.diagnose("the server closed the connection without an HTTP answer");
            return r;
        }
        Err(_) => {
            r.step(false, "http", "no answer in 10s");
            r.diagnose("no HTTP answer");
            return r;
        }
    };
    let status = res.status();
    if !t.ws {
        let ok = !status.is_server_error() && !status.is_client_error();
        r.step(ok, "http", format!("{status}"));
        if ok {
            return r.passed();
        }
        let why = explain_status(res).await;
        r.diagnose(why);
        return r;
    }
    if status != StatusCode::SWITCHING_PROTOCOLS {
        r.step(false, "upgrade", format!("{status} instead of 101"));
        let why = explain_status(res).await;
        r.diagnose(format!(
            "{why}; the browser reports the WebSocket as failed (1006)"
        ));
        return r;
    }
    let accept_ok = res
        .headers()
        .get("sec-websocket-accept")
        .is_some_and(|v| v.as_bytes() == accept_key(key.as_bytes()).as_bytes());
    r.step(accept_ok, "upgrade", "101 Switching Protocols");
    if !accept_ok {
        r.diagnose("the 101 has a wrong Sec-WebSocket-Accept: browsers reject the connection");
        return r;
    }
    match hyper::upgrade::on(res).await {
        Ok(upgraded) => echo(r, TokioIo::new(upgraded)).await,
        Err(e) => {
            r.diagnose(format!("the upgrade did not complete: {e}"));
            r
        }
    }
}

/// A GET for the target, as a browser on `origin` sends it; a WebSocket
/// handshake with `key` for a ws:// or wss:// target.
fn request(t: &Target, origin: Option<&str>, key: &str) -> http::Result<Request<Empty<Bytes>>> {
    let path = t.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let authority = t.uri.authority().map_or(t.host.as_str(), |a| a.as_str());
    let mut req = Request::get(path).header("host", authority).header(
        "user-agent",
        concat!("ferry-probe/", env!("CARGO_PKG_VERSION")),
    );
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    if t.ws {
        req = req
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", key);
    }
    req.body(Empty::new())
}

/// One masked text frame, then the first frame back.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut r: Report, mut io: S) -> Report {
    let payload = b"ferry probe";
    let mask = [0x13u8, 0x57, 0x9b, 0xdf];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    if io.write_all(&frame).await.is_err() {
        r.diagnose("the connection closed right after the upgrade");
        return r;
    }
    let mut head = [0u8; 2];
    match tokio::time::timeout(STEP_TIMEOUT, io.read_exact(&mut head)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => {
            r.step(false, "echo", "connection closed");
            r.diagnose(
                "the server closed without a WebSocket close frame: browsers report this as 1006",
            );
            return r;
        }
        Err(_) => {
            let no_reply = "no reply in 5s (fine if the server does not echo)";
            r.step(true, "echo", no_reply);
            return r.passed();
        }
    }
    let opcode = head[0] & 0x0f;
    let len = usize::from(head[1] & 0x7f).min(125);
    let mut body = vec![0u8; len];
    let _ = tokio::time::timeout(STEP_TIMEOUT, io.read_exact(&mut body)).await;
    match opcode {
        0x1 | 0x2 => {
            let reply = String::from_utf8_lossy(&body);
            r.step(true, "echo", format!("reply: {reply:?}"));
            r.passed()
        }
        0x8 => {
            let code = match body.get(..2) {
                Some(c) => u16::from_be_bytes([c[0], c[1]]),
                None => 1005,
            };
            let reason = String::from_utf8_lossy(body.get(2..).unwrap_or_default()).into_owned();
            r.step(false, "echo", format!("Close {code} {reason:?}"));
            r.diagnose(format!(
                "the server closed the session with {code} ({reason}) right after the first message"
            ));
            r
        }
        op => {
            r.step(true, "echo", format!("a frame with opcode {op}"));
            r.passed()
        }
    }
}

/// Who answered an error status (ferry itself, or whatever is behind it) and what it means.
async fn explain_status(res: Response<Incoming>) -> String {
    let status = res.status();
    let via_ferry = crate::proxy::response::looks_like_error(res.headers());
    let body = res
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body);
    let who = if via_ferry { "ferry" } else { "the server" };
    // A short, one-line excerpt: error pages can be whole HTML documents.
    let excerpt: String = body
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(120)
        .collect();
    let detail = if excerpt.is_empty() {
        String::new()
    } else {
        format!(" ({excerpt})")
    };
    match status.as_u16() {
        404 if via_ferry => {
            format!("ferry has no route for this host and path{detail}: try `ferry route URL`")
        }
        403 if via_ferry => format!(
            "ferry refused it{detail}: for a WebSocket, check the route's allowed_origins and the Origin sent (--origin)"
        ),
        502 => {
            format!("{who} answered 502{detail}: its upstream is down or refused the connection")
        }
        504 => format!(
            "{who} answered 504{detail}: its upstream is too slow (read_timeout) or unreachable"
        ),
        _ => format!("{who} answered {status}{detail}"),
    }
}
