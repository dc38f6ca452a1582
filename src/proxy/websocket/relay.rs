//! The WebSocket relay: bytes both ways, untouched, with frame boundaries
//! tracked so that ferry can end a session properly instead of cutting TCP.
//!
//! - Upstream vanishes without a Close frame → the client gets Close 1011.
//! - Client vanishes → the upstream gets a (masked) Close 1001.
//! - Shutdown, `idle_timeout`, `max_lifetime` → both get Close 1001 with a reason.
//! - `ping_interval` → ferry pings the client between frames.
//!
//! Memory: an idle tunnel holds no read buffer. Reads use a stack buffer
//! inside `poll`; only bytes a slow peer has not yet accepted are kept.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::frame::{FrameTracker, Seen, close_frame, ping_frame};
use crate::drain::Watch;

/// Read size per poll; a TLS record's worth.
const READ_CHUNK: usize = 16 * 1024;

/// Timing knobs for one session.
#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    pub idle_timeout: Duration,
    pub max_lifetime: Option<Duration>,
    pub ping_interval: Option<Duration>,
    /// How long to wait for the peers to finish closing once a close has begun.
    pub close_wait: Duration,
}

/// Who ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedBy {
    Client,
    Upstream,
    Ferry,
}

impl ClosedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            ClosedBy::Client => "client",
            ClosedBy::Upstream => "upstream",
            ClosedBy::Ferry => "ferry",
        }
    }
}

/// How a session went, for its log line.
#[derive(Debug, Clone)]
pub struct Summary {
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub messages_up: u64,
    pub messages_down: u64,
    pub closed_by: ClosedBy,
    /// The close code of the first Close (1006 when a side vanished without one).
    pub code: u16,
    pub reason: String,
}

/// One direction: reads `src`, writes the other side.
#[derive(Default)]
struct Half {
    tracker: FrameTracker,
    seen: Seen,
    bytes: u64,
    /// Bytes taken from `src` that `dst` has not accepted yet.
    pending: Vec<u8>,
    pending_pos: usize,
    /// A control frame of ferry's own, written at the next frame boundary.
    inject: Option<Vec<u8>>,
    /// After the injected frame (a Close), forward nothing more this way.
    stop_after_inject: bool,
    discarding: bool,
    read_done: bool,
    /// `dst` failed or was shut down: nothing more can be written.
    write_done: bool,
    /// Shut `dst` down once everything pending is written.
    shutdown_when_flushed: bool,
    needs_flush: bool,
    /// Activity since the idle timer last looked.
    active: bool,
}

