//! Upstream HTTP/1.1 servers started by the test: any handler, the echo
//! backend, and an address where nothing listens.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::clients::{TestBody, body};

/// An upstream HTTP/1.1 server started by the test.
pub struct Backend {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    /// Serves every request with `handler`.
    pub async fn start<F, Fut>(handler: F) -> Backend
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve_on(listener, handler)
    }

    pub fn serve_on<F, Fut>(listener: TcpListener, handler: F) -> Backend
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let handler = handler.clone();
                        async move { Ok::<_, Infallible>(handler(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Backend { addr, task }
    }

    /// Answers every request with a text description of it: `backend NAME`,
    /// `method M`, `uri U`, `version V`, one `header name: value` line per
    /// header (in order), and `body-bytes N`.
    pub async fn echo(name: &'static str) -> Backend {
        Self::start(move |req: Request<Incoming>| async move {
            let mut out = format!(
                "backend {name}\nmethod {}\nuri {}\nversion {:?}\n",
                req.method(),
                req.uri(),
                req.version()
            );
            for (k, v) in req.headers() {
                out.push_str(&format!(
                    "header {}: {}\n",
                    k,
                    v.to_str().unwrap_or("<binary>")
                ));
            }
            let n = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes().len())
                .unwrap_or(0);
            out.push_str(&format!("body-bytes {n}\n"));
            Response::builder()
                .header("content-type", "text/plain")
                .body(body(out))
                .unwrap()
        })
        .await
    }
}

/// A loopback address where nothing listens (bound, then closed).
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}
