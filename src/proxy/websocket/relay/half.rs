//! One direction of a relay: reads its source, writes its destination,
//! tracks frame boundaries on the way, and inserts frames of ferry's own
//! (a Close, a Ping) only between frames. The same type carries both
//! directions; [`Direction`] is the only difference.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::super::frame::{FrameTracker, Seen};
use super::ClosedBy;

/// Read size per poll; a TLS record's worth.
const READ_CHUNK: usize = 16 * 1024;

/// Which way a half carries bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    /// Client → upstream.
    Up,
    /// Upstream → client.
    Down,
}

impl Direction {
    /// Who is at this half's reading end.
    pub(super) fn source(self) -> ClosedBy {
        match self {
            Direction::Up => ClosedBy::Client,
            Direction::Down => ClosedBy::Upstream,
        }
    }

    /// Frames ferry writes towards the upstream must be masked, as a
    /// client's are (RFC 6455 §5.3); towards the client, never.
    pub(super) fn mask(self) -> Option<[u8; 4]> {
        match self {
            Direction::Up => Some(mask_key()),
            Direction::Down => None,
        }
    }

    /// When this half's source vanished without a Close frame: the Close
    /// ferry sends the peer still there (code, reason), and what the log says.
    pub(super) fn vanished(self) -> (u16, &'static str, &'static str) {
        match self {
            Direction::Up => (
                1001,
                "client went away",
                "client closed the connection without a close frame",
            ),
            Direction::Down => (
                1011,
                "upstream went away",
                "upstream closed the connection without a close frame",
            ),
        }
    }
}

/// The reading end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Bytes read are written on.
    Forwarding,
    /// Bytes read are tracked (a peer's Close reply matters) but not written:
    /// ferry has sent its own Close this way.
    Discarding,
    /// The source closed or failed.
    Ended,
}

/// The writing end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writing {
    Open,
    /// The source ended: shut the destination down once everything owed is written.
    ShutdownWhenFlushed,
    /// Shut down, or failed: nothing more can be written.
    Closed,
}

/// What happens after an injected frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Then {
    /// Forward as before (after a Ping).
    Continue,
    /// Forward nothing more this way (after a Close).
    Discard,
}

/// A frame of ferry's own, waiting for the next frame boundary.
#[derive(Debug)]
struct Inject {
    frame: Vec<u8>,
    then: Then,
}

/// One direction of the relay.
#[derive(Debug)]
pub(super) struct Half {
    pub(super) direction: Direction,
    reading: Reading,
    writing: Writing,
    pub(super) tracker: FrameTracker,
    /// Messages and the Close frame seen going this way.
    pub(super) seen: Seen,
    /// Bytes forwarded this way.
    pub(super) bytes: u64,
    /// Bytes taken from the source that the destination has not accepted yet.
    pending: Vec<u8>,
    pending_pos: usize,
    inject: Option<Inject>,
    /// Written since the destination was last flushed.
    needs_flush: bool,
    /// Bytes moved since the relay's idle timer last looked.
    pub(super) active: bool,
}

impl Half {
    pub(super) fn new(direction: Direction) -> Half {
        Half {
            direction,
            reading: Reading::Forwarding,
            writing: Writing::Open,
            tracker: FrameTracker::new(),
            seen: Seen::default(),
            bytes: 0,
            pending: Vec::new(),
            pending_pos: 0,
            inject: None,
            needs_flush: false,
            active: false,
        }
    }

    /// Writes `frame` at the next frame boundary, then goes on as `then` says.
    pub(super) fn inject(&mut self, frame: Vec<u8>, then: Then) {
        self.inject = Some(Inject { frame, then });
    }

    /// A frame of ferry's own is waiting to be written.
    pub(super) fn injecting(&self) -> bool {
        self.inject.is_some()
    }

    /// The source has closed (or failed).
    pub(super) fn ended(&self) -> bool {
        self.reading == Reading::Ended
    }

    /// Shut the destination down once everything owed to it is written.
    pub(super) fn shut_down_when_flushed(&mut self) {
        if self.writing == Writing::Open {
            self.writing = Writing::ShutdownWhenFlushed;
        }
    }

    /// Nothing more is owed to the destination (or nothing can be written).
    pub(super) fn settled(&self) -> bool {
        self.pending.is_empty() && (self.inject.is_none() || self.writing == Writing::Closed)
    }

