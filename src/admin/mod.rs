//! The admin listener (`[admin] addr`, loopback unless `allow_remote`):
//! `GET /metrics`, `GET /healthz`, `GET /readyz`, `POST /reload`, each
//! behind the [`guard`] (Host, Origin, and the bearer token when set).

mod guard;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use self::guard::{Guard, Refusal};
use crate::config::{AdminConfig, AdminToken};
use crate::proxy::LiveState;
use crate::reload::Reloader;

/// What the admin endpoints read.
#[derive(Debug, Clone)]
pub struct Admin {
    pub live: LiveState,
    pub reloader: Arc<Reloader>,
    /// Set when shutdown begins: `/readyz` turns 503 so load balancers stop sending.
    pub draining: Arc<AtomicBool>,
    /// `[admin]` as ferry started; a reload may change `hosts` and the token
    /// (taken from the live configuration), not the address.
    pub config: AdminConfig,
}

/// Serves the admin endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, admin: Admin) {
    let bound = listener.local_addr().unwrap_or(admin.config.addr);
    tracing::info!(admin.addr = %bound, "admin listening: /metrics /healthz /readyz /reload");
    if !bound.ip().is_loopback() && admin.config.token.is_none() {
        tracing::warn!(admin.addr = %bound, "the admin listener is reachable from other machines and has no token: anyone who reaches it can read the metrics and reload; set [admin] token_file");
    }
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!(error = %e, "admin accept failed");
                continue;
            }
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(guarded(&admin, bound, peer, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Runs the [`guard`] checks, then the endpoint. A refusal is logged (with
/// who asked and why, never the token) and answered 403 or 401.
async fn guarded(
    admin: &Admin,
    bound: SocketAddr,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let verdict = {
        let state = admin.live.load();
        let config = state.config.admin.as_ref().unwrap_or(&admin.config);
        let token = match config.token.as_ref().map(AdminToken::resolve) {
            None => None,
            Some(Ok(token)) => Some(token),
            Some(Err(e)) => {
                // Fail closed: without its token the admin cannot tell who asks.
                tracing::error!(error = %e, "admin request refused: the token cannot be read");
                return reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "the admin token cannot be read; see ferry's log\n".into(),
                );
            }
        };
        let guard = Guard {
            bound,
            hosts: &config.hosts,
            token: token.as_deref(),
        };
        guard.check(req.uri().path(), req.headers())
    };
    match verdict {
        Ok(()) => handle(admin, req).await,
        Err(refusal) => refuse(refusal, peer, &req),
    }
}

fn refuse(refusal: Refusal, peer: SocketAddr, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let header = |name| {
        req.headers()
            .get(name)
            .map_or("-", |v| v.to_str().unwrap_or("(not text)"))
    };
    let (host, origin) = (header(header::HOST), header(header::ORIGIN));
    tracing::warn!(target: "ferry::admin", reason = refusal.reason(), client.addr = %peer, method = %req.method(),
        path = req.uri().path(), host, origin, status = refusal.status().as_u16(), "admin request refused");
    let mut res = reply(
        refusal.status(),
        "text/plain",
        format!("{}: {}\n", refusal.status(), refusal.reason()),
    );
    if refusal.status() == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"ferry admin\""),
        );
    }
    res
}

async fn handle(admin: &Admin, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            let text = admin.live.load().metrics.encode();
            reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                text,
            )
        }
        (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, "/readyz") => {
            if admin.draining.load(Ordering::Relaxed) {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "draining\n".into(),
                )
            } else {
                let generation = admin.live.load().generation;
                reply(
                    StatusCode::OK,
                    "text/plain",
                    format!("ready: configuration generation {generation}\n"),
                )
            }
        }
        (&Method::POST, "/reload") => match admin.reloader.reload("admin").await {
            Ok(generation) => reply(
                StatusCode::OK,
                "text/plain",
                format!("reloaded: configuration generation {generation}\n"),
            ),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("reload failed; the previous configuration keeps serving:\n{e}\n"),
            ),
        },
        (_, "/metrics" | "/healthz" | "/readyz" | "/reload") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics /healthz /readyz /reload\n".into(),
        ),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    res
}
