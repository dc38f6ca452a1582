//! The request body sent upstream: the client's body, passed through as it
//! arrives, with a record of progress so that the read timeout only counts
//! time spent waiting on the upstream (not on a client's slow upload), and of
//! how it failed, if it did, so that a failed exchange can be blamed on the
//! right side without digging through error sources.
//!
//! A body that was never read can also be had back after hyper dropped it
//! ([`RequestBody::replay`]): what a resend on a fresh connection needs when
//! a reused one failed before the upstream answered.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// The client's request body on its way upstream (or none, for a WebSocket handshake).
#[derive(Debug)]
pub struct RequestBody {
    inner: Option<Incoming>,
    progress: Arc<Progress>,
    /// The route's `max_body_size`.
    limit: Option<u64>,
    /// A frame (or an error) was handed on: the body cannot be sent again.
    consumed: bool,
    /// Its end was reached without a frame: the request was complete as sent.
    ended: bool,
    /// Where the body goes when it is dropped unread (see [`RequestBody::replay`]).
    give_back: Option<oneshot::Sender<Unread>>,
}

/// A body given back unread by [`Replay`].
#[derive(Debug)]
struct Unread {
    inner: Option<Incoming>,
    /// Nothing was left to send: the upstream may have had the whole request.
    complete: bool,
}

/// A request body that may come back unread after hyper dropped it.
#[derive(Debug)]
pub struct Replay {
    back: oneshot::Receiver<Unread>,
    progress: Arc<Progress>,
    limit: Option<u64>,
}

/// A request body had back unread, to send again.
#[derive(Debug)]
pub struct Recovered {
    pub body: RequestBody,
    /// The upstream may have received the whole request (no body, or an
    /// empty one), not just a head waiting for its body.
    pub complete: bool,
}

impl Replay {
    /// The body, if it was dropped without a frame read from it; waits at
    /// most `wait` for hyper's connection task to drop it.
    pub async fn recover(self, wait: std::time::Duration) -> Option<Recovered> {
        let unread = tokio::time::timeout(wait, self.back).await.ok()?.ok()?;
        Some(Recovered {
            body: RequestBody {
                inner: unread.inner,
                progress: self.progress,
                limit: self.limit,
                consumed: false,
                ended: false,
                give_back: None,
            },
            complete: unread.complete,
        })
    }
}

/// The request body grew past the route's `max_body_size`.
#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than max_body_size ({0} bytes)")]
pub struct BodyTooLarge(pub u64);

/// Why the request body stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFailure {
    /// It grew past the route's `max_body_size` and was cut off.
    TooLarge,
    /// Reading it from the client failed: it hung up, reset the stream, or
    /// sent a broken body.
    ClientGone,
}

/// When the request body last moved, how much of it did, and whether it failed.
#[derive(Debug)]
pub struct Progress {
    base: Instant,
    /// Nanoseconds after `base` of the last activity.
    last: AtomicU64,
    /// Request body bytes passed upstream.
    bytes: AtomicU64,
    /// 0: no failure; else a [`BodyFailure`] (see [`Progress::failure`]).
    failure: AtomicU8,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            base: Instant::now(),
            last: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            failure: AtomicU8::new(0),
        }
    }

    /// How the body failed, if it did.
    pub fn failure(&self) -> Option<BodyFailure> {
        match self.failure.load(Ordering::Relaxed) {
            1 => Some(BodyFailure::TooLarge),
            2 => Some(BodyFailure::ClientGone),
            _ => None,
        }
    }

    /// Records why the body stopped.
    pub(crate) fn fail(&self, why: BodyFailure) {
        let code = match why {
            BodyFailure::TooLarge => 1,
            BodyFailure::ClientGone => 2,
        };
        self.failure.store(code, Ordering::Relaxed);
    }

    /// Records activity now.
    pub fn touch(&self) {
        let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(nanos, Ordering::Relaxed);
    }

    /// When the request last made progress.
    pub fn last(&self) -> Instant {
        self.base + std::time::Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestBody {
    /// The client's body; more than `limit` bytes fails it with [`BodyTooLarge`].
    pub fn new(inner: Incoming, limit: Option<u64>) -> RequestBody {
        RequestBody {
            inner: Some(inner),
            progress: Arc::new(Progress::new()),
            limit,
            consumed: false,
            ended: false,
            give_back: None,
        }
    }

    /// No body (a WebSocket handshake's GET).
    pub fn empty() -> RequestBody {
        RequestBody {
            inner: None,
            progress: Arc::new(Progress::new()),
            limit: None,
            consumed: false,
            ended: false,
            give_back: None,
        }
    }

    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Arranges for this body to come back if it is dropped before a frame
    /// was read from it. Nothing is buffered: a body that was read from is
    /// gone, and so is the chance to send the request again.
    pub fn replay(&mut self) -> Replay {
        let (tx, back) = oneshot::channel();
        self.give_back = Some(tx);
        Replay {
            back,
            progress: self.progress.clone(),
            limit: self.limit,
        }
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        let Some(tx) = self.give_back.take() else {
            return;
        };
        if !self.consumed {
            let complete = self.ended || self.is_end_stream();
            let _ = tx.send(Unread {
                inner: self.inner.take(),
                complete,
            });
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(None);
        };
        let frame = match ready!(Pin::new(inner).poll_frame(cx)) {
            None => {
                this.ended = true;
                return Poll::Ready(None);
            }
            Some(Err(e)) => {
                this.consumed = true;
                // Reading the client's own body failed (it hung up, reset the
                // stream, or sent a broken chunk): whatever the upstream then
                // says, the failure is the client's.
                this.progress.fail(BodyFailure::ClientGone);
                return Poll::Ready(Some(Err(e.into())));
            }
            Some(Ok(frame)) => frame,
        };
        this.consumed = true;
        this.progress.touch();
        if let Some(data) = frame.data_ref() {
            let total = this
                .progress
                .bytes
                .fetch_add(data.len() as u64, Ordering::Relaxed)
                + data.len() as u64;
            if let Some(limit) = this.limit.filter(|limit| total > *limit) {
                this.progress.fail(BodyFailure::TooLarge);
                return Poll::Ready(Some(Err(Box::new(BodyTooLarge(limit)))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}
