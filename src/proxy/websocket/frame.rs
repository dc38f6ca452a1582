//! WebSocket frame boundaries (RFC 6455 §5.2), tracked from the headers only.
//!
//! The relay never re-frames or unmasks data: it feeds every byte it passes
//! through a [`FrameTracker`] so it knows where one frame ends (the only
//! place a control frame of ferry's own may be inserted), how many messages
//! went by, and what a Close frame said.

/// Opcode of a Close frame.
pub const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
/// The largest payload a control frame may have (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// What the tracker noticed in a chunk.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Data messages completed (final frames of text/binary/continuation).
    pub messages: u64,
    /// A Close frame ended in this chunk: its code (1005 when it had none) and reason.
    pub close: Option<(u16, String)>,
}

/// Incremental frame-header parser for one direction of a connection.
#[derive(Debug)]
pub struct FrameTracker {
    /// Header bytes collected so far (at most 14).
    head: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to come.
    remaining: u64,
    opcode: u8,
    fin: bool,
    mask: Option<[u8; 4]>,
    /// Position within the current payload (for unmasking a Close payload).
    offset: u64,
    /// A Close frame's payload, collected (control payloads are at most 125 bytes).
    close_payload: Option<Vec<u8>>,
}

impl Default for FrameTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameTracker {
    pub fn new() -> FrameTracker {
        FrameTracker {
            head: [0; 14],
            have: 0,
            remaining: 0,
            opcode: 0,
            fin: false,
            mask: None,
            offset: 0,
            close_payload: None,
        }
    }

    /// True between frames: a frame of ferry's own may be written here.
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.remaining == 0
    }

    /// Consumes all of `data`.
    pub fn feed(&mut self, data: &[u8], seen: &mut Seen) {
        let mut rest = data;
        while !rest.is_empty() {
            let used = self.step(rest, seen);
            rest = &rest[used..];
        }
    }

    /// Consumes `data` up to and including the end of the frame in progress
    /// (or of the first frame, if at a boundary); returns how many bytes that was.
    pub fn feed_to_boundary(&mut self, data: &[u8], seen: &mut Seen) -> usize {
        let mut used = 0;
        while used < data.len() {
            used += self.step(&data[used..], seen);
            if self.at_boundary() {
                break;
            }
        }
        used
    }

    /// Processes header or payload bytes from the front of `data`; returns the count used.
    fn step(&mut self, data: &[u8], seen: &mut Seen) -> usize {
        if self.remaining > 0 {
            let n = (self.remaining.min(data.len() as u64)) as usize;
            if let Some(buf) = &mut self.close_payload {
                // A Close payload is at most 125 bytes (§5.5), whatever the
                // header claims: keep no more, or a peer's oversized Close
                // would be buffered whole and logged as its reason.
                let keep = n.min(MAX_CONTROL_PAYLOAD.saturating_sub(buf.len()));
                for (i, b) in data[..keep].iter().enumerate() {
                    let k = self
                        .mask
                        .map_or(0, |m| m[((self.offset + i as u64) % 4) as usize]);
                    buf.push(b ^ k);
                }
            }
            self.offset += n as u64;
            self.remaining -= n as u64;
            if self.remaining == 0 {
                self.end_frame(seen);
            }
            return n;
        }
        // Collecting a header: 2 bytes, then its extended length and mask.
        let mut used = 0;
        while used < data.len() {
            self.head[self.have] = data[used];
            self.have += 1;
            used += 1;
            if let Some(len) = self.header_len() {
                if self.have == len {
                    self.start_frame(seen);
                    break;
                }
            }
        }
        used
    }

    /// Total header length, once the first two bytes are known.
    fn header_len(&self) -> Option<usize> {
        if self.have < 2 {
            return None;
        }
        let masked = self.head[1] & 0x80 != 0;
        let ext = match self.head[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        Some(2 + ext + if masked { 4 } else { 0 })
    }

    fn start_frame(&mut self, seen: &mut Seen) {
        let h = &self.head;
        self.fin = h[0] & 0x80 != 0;
        self.opcode = h[0] & 0x0f;
        let masked = h[1] & 0x80 != 0;
        let (len, mask_at) = match h[1] & 0x7f {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 => (
                u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
                10,
            ),
            n => (u64::from(n), 2),
        };
        self.mask = masked.then(|| [h[mask_at], h[mask_at + 1], h[mask_at + 2], h[mask_at + 3]]);
        self.remaining = len;
        self.offset = 0;
        self.have = 0;
        self.close_payload = (self.opcode == OP_CLOSE)
            .then(|| Vec::with_capacity(len.min(MAX_CONTROL_PAYLOAD as u64) as usize));
        if len == 0 {
            self.end_frame(seen);
        }
    }

    fn end_frame(&mut self, seen: &mut Seen) {
        if self.fin && self.opcode < OP_CLOSE {
            seen.messages += 1;
        }
        if let Some(payload) = self.close_payload.take() {
            seen.close = Some(match payload.as_slice() {
                [hi, lo, reason @ ..] => (
                    u16::from_be_bytes([*hi, *lo]),
                    String::from_utf8_lossy(reason).into_owned(),
                ),
                _ => (1005, String::new()),
            });
        }
    }
}

