//! Reload: build a complete new snapshot (config, routes, certificates,
//! upstream pools) off to the side, then swap it in with one store. Requests
//! and WebSocket sessions keep the snapshot they started with; a bad config
//! or unreadable certificate leaves the old one serving.
//!
//! Triggers: SIGHUP, `POST /reload` on the admin listener, `ferry reload`,
//! and changes to proxy.toml or any certificate or key file ([`FileWatch`]).

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::{Config, ConfigError};
use crate::proxy::{LiveState, State};
use crate::tls::{CertError, CertStore, load_certificates};

/// Why a reload was refused (the old configuration keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("ferry was started without a config file; there is nothing to reload")]
    NoFile,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{}", .0.iter().map(|e| format!("certificate error: {e}")).collect::<Vec<_>>().join("\n"))]
    Certificates(Vec<CertError>),
    #[error("the new configuration has TLS listeners but no certificates")]
    NoCertificates,
}

/// Rebuilds and swaps the live snapshot. One reload runs at a time.
#[derive(Debug)]
pub struct Reloader {
    path: Option<PathBuf>,
    live: LiveState,
    certs: Option<Arc<CertStore>>,
    /// The configuration ferry started with: listeners, workers and the
    /// other process-level settings only change with a restart.
    started: Arc<Config>,
    lock: tokio::sync::Mutex<()>,
    /// Hash of the config and certificate files as last read by a reload,
    /// successful or not: the watcher retries only when they change again.
    fingerprint: AtomicU64,
}

impl Reloader {
    pub fn new(path: Option<PathBuf>, live: LiveState, certs: Option<Arc<CertStore>>) -> Reloader {
        let current = live.load_full();
        let reloader = Reloader {
            path,
            started: current.config.clone(),
            live,
            certs,
            lock: tokio::sync::Mutex::new(()),
            fingerprint: AtomicU64::new(0),
        };
        reloader
            .fingerprint
            .store(reloader.fingerprint_of(&current.config), Ordering::Relaxed);
        reloader
    }

    /// The generation now serving.
    pub fn generation(&self) -> u64 {
        self.live.load().generation
    }

    /// Loads the config file again and swaps it in; returns the new generation.
    /// On any problem the old snapshot keeps serving and every problem is logged once.
    pub async fn reload(&self, trigger: &str) -> Result<u64, ReloadError> {
        let _one_at_a_time = self.lock.lock().await;
        let attempted = self.fingerprint_of(&self.live.load().config);
        let result = self.try_reload();
        if result.is_err() {
            // Don't retry the same broken files every few seconds.
            self.fingerprint.store(attempted, Ordering::Relaxed);
        }
        let current = self.live.load();
        current.metrics.reload(result.is_ok(), current.generation);
        match &result {
            Ok(generation) => tracing::info!(trigger, generation, "configuration reloaded"),
            Err(e) => tracing::error!(
                trigger,
                generation = self.generation(),
                "reload failed; the previous configuration keeps serving:\n{e}"
            ),
        }
        result
    }

    fn try_reload(&self) -> Result<u64, ReloadError> {
        let path = self.path.as_deref().ok_or(ReloadError::NoFile)?;
        let config = Config::load(path)?;
        let certs = load_certificates(&config.certificates).map_err(ReloadError::Certificates)?;
        if self.certs.is_some() && certs.is_empty() {
            return Err(ReloadError::NoCertificates);
        }
        self.warn_about_restart_only_changes(&config);
        let fingerprint = self.fingerprint_of(&config);
        let current = self.live.load_full();
        let generation = current.generation + 1;
        let metrics = current.metrics.clone();
        metrics.certificates(crate::tls::expiries(&certs));
        let state = State::new(Arc::new(config), Some(&current), generation, metrics);
        // Certificates first: a request on the new routes must not meet an old certificate set
        // that lacks its host.
        if let Some(store) = &self.certs {
            store.replace(&certs, state.config.server.tls_min_version);
        }
        self.live.store(Arc::new(state));
        self.fingerprint.store(fingerprint, Ordering::Relaxed);
        Ok(generation)
    }

