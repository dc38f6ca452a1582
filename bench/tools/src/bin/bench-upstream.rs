//! The one upstream every proxy in the benchmark talks to: plain HTTP/1.1
//! with keep-alive and WebSocket echo.
//!
//! - `GET /small`   → 200, a 100-byte text body
//! - `GET /1m`      → 200, 1 MiB (1,048,576 bytes)
//! - `GET /headers` → 200, the request head as received (to check what a proxy forwards)
//! - `GET /json/100k` → 200, `application/json`, 102,400 bytes of API-like JSON
//!   (the compression test: a proxy compresses it by the client's Accept-Encoding)
//! - `GET /ws` with `Upgrade: websocket` → 101, then every text/binary message is echoed
//! - anything else  → 404
//!
//! It is pinned to CPU 0 together with the load generator, so it has to be
//! cheap: static bodies, no per-request formatting, one thread by default.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::OnceLock;

use bytes::Bytes;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpSocket;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Message, Role, WebSocketConfig};

#[derive(Parser)]
#[command(about = "HTTP/1.1 + WebSocket echo upstream for ferry's benchmark")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9080")]
    addr: SocketAddr,
    /// Runtime threads (1 = current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// 100 bytes.
const SMALL: &[u8] = b"ferry bench small response: 100 bytes of text so that headers dominate, as in an API call......\n";

fn one_mib() -> Bytes {
    static BODY: OnceLock<Bytes> = OnceLock::new();
    BODY.get_or_init(|| {
        let mut v = Vec::with_capacity(1 << 20);
        while v.len() < (1 << 20) {
            v.extend_from_slice(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_\n");
        }
        v.truncate(1 << 20);
        Bytes::from(v)
    })
    .clone()
}

/// 100 KiB (102,400 bytes) of JSON that looks like an API listing: records
/// with ids, names, e-mail addresses, numbers and tags from a fixed
/// pseudo-random sequence, so it compresses like real data (about 4:1 with
/// gzip), not like a repeated string.
fn json_100k() -> Bytes {
    static BODY: OnceLock<Bytes> = OnceLock::new();
    BODY.get_or_init(|| {
        const SIZE: usize = 100 * 1024;
        const WORDS: [&str; 16] = [
            "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
            "juliet", "kilo", "lima", "mike", "november", "oscar", "papa",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            x >> 33
        };
        let mut s = String::with_capacity(SIZE);
        s.push_str("{\"items\":[");
        let mut id = 0u64;
        while s.len() < SIZE - 400 {
            if id > 0 {
                s.push(',');
            }
            let (a, b, c) = (next(), next(), next());
            s.push_str(&format!(
                "{{\"id\":{},\"name\":\"{}-{}\",\"email\":\"{}.{:x}@example.com\",\"active\":{},\"score\":{}.{:02},\"created\":\"2026-{:02}-{:02}T{:02}:{:02}:{:02}Z\",\"tags\":[\"{}\",\"{}\"]}}",
                100_000 + id,
                WORDS[(a % 16) as usize],
                b % 10_000,
                WORDS[(b % 16) as usize],
                c & 0xffff_ffff,
                a % 3 != 0,
                c % 1000,
                b % 100,
                1 + a % 12,
                1 + b % 28,
                c % 24,
                a % 60,
                b % 60,
                WORDS[(c % 16) as usize],
                WORDS[((a >> 8) % 16) as usize],
            ));
            id += 1;
        }
        s.push_str("],\"next\":\"");
        while s.len() < SIZE - 2 {
            s.push(char::from(b'a' + (next() % 26) as u8));
        }
        s.push_str("\"}");
        debug_assert_eq!(s.len(), SIZE);
        Bytes::from(s)
    })
    .clone()
}

fn text(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn handle(mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, Bytes::from_static(b"GET only\n")));
    }
    Ok(match req.uri().path() {
        "/small" => text(StatusCode::OK, Bytes::from_static(SMALL)),
        "/1m" => text(StatusCode::OK, one_mib()),
        "/json/100k" => {
            let mut r = text(StatusCode::OK, json_100k());
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        "/headers" => {
            let mut s = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
            for (k, v) in req.headers() {
                s.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("<binary>")));
            }
            text(StatusCode::OK, Bytes::from(s))
        }
        "/ws" => websocket(&mut req),
        _ => text(StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
    })
}

fn websocket(req: &mut Request<Incoming>) -> Response<Full<Bytes>> {
    let is_upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return text(StatusCode::BAD_REQUEST, Bytes::from_static(b"no Sec-WebSocket-Key\n"));
    };
    if !is_upgrade {
        return text(StatusCode::BAD_REQUEST, Bytes::from_static(b"no Upgrade: websocket\n"));
    }
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let mut cfg = WebSocketConfig::default();
        cfg.read_buffer_size = 4096;
        cfg.write_buffer_size = 0;
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(cfg)).await;
        while let Some(Ok(msg)) = ws.next().await {
            match msg {
                Message::Text(_) | Message::Binary(_) => {
                    if ws.send(msg).await.is_err() {
                        break;
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&derive_accept_key(key.as_bytes())).expect("base64 is a valid header"),
    );
    r
}

async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(16384)?;
    eprintln!("bench-upstream listening on {addr}");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .with_upgrades()
                .await;
        });
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    rt.block_on(serve(args.addr))
}