/// A Close frame with `code` and `reason` (truncated to fit 125 bytes), masked
/// with `mask` when sent by ferry in the client role (to the upstream).
pub fn close_frame(code: u16, reason: &str, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut reason = reason.as_bytes();
    if reason.len() > 123 {
        reason = &reason[..123];
    }
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason);
    control_frame(OP_CLOSE, &payload, mask)
}

/// An empty Ping (server role: unmasked).
pub fn ping_frame() -> Vec<u8> {
    control_frame(OP_PING, &[], None)
}

fn control_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    debug_assert!(payload.len() <= 125);
    let mut out = Vec::with_capacity(6 + payload.len());
    out.push(0x80 | opcode);
    match mask {
        Some(m) => {
            out.push(0x80 | payload.len() as u8);
            out.extend_from_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => {
            out.push(payload.len() as u8);
            out.extend_from_slice(payload);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(m | n as u8),
            n if n <= 0xffff => {
                out.push(m | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(m | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(k) => {
                out.extend_from_slice(&k);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    #[test]
    fn counts_messages_across_any_split() {
        let mut stream = Vec::new();
        stream.extend(frame(true, 1, b"hello", None));
        stream.extend(frame(false, 2, &[7; 300], Some([1, 2, 3, 4])));
        stream.extend(frame(false, 0, &[8; 70_000], Some([5, 6, 7, 8])));
        stream.extend(frame(true, 9, b"ping", None)); // control frames may interleave
        stream.extend(frame(true, 0, b"end", Some([9, 9, 9, 9])));
        stream.extend(close_frame(1000, "bye", Some([0xde, 0xad, 0xbe, 0xef])));
        for split in [1, 2, 3, 7, 13, 4096, stream.len()] {
            let mut t = FrameTracker::new();
            let mut seen = Seen::default();
            for chunk in stream.chunks(split) {
                t.feed(chunk, &mut seen);
            }
            assert!(t.at_boundary(), "split {split}");
            assert_eq!(seen.messages, 2, "split {split}");
            assert_eq!(seen.close, Some((1000, "bye".to_owned())), "split {split}");
        }
    }

    #[test]
    fn boundary_feeding_stops_at_the_end_of_the_current_frame() {
        let a = frame(true, 1, b"first", None);
        let b = frame(true, 1, b"second", None);
        let both = [a.clone(), b].concat();
        let mut t = FrameTracker::new();
        let mut seen = Seen::default();
        // Mid-frame: consume the rest of the first frame only.
        t.feed(&both[..3], &mut seen);
        assert!(!t.at_boundary());
        let used = t.feed_to_boundary(&both[3..], &mut seen);
        assert_eq!(3 + used, a.len());
        assert!(t.at_boundary());
        assert_eq!(seen.messages, 1);
    }

    #[test]
    fn an_oversized_close_is_tracked_but_not_kept() {
        // Found by the ws_frames fuzz target: a Close claiming 256 bytes (or
        // 2^63) had its whole payload collected and reported as the reason.
        let reason = "r".repeat(100_000);
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        let bytes = frame(true, OP_CLOSE, &payload, Some([1, 2, 3, 4]));
        let mut t = FrameTracker::new();
        let mut seen = Seen::default();
        for chunk in bytes.chunks(1000) {
            t.feed(chunk, &mut seen);
        }
        assert!(t.at_boundary(), "the whole frame was consumed");
        let close = seen.close.map(|(code, reason)| (code, reason.len()));
        assert_eq!(close, Some((1000, 123)));
    }

    #[test]
    fn close_without_code_and_ferry_frames() {
        let mut t = FrameTracker::new();
        let mut seen = Seen::default();
        t.feed(&frame(true, OP_CLOSE, &[], None), &mut seen);
        assert_eq!(seen.close, Some((1005, String::new())));
        assert_eq!(
            close_frame(1001, "going away", None)[..4],
            [0x88, 12, 0x03, 0xe9]
        );
        assert_eq!(ping_frame(), [0x89, 0]);
        let long = "x".repeat(300);
        assert_eq!(close_frame(1001, &long, None).len(), 2 + 125);
    }
}
