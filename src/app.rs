//! Wiring: config → certificates → state → bound listeners → serve until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Config, ConfigError, ListenerKind};
use crate::proxy::State;
use crate::server::{self, BindError, BoundListener};
use crate::tls::dev::{DevCertError, DevCerts};
use crate::tls::{CertError, LoadedCert, SniResolver, load_certificates};

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
    state: Arc<State>,
    tls: Option<Arc<SniResolver>>,
    listeners: Vec<BoundListener>,
    certificates: Vec<LoadedCert>,
}

impl Ferry {
    /// Loads certificates, builds the request state and binds every listener.
    /// Upstream names are not resolved here: they need not exist yet.
    pub async fn bind(config: Config) -> Result<Ferry, StartError> {
        let certificates =
            load_certificates(&config.certificates).map_err(StartError::Certificates)?;
        let tls = SniResolver::new(&certificates).map(Arc::new);
        let listeners = server::bind(&config.listeners).await?;
        let state = Arc::new(State::new(Arc::new(config)));
        Ok(Ferry {
            state,
            tls,
            listeners,
            certificates,
        })
    }

    /// The bound addresses (port 0 in the config becomes a real port here).
    pub fn local_addrs(&self) -> Vec<(ListenerKind, SocketAddr)> {
        self.listeners
            .iter()
            .map(|l| (l.config.kind, l.local_addr()))
            .collect()
    }

    /// The first bound address of a listener of `kind`.
    pub fn addr(&self, kind: ListenerKind) -> Option<SocketAddr> {
        self.local_addrs()
            .into_iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, a)| a)
    }

    pub fn certificates(&self) -> &[LoadedCert] {
        &self.certificates
    }

    pub fn config(&self) -> &Config {
        &self.state.config
    }

    /// Serves until `shutdown` resolves, then drains within `server.shutdown_grace`.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        server::serve(self.state, self.tls, self.listeners, shutdown).await;
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
