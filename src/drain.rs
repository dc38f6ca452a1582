//! Shutdown signalling and tracking: one [`Drain`] tells every connection
//! and every WebSocket tunnel to wind down, and waits for them all; and
//! [`Streams`], what is open on one connection (for the HTTP/2 idle timeout).
//!
//! Low in the module graph on purpose: the server holds the [`Drain`], the
//! proxy's tunnels hold [`Watch`]es, and neither imports the other for it.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

/// Owned by the server; `drain` signals and waits.
#[derive(Debug)]
pub struct Drain {
    signal: watch::Sender<bool>,
    /// Every [`Watch`] holds a clone; when all are gone, `done_rx` yields `None`.
    done_tx: mpsc::Sender<()>,
    done_rx: mpsc::Receiver<()>,
}

/// Held by each tracked task: tells it when to wind down, and keeps the
/// drain waiting until it is dropped.
#[derive(Debug, Clone)]
pub struct Watch {
    signal: watch::Receiver<bool>,
    _done: mpsc::Sender<()>,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    pub fn new() -> Drain {
        let (signal, _) = watch::channel(false);
        let (done_tx, done_rx) = mpsc::channel(1);
        Drain {
            signal,
            done_tx,
            done_rx,
        }
    }

    pub fn watch(&self) -> Watch {
        Watch {
            signal: self.signal.subscribe(),
            _done: self.done_tx.clone(),
        }
    }

    /// Signals every watcher, then waits up to `grace` for all of them to
    /// finish. Returns whether they all did.
    pub async fn drain(self, grace: Duration) -> bool {
        let Drain {
            signal,
            done_tx,
            mut done_rx,
        } = self;
        let _ = signal.send(true);
        drop(done_tx);
        let finished = tokio::time::timeout(grace, done_rx.recv()).await.is_ok();
        drop(signal);
        finished
    }
}

impl Watch {
    /// Resolves once shutdown has been signalled.
    pub async fn signaled(&mut self) {
        let _ = self.signal.wait_for(|draining| *draining).await;
    }
}

/// Open streams on one connection (requests in progress and WebSocket
/// tunnels), so an idle HTTP/2 connection can be closed.
#[derive(Debug, Clone)]
pub struct Streams(std::sync::Arc<watch::Sender<usize>>);

/// Counts one stream as open until dropped.
#[derive(Debug)]
pub struct StreamGuard(Streams);

impl Default for Streams {
    fn default() -> Self {
        Streams(std::sync::Arc::new(watch::channel(0).0))
    }
}

impl Streams {
    pub fn open(&self) -> StreamGuard {
        self.0.send_modify(|n| *n += 1);
        StreamGuard(self.clone())
    }

    /// Resolves once no stream has been open for `timeout`.
    pub async fn idle_for(&self, timeout: Duration) {
        let mut rx = self.0.subscribe();
        loop {
            let _ = rx.wait_for(|n| *n == 0).await;
            tokio::select! {
                () = tokio::time::sleep(timeout) => return,
                _ = rx.wait_for(|n| *n > 0) => {}
            }
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_watchers_and_times_out() {
        let drain = Drain::new();
        let mut w = drain.watch();
        let task = tokio::spawn(async move {
            w.signaled().await;
        });
        assert!(drain.drain(Duration::from_secs(5)).await);
        task.await.unwrap();

        let drain = Drain::new();
        let stuck = drain.watch();
        assert!(!drain.drain(Duration::from_millis(10)).await);
        drop(stuck);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_only_counts_time_without_open_streams() {
        let streams = Streams::default();
        let open = streams.open();
        let idle = tokio::spawn({
            let streams = streams.clone();
            async move { streams.idle_for(Duration::from_secs(10)).await }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!idle.is_finished(), "a stream is open");
        drop(open);
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert!(idle.is_finished());
    }
}
