//! A ferry started in this process from a TOML string, on port 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ferry::app::Ferry;
use ferry::config::{Config, ListenerKind};
use tokio::sync::oneshot;

use super::ca::TestCa;
use super::clients::{Client, Proto, empty, request};
use super::within;

/// A running ferry, in this process, on port 0.
pub struct TestProxy {
    pub ca: TestCa,
    /// Bound addresses by listener kind (first of each).
    pub tls_addr: Option<SocketAddr>,
    pub plain_addr: Option<SocketAddr>,
    pub redirect_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    /// Reloads the config file (for proxies started with [`TestProxy::start_file`]).
    pub reloader: Arc<ferry::reload::Reloader>,
    pub config_path: Option<PathBuf>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestProxy {
    /// Starts ferry from `toml`. `{cert}` and `{key}` are replaced by a leaf for
    /// localhost / 127.0.0.1 / ::1; `{backend}` placeholders must be filled by the caller.
    pub async fn start(toml: &str) -> TestProxy {
        Self::start_with(toml, TestCa::new()).await
    }

    pub async fn start_with(toml: &str, ca: TestCa) -> TestProxy {
        let src = Self::fill(toml, &ca);
        let config = Config::parse(&src, "test.toml", ca.dir.path())
            .unwrap_or_else(|e| panic!("test config is invalid:\n{e}\n---\n{src}"));
        let ferry = Ferry::bind(config).await.expect("ferry binds");
        Self::serve(ferry, ca, None)
    }

    /// Starts ferry from a real file (`proxy.toml` in the CA's temp dir), so
    /// that reloads and the file watcher work.
    pub async fn start_file(toml: &str) -> TestProxy {
        Self::start_file_with(toml, TestCa::new()).await
    }

    /// [`start_file`](Self::start_file) with a CA (and its directory) the test already made.
    pub async fn start_file_with(toml: &str, ca: TestCa) -> TestProxy {
        let path = ca.dir.path().join("proxy.toml");
        std::fs::write(&path, Self::fill(toml, &ca)).unwrap();
        let ferry = Ferry::bind_file(&path).await.expect("ferry binds");
        Self::serve(ferry, ca, Some(path))
    }

    /// Replaces `{cert}` and `{key}` with a leaf for localhost / 127.0.0.1 / ::1.
    pub fn fill(toml: &str, ca: &TestCa) -> String {
        let cert = ca.dir.path().join("localhost.pem");
        if !cert.exists() {
            ca.leaf("localhost", &["localhost", "127.0.0.1", "::1"]);
        }
        let key = ca.dir.path().join("localhost-key.pem");
        toml.replace("{cert}", &cert.display().to_string())
            .replace("{key}", &key.display().to_string())
    }

    /// Atomically replaces the config file (write aside, rename), as editors and `docker cp` do.
    pub fn rewrite_config(&self, toml: &str) {
        let path = self.config_path.as_ref().expect("started with start_file");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, Self::fill(toml, &self.ca)).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    fn serve(ferry: Ferry, ca: TestCa, config_path: Option<PathBuf>) -> TestProxy {
        let reloader = ferry.reloader();
        let tls_addr = ferry.addr(ListenerKind::Tls);
        let plain_addr = ferry.addr(ListenerKind::Plain);
        let redirect_addr = ferry.addr(ListenerKind::RedirectHttps);
        let admin_addr = ferry.admin_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(ferry.serve(async move {
            let _ = rx.await;
        }));
        TestProxy {
            ca,
            tls_addr,
            plain_addr,
            redirect_addr,
            admin_addr,
            reloader,
            config_path,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// An HTTPS client to the TLS listener, with SNI `localhost`.
    pub async fn client(&self, proto: Proto) -> Client {
        self.client_sni(proto, "localhost").await
    }

    pub async fn client_sni(&self, proto: Proto, sni: &str) -> Client {
        let addr = self.tls_addr.expect("config has a tls listener");
        Client::tls(addr, &self.ca, proto, sni).await
    }

    /// `method path` on the admin listener; returns (status, body).
    pub async fn admin(&self, method: &str, path: &str) -> (u16, String) {
        let addr = self.admin_addr.expect("config has [admin]");
        let mut c = Client::plain(addr).await;
        let res = c
            .fetch(
                request(method, &addr.to_string(), path, false)
                    .body(empty())
                    .unwrap(),
            )
            .await;
        (res.status(), res.text().to_owned())
    }

    /// Starts the drain without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Starts the drain and waits for ferry's serve task to return.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            within(task).await.unwrap();
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
