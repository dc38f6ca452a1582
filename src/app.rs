//! Wiring: config → certificates → state → bound listeners → serve until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::access_log::AccessLog;
use crate::config::{Config, ConfigError, ListenerKind};
use crate::metrics::Metrics;
use crate::proxy::{LiveState, State};
use crate::reload::Reloader;
use crate::server::{self, BindError, BoundListener};
use crate::tls::dev::{DevCertError, DevCerts};
use crate::tls::{CertError, CertStore, load_certificates};

/// Why ferry could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{}", list(.0))]
    Certificates(Vec<CertError>),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    DevCert(#[from] DevCertError),
    #[error("cannot open the access log: {0}")]
    AccessLog(#[source] std::io::Error),
    #[error(transparent)]
    AdminToken(#[from] crate::config::AdminTokenError),
}

fn list(errors: &[CertError]) -> String {
    errors
        .iter()
        .map(|e| format!("certificate error: {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A configured, bound ferry, ready to serve.
#[derive(Debug)]
pub struct Ferry {
    live: LiveState,
    certs: Option<Arc<CertStore>>,
    listeners: Vec<BoundListener>,
    reloader: Arc<Reloader>,
    admin: Option<tokio::net::TcpListener>,
    draining: Arc<std::sync::atomic::AtomicBool>,
}

impl Ferry {
    /// Loads certificates, builds the request state and binds every listener.
    /// Upstream names are not resolved here: they need not exist yet.
    /// A ferry built this way has no file to reload from.
    pub async fn bind(config: Config) -> Result<Ferry, StartError> {
        Self::bind_with(config, None).await
    }

    /// Like [`Ferry::bind`] for the config file at `path`, which reloads re-read.
    pub async fn bind_file(path: &Path) -> Result<Ferry, StartError> {
        let config = Config::load(path)?;
        Self::bind_with(config, Some(path.to_owned())).await
    }

    /// Binds `config`; `path` is where reloads read it from, if anywhere.
    pub async fn bind_with(config: Config, path: Option<PathBuf>) -> Result<Ferry, StartError> {
        let certificates =
            load_certificates(&config.certificates).map_err(StartError::Certificates)?;
        let certs = CertStore::new(&certificates, config.server.tls_min_version).map(Arc::new);
        let listeners = server::bind(&config.listeners).await?;
        if let Some(token) = config.admin.as_ref().and_then(|a| a.token.as_ref()) {
            // A token that cannot be read would lock the admin listener: say so now.
            token.resolve()?;
        }
        let admin = match &config.admin {
            Some(a) => Some(
                tokio::net::TcpListener::bind(a.addr)
                    .await
                    .map_err(|source| BindError {
                        addr: a.addr,
                        source,
                    })?,
            ),
            None => None,
        };
        let metrics = Arc::new(Metrics::new());
        metrics.generation(1);
        metrics.certificates(crate::tls::expiries(&certificates));
        let access_log = match &config.server.access_log {
            Some(log) => {
                Some(AccessLog::open(log, metrics.clone()).map_err(StartError::AccessLog)?)
            }
            None => None,
        };
        let mut state = State::new(Arc::new(config), None, 1, metrics.clone());
        state.access_log = access_log;
        let live: LiveState = Arc::new(arc_swap::ArcSwap::from_pointee(state));
        let reloader = Arc::new(Reloader::new(path, live.clone(), certs.clone()));
        Ok(Ferry {
            live,
            certs,
            listeners,
            reloader,
            admin,
            draining: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        })
    }

    /// The bound addresses (port 0 in the config becomes a real port here).
    pub fn local_addrs(&self) -> Vec<(ListenerKind, SocketAddr)> {
        self.listeners
            .iter()
            .map(|l| (l.config.kind, l.local_addr()))
            .collect()
    }

    /// The admin listener's bound address, when `[admin]` is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The first bound address of a listener of `kind`.
    pub fn addr(&self, kind: ListenerKind) -> Option<SocketAddr> {
        self.local_addrs()
            .into_iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, a)| a)
    }

    /// The configuration now in force.
    pub fn config(&self) -> Arc<Config> {
        self.live.load().config.clone()
    }

    /// Reloads on demand (SIGHUP, the admin endpoint, tests).
    pub fn reloader(&self) -> Arc<Reloader> {
        self.reloader.clone()
    }

    /// Serves until `shutdown` resolves, then drains within `server.shutdown_grace`.
    /// While serving, changes to the config file and certificates are reloaded.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let watcher = tokio::spawn(crate::reload::FileWatch::start(self.reloader.clone()).run());
        let admin_config = self.live.load().config.admin.clone();
        let admin = self.admin.zip(admin_config).map(|(listener, config)| {
            let admin = crate::admin::Admin {
                live: self.live.clone(),
                reloader: self.reloader.clone(),
                draining: self.draining.clone(),
                config,
            };
            tokio::spawn(crate::admin::serve(listener, admin))
        });
        let draining = self.draining.clone();
        let shutdown = async move {
            shutdown.await;
            draining.store(true, std::sync::atomic::Ordering::Relaxed);
        };
        server::serve(self.live, self.certs, self.listeners, shutdown).await;
        watcher.abort();
        if let Some(admin) = admin {
            admin.abort();
        }
    }
}

/// Where the configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    /// No file anywhere: serve https://127.0.0.1:8443 → http://127.0.0.1:8000.
    Embedded,
}

/// `-c FILE`, else `$FERRY_CONFIG`, else `./proxy.toml` if it exists, else the embedded default.
pub fn config_source(flag: Option<&Path>, env: Option<&str>) -> ConfigSource {
    if let Some(path) = flag {
        return ConfigSource::File(path.to_owned());
    }
    if let Some(path) = env.filter(|p| !p.is_empty()) {
        return ConfigSource::File(PathBuf::from(path));
    }
    let local = PathBuf::from("proxy.toml");
    if local.exists() {
        ConfigSource::File(local)
    } else {
        ConfigSource::Embedded
    }
}

/// The embedded default's listener and upstream.
pub const EMBEDDED_LISTEN: &str = "127.0.0.1:8443";
pub const EMBEDDED_UPSTREAM: &str = "127.0.0.1:8000";

/// The embedded default configuration, using a development certificate in
/// `certs_dir` (created on first use).
pub fn embedded_config(certs_dir: &Path) -> Result<(Config, DevCerts), StartError> {
    let certs = crate::tls::dev::ensure(certs_dir, &[], false)?;
    let src = format!(
        r#"
[[listen]]
addr = "{EMBEDDED_LISTEN}"
tls = true

[[certificate]]
cert = "{cert}"
key = "{key}"

[upstream.default]
servers = ["{EMBEDDED_UPSTREAM}"]

[[route]]
name = "default"
path_prefix = "/"
upstream = "default"
"#,
        cert = toml_escape(&certs.cert),
        key = toml_escape(&certs.key),
    );
    let config = Config::parse(&src, "<embedded default>", Path::new("."))?;
    Ok((config, certs))
}

fn toml_escape(path: &Path) -> String {
    path.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}