    fn warn_about_restart_only_changes(&self, config: &Config) {
        let listeners = |c: &Config| -> Vec<_> {
            c.listeners
                .iter()
                .map(|l| {
                    (
                        l.addr,
                        l.kind,
                        l.http2,
                        l.websocket_over_http2,
                        l.proxy_protocol,
                    )
                })
                .collect()
        };
        let (was, now) = (&self.started, config);
        let mut pending = Vec::new();
        if listeners(was) != listeners(now) {
            pending.push("[[listen]]");
        }
        // `hosts` and the token apply at once (the admin reads them live).
        let admin_addr = |c: &Config| c.admin.as_ref().map(|a| a.addr);
        if admin_addr(was) != admin_addr(now) {
            pending.push("[admin] addr");
        }
        if was.server.max_connections != now.server.max_connections {
            pending.push("server.max_connections");
        }
        if was.server.workers != now.server.workers {
            pending.push("server.workers");
        }
        if was.server.access_log != now.server.access_log {
            pending.push("server.access_log");
        }
        if was.server.pid_file != now.server.pid_file {
            pending.push("server.pid_file");
        }
        if !pending.is_empty() {
            tracing::warn!(
                "changes to {} take effect only after a restart; ferry keeps them as it started",
                pending.join(", ")
            );
        }
    }

    /// The files whose contents make up the configuration.
    pub fn files(&self) -> Vec<PathBuf> {
        let Some(path) = &self.path else {
            return Vec::new();
        };
        let config = self.live.load();
        let mut files = vec![path.clone()];
        for c in &config.config.certificates {
            files.push(c.cert.clone());
            files.push(c.key.clone());
            files.extend(c.client_auth.as_ref().map(|a| a.ca.clone()));
        }
        files
    }

    /// Whether any file's contents differ from what was last loaded.
    fn changed_on_disk(&self) -> bool {
        let config = self.live.load();
        self.fingerprint_of(&config.config) != self.fingerprint.load(Ordering::Relaxed)
    }

    fn fingerprint_of(&self, config: &Config) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let mut paths: Vec<&Path> = self.path.iter().map(PathBuf::as_path).collect();
        for c in &config.certificates {
            paths.push(&c.cert);
            paths.push(&c.key);
            paths.extend(c.client_auth.as_ref().map(|a| a.ca.as_path()));
        }
        for p in paths {
            p.hash(&mut hasher);
            std::fs::read(p).ok().hash(&mut hasher);
        }
        hasher.finish()
    }
}

/// How long file events must stop before a reload (editors write in bursts).
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Also looks at the files' contents every so often even without events, in
/// case an event was missed (network filesystems, overflowing inotify queues).
const POLL: Duration = Duration::from_secs(5);

/// Watches the directories of the config file and every certificate and key
/// (files are often replaced by rename: editors, `docker cp`, Kubernetes
/// ConfigMaps) and reloads when their contents change.
pub struct FileWatch {
    reloader: Arc<Reloader>,
    watcher: Option<notify::RecommendedWatcher>,
    events: tokio::sync::mpsc::UnboundedReceiver<()>,
    watched: HashSet<PathBuf>,
}

impl FileWatch {
    /// Starts watching now (so a change made right after start-up is seen).
    pub fn start(reloader: Arc<Reloader>) -> FileWatch {
        let (tx, events) = tokio::sync::mpsc::unbounded_channel::<()>();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Reads (ours included: the fingerprint opens the files) are not changes.
            if event.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
                let _ = tx.send(());
            }
        })
        .inspect_err(|e| tracing::warn!(error = %e, "cannot watch files for changes; checking every 5s (or reload with SIGHUP)"))
        .ok();
        let mut watch = FileWatch {
            reloader,
            watcher,
            events,
            watched: HashSet::new(),
        };
        watch.add_directories();
        watch
    }

    /// Watches the directories of the files in use (they change with reloads).
    fn add_directories(&mut self) {
        use notify::Watcher;
        let Some(watcher) = &mut self.watcher else {
            return;
        };
        for file in self.reloader.files() {
            let dir = file
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            let dir = if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir
            };
            if self.watched.insert(dir.clone()) {
                if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch directory for changes");
                }
            }
        }
    }

    /// Reloads on changes until dropped.
    pub async fn run(mut self) {
        if self.reloader.path.is_none() {
            return;
        }
        loop {
            // An event, or the periodic look (only that, if the watcher could not start).
            if let Ok(None) = tokio::time::timeout(POLL, self.events.recv()).await {
                tokio::time::sleep(POLL).await;
            }
            // Let the burst of events settle.
            while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, self.events.recv()).await {}
            if self.reloader.changed_on_disk() {
                let _ = self.reloader.reload("file change").await;
                self.add_directories();
            }
        }
    }
}
