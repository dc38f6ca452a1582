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

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

use super::frame::{close_frame, ping_frame};
use crate::drain::Watch;
use half::{Direction, Half, Then};

mod half;

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
        up: Half::new(Direction::Up),
        down: Half::new(Direction::Down),
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

impl<C, U> Relay<C, U>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    /// Ferry ends the session: Close 1001 to both sides at their next boundary.
    fn close_both(&mut self, reason: &str) {
        if self.outcome.is_none() {
            self.outcome = Some((ClosedBy::Ferry, 1001, reason.to_owned()));
        }
        for half in [&mut self.down, &mut self.up] {
            let frame = close_frame(1001, reason, half.direction.mask());
            half.inject(frame, Then::Discard);
        }
        self.start_close_deadline();
    }

    fn start_close_deadline(&mut self) {
        if self.close_deadline.is_none() {
            self.close_deadline = Some(Box::pin(tokio::time::sleep(self.config.close_wait)));
        }
    }

    /// The drain signal and the timers: idle, lifetime, ping.
    fn poll_timers(&mut self, cx: &mut Context<'_>) {
        if !self.drained && self.draining.as_mut().poll(cx).is_ready() {
            self.drained = true;
            self.close_both("ferry is shutting down");
        }
        if self.idle.as_mut().poll(cx).is_ready() {
            let due = self.last_activity + self.config.idle_timeout;
            if due > Instant::now() {
                self.idle.as_mut().reset(due);
                let _ = self.idle.as_mut().poll(cx);
            } else if self.close_deadline.is_none() {
                let reason = format!("idle for {}", humanize(self.config.idle_timeout));
                self.close_both(&reason);
            }
        }
        if let Some(lifetime) = &mut self.lifetime {
            if lifetime.as_mut().poll(cx).is_ready() && self.close_deadline.is_none() {
                let reason = format!(
                    "max lifetime {} reached",
                    humanize(self.config.max_lifetime.unwrap_or_default())
                );
                self.close_both(&reason);
            }
        }
        if let (Some(ping), Some(every)) = (&mut self.ping, self.config.ping_interval) {
            while ping.as_mut().poll(cx).is_ready() {
                if self.close_deadline.is_none() && !self.down.injecting() {
                    self.down.inject(ping_frame(), Then::Continue);
                }
                ping.as_mut().reset(Instant::now() + every);
            }
        }
    }

    /// Moves bytes both ways until neither can progress, reacting once to
    /// each side's end.
    fn poll_halves(&mut self, cx: &mut Context<'_>) {
        loop {
            let up_ended =
                self.up
                    .poll_move(cx, Pin::new(&mut self.client), Pin::new(&mut self.upstream));
            let down_ended =
                self.down
                    .poll_move(cx, Pin::new(&mut self.upstream), Pin::new(&mut self.client));
            if self.up.active || self.down.active {
                self.up.active = false;
                self.down.active = false;
                self.last_activity = Instant::now();
            }
            self.note_closes();
            if !up_ended && !down_ended {
                return;
            }
            if down_ended {
                self.source_ended(Direction::Down);
            }
            if up_ended {
                self.source_ended(Direction::Up);
            }
        }
    }

    /// The first Close frame seen decides who closed; once both sides have
    /// sent theirs, the session has `close_wait` to finish.
    fn note_closes(&mut self) {
        if self.outcome.is_none() {
            if let Some((code, reason)) = &self.up.seen.close {
                self.outcome = Some((ClosedBy::Client, *code, reason.clone()));
            } else if let Some((code, reason)) = &self.down.seen.close {
                self.outcome = Some((ClosedBy::Upstream, *code, reason.clone()));
            }
        }
        if self.up.seen.close.is_some() && self.down.seen.close.is_some() {
            self.start_close_deadline();
        }
    }

    /// One side ended (its half's source is gone). Without a close handshake
    /// in either direction, the session ended abnormally (1006): ferry tells
    /// the peer still there with a Close of its own. Either way, the other
    /// side's write half is shut down once everything owed is written.
    fn source_ended(&mut self, direction: Direction) {
        let (half, other) = match direction {
            Direction::Up => (&mut self.up, &self.down),
            Direction::Down => (&mut self.down, &self.up),
        };
        let handshake = half.seen.close.is_some() || other.seen.close.is_some();
        let abnormal = !handshake && self.outcome.is_none();
        if abnormal && half.tracker.at_boundary() {
            let (code, message, _) = direction.vanished();
            half.inject(close_frame(code, message, direction.mask()), Then::Discard);
        }
        half.shut_down_when_flushed();
        if abnormal {
            let (_, _, why) = direction.vanished();
            self.outcome = Some((direction.source(), 1006, why.to_owned()));
            self.start_close_deadline();
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
        this.poll_timers(cx);
        this.poll_halves(cx);

        // Done when the upstream has closed its side (as the WebSocket server
        // it closes TCP first) and the client has closed or sent its Close, with
        // everything owed to both written. Ferry, the client's server, then
        // closes the client's TCP connection (RFC 6455 §7.1.1).
        let client_finished = this.up.ended() || this.up.seen.close.is_some();
        let both_ended =
            this.down.ended() && client_finished && this.up.settled() && this.down.settled();
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

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drain::Drain;
    use tokio::io::{AsyncReadExt, DuplexStream, duplex};

    const WAIT: Duration = Duration::from_secs(10);

    fn config() -> RelayConfig {
        RelayConfig {
            idle_timeout: Duration::from_secs(60),
            max_lifetime: None,
            ping_interval: None,
            close_wait: Duration::from_secs(5),
        }
    }

    /// One frame (payload under 126 bytes), unmasked: (opcode, payload).
    async fn read_frame(io: &mut DuplexStream) -> (u8, Vec<u8>) {
        let (opcode, payload, _) = read_masked(io).await;
        (opcode, payload)
    }

    /// One frame: (opcode, unmasked payload, whether it was masked).
    async fn read_masked(io: &mut DuplexStream) -> (u8, Vec<u8>, bool) {
        let mut head = [0u8; 2];
        io.read_exact(&mut head).await.unwrap();
        let len = usize::from(head[1] & 0x7f);
        let mut mask = [0u8; 4];
        if head[1] & 0x80 != 0 {
            io.read_exact(&mut mask).await.unwrap();
        }
        let mut payload = vec![0u8; len];
        io.read_exact(&mut payload).await.unwrap();
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        (head[0] & 0x0f, payload, head[1] & 0x80 != 0)
    }

    /// Both directions are the same state machine: whichever side vanishes
    /// without a Close, the other gets one (masked towards the upstream),
    /// and the session is logged as an abnormal end by the side that left.
    #[tokio::test]
    async fn a_side_that_vanishes_gets_the_other_a_close_frame() {
        for vanishing in [Direction::Up, Direction::Down] {
            let (client, client_peer) = duplex(4096);
            let (upstream, upstream_peer) = duplex(4096);
            let drain = Drain::new();
            let session = tokio::spawn(relay(client, upstream, config(), drain.watch()));
            let (gone, mut left) = match vanishing {
                Direction::Up => (client_peer, upstream_peer),
                Direction::Down => (upstream_peer, client_peer),
            };
            drop(gone);
            let (opcode, payload, masked) = tokio::time::timeout(WAIT, read_masked(&mut left))
                .await
                .unwrap();
            assert_eq!(opcode, 0x8, "{vanishing:?}");
            let (code, reason, masked_ok, closed_by, why) = match vanishing {
                Direction::Up => (
                    1001,
                    "client went away",
                    true,
                    ClosedBy::Client,
                    "client closed the connection without a close frame",
                ),
                Direction::Down => (
                    1011,
                    "upstream went away",
                    false,
                    ClosedBy::Upstream,
                    "upstream closed the connection without a close frame",
                ),
            };
            assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), code);
            assert_eq!(&payload[2..], reason.as_bytes());
            assert_eq!(
                masked, masked_ok,
                "frames to the upstream are masked, to the client never"
            );
            drop(left);
            let summary = tokio::time::timeout(WAIT, session).await.unwrap().unwrap();
            assert_eq!(summary.closed_by, closed_by);
            assert_eq!((summary.code, summary.reason.as_str()), (1006, why));
        }
    }

    /// Data goes through untouched both ways, and a Close handshake the
    /// client starts ends the session as the client's.
    #[tokio::test]
    async fn bytes_pass_untouched_and_the_first_close_decides_who_closed() {
        use tokio::io::AsyncWriteExt;
        let (client, mut client_peer) = duplex(4096);
        let (upstream, mut upstream_peer) = duplex(4096);
        let drain = Drain::new();
        let session = tokio::spawn(relay(client, upstream, config(), drain.watch()));
        let text = [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
        client_peer.write_all(&text).await.unwrap();
        let mut got = [0u8; 8];
        upstream_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, text);
        upstream_peer
            .write_all(&[0x81, 0x02, b'o', b'k'])
            .await
            .unwrap();
        let (opcode, payload) = read_frame(&mut client_peer).await;
        assert_eq!((opcode, payload.as_slice()), (0x1, &b"ok"[..]));
        let close = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8];
        client_peer.write_all(&close).await.unwrap();
        upstream_peer.read_exact(&mut [0u8; 8]).await.unwrap();
        upstream_peer
            .write_all(&[0x88, 0x02, 0x03, 0xe8])
            .await
            .unwrap();
        drop(upstream_peer);
        let (opcode, _) = read_frame(&mut client_peer).await;
        assert_eq!(opcode, 0x8);
        let summary = tokio::time::timeout(WAIT, session).await.unwrap().unwrap();
        assert_eq!((summary.closed_by, summary.code), (ClosedBy::Client, 1000));
        assert_eq!((summary.messages_up, summary.messages_down), (1, 1));
    }
}