impl Half {
    /// Moves bytes until neither side can make progress.
    fn poll_move<S, D>(&mut self, cx: &mut Context<'_>, mut src: Pin<&mut S>, mut dst: Pin<&mut D>)
    where
        S: AsyncRead + ?Sized,
        D: AsyncWrite + ?Sized,
    {
        loop {
            // 1. What is already owed to dst.
            if !self.flush_pending(cx, dst.as_mut()) {
                return;
            }
            // 2. Our own frame, at a boundary.
            if self.inject.is_some() && self.tracker.at_boundary() && !self.write_done {
                self.pending = self.inject.take().unwrap_or_default();
                self.pending_pos = 0;
                self.discarding |= self.stop_after_inject;
                continue;
            }
            // 3. Half-close once everything is out.
            if self.shutdown_when_flushed && !self.write_done {
                match dst.as_mut().poll_shutdown(cx) {
                    Poll::Ready(_) => self.write_done = true,
                    Poll::Pending => return,
                }
            }
            if self.read_done {
                return;
            }
            // 4. Read more.
            // Uninitialised: zeroing 16 KiB per read would cost more than
            // relaying a small message (readers only ever append to it).
            let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut buf = ReadBuf::uninit(&mut stack);
            match src.as_mut().poll_read(cx, &mut buf) {
                Poll::Pending => {
                    if self.needs_flush && !self.write_done {
                        match dst.as_mut().poll_flush(cx) {
                            Poll::Ready(Ok(())) => self.needs_flush = false,
                            Poll::Ready(Err(_)) => self.write_done = true,
                            Poll::Pending => {}
                        }
                    }
                    return;
                }
                Poll::Ready(Err(_)) => self.read_done = true,
                Poll::Ready(Ok(())) if buf.filled().is_empty() => self.read_done = true,
                Poll::Ready(Ok(())) => {
                    let data = buf.filled();
                    self.active = true;
                    if self.discarding || self.write_done {
                        // Not forwarded, but still read: a peer's Close reply matters.
                        self.tracker.feed(data, &mut self.seen);
                        continue;
                    }
                    self.bytes += data.len() as u64;
                    if self.inject.is_some() {
                        // Forward to the end of the current frame, then our frame, then the rest.
                        let used = self.tracker.feed_to_boundary(data, &mut self.seen);
                        let mut out = data[..used].to_vec();
                        if self.tracker.at_boundary() {
                            out.extend(self.inject.take().unwrap_or_default());
                            if self.stop_after_inject {
                                self.discarding = true;
                            } else {
                                self.tracker.feed(&data[used..], &mut self.seen);
                                out.extend_from_slice(&data[used..]);
                            }
                        }
                        self.pending = out;
                        self.pending_pos = 0;
                    } else {
                        self.tracker.feed(data, &mut self.seen);
                        self.write_now(cx, dst.as_mut(), data);
                    }
                }
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
                    self.write_done = true;
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
            if self.write_done {
                break;
            }
            match dst
                .as_mut()
                .poll_write(cx, &self.pending[self.pending_pos..])
            {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => self.write_done = true,
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

    fn settled(&self) -> bool {
        self.pending.is_empty() && (self.inject.is_none() || self.write_done)
    }
}

/// Relays between `client` and `upstream` until the session ends; `drain`
/// both keeps a shutdown waiting for this session and tells it to close.
pub async fn relay<C, U>(client: C, upstream: U, config: RelayConfig, drain: Watch) -> Summary
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let mut signal = drain.clone();
    Relay {
        client,
        upstream,
        up: Half::default(),
        down: Half::default(),
        config,
        idle: Box::pin(tokio::time::sleep(config.idle_timeout)),
        last_activity: Instant::now(),
        lifetime: config.max_lifetime.map(|d| Box::pin(tokio::time::sleep(d))),
        ping: config
            .ping_interval
            .map(|d| Box::pin(tokio::time::sleep(d))),
        close_deadline: None,
        draining: Box::pin(async move { signal.signaled().await }),
        drained: false,
        outcome: None,
        _drain: drain,
    }
    .await
}

struct Relay<C, U> {
    client: C,
    upstream: U,
    /// Client → upstream.
    up: Half,
    /// Upstream → client.
    down: Half,
    config: RelayConfig,
    idle: Pin<Box<Sleep>>,
    /// When bytes last moved either way; the idle timer is re-armed from here.
    last_activity: Instant,
    lifetime: Option<Pin<Box<Sleep>>>,
    ping: Option<Pin<Box<Sleep>>>,
    /// Set once a close has begun: past it, the session ends regardless.
    close_deadline: Option<Pin<Box<Sleep>>>,
    draining: Pin<Box<dyn Future<Output = ()> + Send>>,
    drained: bool,
    outcome: Option<(ClosedBy, u16, String)>,
    /// Keeps the server's drain waiting until this session is over.
    _drain: Watch,
}

impl<C, U> Relay<C, U> {
    /// Ferry ends the session: Close 1001 to both sides at their next boundary.
    fn close_both(&mut self, reason: &str) {
        if self.outcome.is_none() {
            self.outcome = Some((ClosedBy::Ferry, 1001, reason.to_owned()));
        }
        self.down.inject = Some(close_frame(1001, reason, None));
        self.down.stop_after_inject = true;
        self.up.inject = Some(close_frame(1001, reason, Some(mask_key())));
        self.up.stop_after_inject = true;
        self.start_close_deadline();
    }

    fn start_close_deadline(&mut self) {
        if self.close_deadline.is_none() {
            self.close_deadline = Some(Box::pin(tokio::time::sleep(self.config.close_wait)));
        }
    }

    fn summary(&mut self) -> Summary {
        let (closed_by, code, reason) =
            self.outcome
                .take()
                .unwrap_or((ClosedBy::Ferry, 1006, String::new()));
        Summary {
            bytes_up: self.up.bytes,
            bytes_down: self.down.bytes,
            messages_up: self.up.seen.messages,
            messages_down: self.down.seen.messages,
            closed_by,
            code,
            reason,
        }
    }
}

impl<C, U> Future for Relay<C, U>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    type Output = Summary;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Summary> {
        let this = &mut *self;

        // Timers and the drain signal.
        if !this.drained && this.draining.as_mut().poll(cx).is_ready() {
            this.drained = true;
            this.close_both("ferry is shutting down");
        }
        if this.idle.as_mut().poll(cx).is_ready() {
            let due = this.last_activity + this.config.idle_timeout;
            if due > Instant::now() {
                this.idle.as_mut().reset(due);
                let _ = this.idle.as_mut().poll(cx);
            } else if this.close_deadline.is_none() {
                let reason = format!("idle for {}", humanize(this.config.idle_timeout));
                this.close_both(&reason);
            }
        }
        if let Some(lifetime) = &mut this.lifetime {
            if lifetime.as_mut().poll(cx).is_ready() && this.close_deadline.is_none() {
                let reason = format!(
                    "max lifetime {} reached",
                    humanize(this.config.max_lifetime.unwrap_or_default())
                );
                this.close_both(&reason);
            }
        }
        if let (Some(ping), Some(every)) = (&mut this.ping, this.config.ping_interval) {
            while ping.as_mut().poll(cx).is_ready() {
                if this.close_deadline.is_none() && this.down.inject.is_none() {
                    this.down.inject = Some(ping_frame());
                    this.down.stop_after_inject = false;
                }
                ping.as_mut().reset(Instant::now() + every);
            }
        }

        // Move bytes both ways.
        this.up
            .poll_move(cx, Pin::new(&mut this.client), Pin::new(&mut this.upstream));
        this.down
            .poll_move(cx, Pin::new(&mut this.upstream), Pin::new(&mut this.client));
        if this.up.active || this.down.active {
            this.up.active = false;
            this.down.active = false;
            this.last_activity = Instant::now();
        }

        // The first Close frame seen decides who closed.
        if this.outcome.is_none() {
            if let Some((code, reason)) = &this.up.seen.close {
                this.outcome = Some((ClosedBy::Client, *code, reason.clone()));
            } else if let Some((code, reason)) = &this.down.seen.close {
                this.outcome = Some((ClosedBy::Upstream, *code, reason.clone()));
            }
        }
        if this.up.seen.close.is_some() && this.down.seen.close.is_some() {
            this.start_close_deadline();
        }

        // A side that ended: finish the other side properly.
        let mut again = false;
        if this.down.read_done && !this.down.shutdown_when_flushed {
            // The upstream is gone. Without a close handshake, tell the client (1011).
            if this.down.seen.close.is_none()
                && this.up.seen.close.is_none()
                && this.outcome.is_none()
            {
                this.outcome = Some((
                    ClosedBy::Upstream,
                    1006,
                    "upstream closed the connection without a close frame".into(),
                ));
                if this.down.tracker.at_boundary() {
                    this.down.inject = Some(close_frame(1011, "upstream went away", None));
                    this.down.stop_after_inject = true;
                }
                this.start_close_deadline();
            }
            this.down.shutdown_when_flushed = true;
            again = true;
        }
        if this.up.read_done && !this.up.shutdown_when_flushed {
            if this.up.seen.close.is_none()
                && this.down.seen.close.is_none()
                && this.outcome.is_none()
            {
                this.outcome = Some((
                    ClosedBy::Client,
                    1006,
                    "client closed the connection without a close frame".into(),
                ));
                if this.up.tracker.at_boundary() {
                    this.up.inject = Some(close_frame(1001, "client went away", Some(mask_key())));
                    this.up.stop_after_inject = true;
                }
                this.start_close_deadline();
            }
            this.up.shutdown_when_flushed = true;
            again = true;
        }
        if again {
            this.up
                .poll_move(cx, Pin::new(&mut this.client), Pin::new(&mut this.upstream));
            this.down
                .poll_move(cx, Pin::new(&mut this.upstream), Pin::new(&mut this.client));
        }

        // Done when the upstream has closed its side (as the WebSocket server
        // it closes TCP first) and the client has closed or sent its Close, with
        // everything owed to both written. Ferry, the client's server, then
        // closes the client's TCP connection (RFC 6455 §7.1.1).
        let client_finished = this.up.read_done || this.up.seen.close.is_some();
        let both_ended =
            this.down.read_done && client_finished && this.up.settled() && this.down.settled();
        let deadline_passed = this
            .close_deadline
            .as_mut()
            .is_some_and(|d| d.as_mut().poll(cx).is_ready());
        if both_ended || deadline_passed {
            return Poll::Ready(this.summary());
        }
        Poll::Pending
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

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