    /// Moves bytes until neither side can make progress. Returns true when
    /// the source ended during this call (so the relay reacts exactly once).
    pub(super) fn poll_move<S, D>(
        &mut self,
        cx: &mut Context<'_>,
        mut src: Pin<&mut S>,
        mut dst: Pin<&mut D>,
    ) -> bool
    where
        S: AsyncRead + ?Sized,
        D: AsyncWrite + ?Sized,
    {
        let was_reading = self.reading != Reading::Ended;
        loop {
            // 1. What is already owed to the destination.
            if !self.flush_pending(cx, dst.as_mut()) {
                break;
            }
            // 2. Our own frame, at a boundary.
            if self.writing != Writing::Closed && self.tracker.at_boundary() {
                if let Some(inject) = self.inject.take() {
                    self.pending = inject.frame;
                    self.pending_pos = 0;
                    self.after_inject(inject.then);
                    continue;
                }
            }
            // 3. Half-close once everything is out.
            if self.writing == Writing::ShutdownWhenFlushed {
                match dst.as_mut().poll_shutdown(cx) {
                    Poll::Ready(_) => self.writing = Writing::Closed,
                    Poll::Pending => break,
                }
            }
            if self.reading == Reading::Ended {
                break;
            }
            // 4. Read more.
            // Uninitialised: zeroing 16 KiB per read would cost more than
            // relaying a small message (readers only ever append to it).
            let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut buf = ReadBuf::uninit(&mut stack);
            match src.as_mut().poll_read(cx, &mut buf) {
                Poll::Pending => {
                    self.flush(cx, dst.as_mut());
                    break;
                }
                Poll::Ready(Err(_)) => self.reading = Reading::Ended,
                Poll::Ready(Ok(())) if buf.filled().is_empty() => self.reading = Reading::Ended,
                Poll::Ready(Ok(())) => self.received(cx, dst.as_mut(), buf.filled()),
            }
        }
        was_reading && self.reading == Reading::Ended
    }

    /// What was just read: tracked always, written on unless discarding, with
    /// a waiting frame of ours inserted at the first boundary.
    fn received<D: AsyncWrite + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        dst: Pin<&mut D>,
        data: &[u8],
    ) {
        self.active = true;
        if self.reading == Reading::Discarding || self.writing == Writing::Closed {
            self.tracker.feed(data, &mut self.seen);
            return;
        }
        self.bytes += data.len() as u64;
        let Some(inject) = self.inject.take() else {
            self.tracker.feed(data, &mut self.seen);
            self.write_now(cx, dst, data);
            return;
        };
        // Forward to the end of the current frame, then our frame, then the rest.
        let used = self.tracker.feed_to_boundary(data, &mut self.seen);
        let mut out = data[..used].to_vec();
        if self.tracker.at_boundary() {
            out.extend(inject.frame);
            self.after_inject(inject.then);
            let rest = &data[used..];
            self.tracker.feed(rest, &mut self.seen);
            if self.reading == Reading::Forwarding {
                out.extend_from_slice(rest);
            }
        } else {
            self.inject = Some(inject);
        }
        self.pending = out;
        self.pending_pos = 0;
    }

    fn after_inject(&mut self, then: Then) {
        if then == Then::Discard && self.reading == Reading::Forwarding {
            self.reading = Reading::Discarding;
        }
    }

    /// Flushes what was written since the last flush (before waiting on the source).
    fn flush<D: AsyncWrite + ?Sized>(&mut self, cx: &mut Context<'_>, dst: Pin<&mut D>) {
        if self.needs_flush && self.writing != Writing::Closed {
            match dst.poll_flush(cx) {
                Poll::Ready(Ok(())) => self.needs_flush = false,
                Poll::Ready(Err(_)) => self.writing = Writing::Closed,
                Poll::Pending => {}
            }
        }
    }

    /// Writes `data` straight to `dst`; keeps what it would not take.
    fn write_now<D: AsyncWrite + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        mut dst: Pin<&mut D>,
        data: &[u8],
    ) {
        let mut pos = 0;
        while pos < data.len() {
            match dst.as_mut().poll_write(cx, &data[pos..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    self.writing = Writing::Closed;
                    return;
                }
                Poll::Ready(Ok(n)) => pos += n,
                Poll::Pending => {
                    self.pending = data[pos..].to_vec();
                    self.pending_pos = 0;
                    break;
                }
            }
        }
        self.needs_flush = true;
    }

    /// Writes out `pending`; true when nothing is left (or nothing can be written).
    fn flush_pending<D: AsyncWrite + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        mut dst: Pin<&mut D>,
    ) -> bool {
        while self.pending_pos < self.pending.len() {
            if self.writing == Writing::Closed {
                break;
            }
            match dst
                .as_mut()
                .poll_write(cx, &self.pending[self.pending_pos..])
            {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => self.writing = Writing::Closed,
                Poll::Ready(Ok(n)) => self.pending_pos += n,
                Poll::Pending => return false,
            }
            self.needs_flush = true;
        }
        // Free the buffer: an idle tunnel should hold none.
        self.pending = Vec::new();
        self.pending_pos = 0;
        true
    }
}

/// A masking key for frames ferry sends to the upstream (RFC 6455 §5.3).
fn mask_key() -> [u8; 4] {
    let mut key = [0u8; 4];
    if aws_lc_rs::rand::fill(&mut key).is_err() {
        // Masking protects intermediaries from cache poisoning, not secrecy; a
        // fixed key is still a valid frame.
        key = [0x5a, 0x3c, 0x96, 0xe1];
    }
    key
}
