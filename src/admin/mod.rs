//! The admin listener (`[admin] addr`, loopback unless `allow_remote`):
//! `GET /metrics`, `GET /healthz`, `GET /readyz`, `POST /reload`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::proxy::LiveState;
use crate::reload::Reloader;

/// What the admin endpoints read.
#[derive(Debug, Clone)]
pub struct Admin {
    pub live: LiveState,
    pub reloader: Arc<Reloader>,
    /// Set when shutdown begins: `/readyz` turns 503 so load balancers stop sending.
    pub draining: Arc<AtomicBool>,
}

/// Serves the admin endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, admin: Admin) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(admin.addr = %addr, "admin listening: /metrics /healthz /readyz /reload");
    }
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "admin accept failed");
                continue;
            }
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(handle(&admin, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
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
