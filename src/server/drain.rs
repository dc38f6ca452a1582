//! Shutdown signalling and tracking: one [`Drain`] tells every connection
//! (and, later, every WebSocket tunnel) to wind down and waits for them all.

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

    pub fn is_signaled(&self) -> bool {
        *self.signal.borrow()
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
}
