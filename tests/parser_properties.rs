//! Property tests (proptest) for the parsers that see untrusted bytes or
//! operator text: the WebSocket frame tracker and duration values. The
//! fuzz targets in `fuzz/` push the same code much harder; these run in
//! every `cargo test` with a bounded number of cases (well under a second).

use std::time::Duration;

use ferry::config::parse_duration;
use ferry::proxy::websocket::frame::{FrameTracker, Seen};
use proptest::prelude::*;

/// One frame of a generated stream.
#[derive(Debug, Clone)]
struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
    mask: Option<[u8; 4]>,
}

impl Frame {
    /// The frame on the wire, with the shortest length form (RFC 6455 §5.2).
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![u8::from(self.fin) << 7 | self.opcode];
        let m = if self.mask.is_some() { 0x80 } else { 0 };
        match self.payload.len() {
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
        match self.mask {
            Some(k) => {
                out.extend_from_slice(&k);
                out.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
            }
            None => out.extend_from_slice(&self.payload),
        }
        out
    }
}

/// Payload lengths in all three length forms: 7-bit (with 125, the largest),
/// 16-bit (126 and 65535 are its edges) and 64-bit (from 65536).
fn data_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..=125,
        3 => 126usize..=1500,
        1 => Just(65_535usize),
        1 => 65_536usize..=66_000,
    ]
}

fn mask() -> impl Strategy<Value = Option<[u8; 4]>> {
    proptest::option::of(any::<[u8; 4]>())
}

/// A data message: a text or binary frame, then continuations, the last one final.
fn message() -> impl Strategy<Value = Vec<Frame>> {
    (
        prop_oneof![Just(1u8), Just(2u8)],
        proptest::collection::vec((data_len(), any::<u8>(), mask()), 1..4),
    )
        .prop_map(|(opcode, parts)| {
            let last = parts.len() - 1;
            parts
                .into_iter()
                .enumerate()
                .map(|(i, (len, byte, mask))| Frame {
                    fin: i == last,
                    opcode: if i == 0 { opcode } else { 0 },
                    payload: vec![byte; len],
                    mask,
                })
                .collect()
        })
}

/// A Ping or Pong: final, at most 125 bytes.
fn ping_or_pong() -> impl Strategy<Value = Frame> {
    (
        prop_oneof![Just(9u8), Just(10u8)],
        proptest::collection::vec(any::<u8>(), 0..=125),
        mask(),
    )
        .prop_map(|(opcode, payload, mask)| Frame {
            fin: true,
            opcode,
            payload,
            mask,
        })
}

/// A Close: no payload, or a code and a reason of up to 123 bytes.
fn close() -> impl Strategy<Value = (Frame, (u16, String))> {
    (
        proptest::option::of((any::<u16>(), "[a-z é]{0,40}")),
        mask(),
    )
        .prop_map(|(body, mask)| {
            let (payload, expect) = match body {
                None => (Vec::new(), (1005, String::new())),
                Some((code, reason)) => {
                    let mut reason = reason;
                    while reason.len() > 123 {
                        reason.pop();
                    }
                    let mut p = code.to_be_bytes().to_vec();
                    p.extend_from_slice(reason.as_bytes());
                    (p, (code, reason))
                }
            };
            let frame = Frame {
                fin: true,
                opcode: 8,
                payload,
                mask,
            };
            (frame, expect)
        })
}

/// A valid stream: messages with control frames interleaved (also between
/// the fragments of a message, as §5.4 allows), maybe a Close at the end.
#[derive(Debug, Clone)]
struct Stream {
    frames: Vec<Frame>,
    messages: u64,
    close: Option<(u16, String)>,
}

fn stream() -> impl Strategy<Value = Stream> {
    (
        proptest::collection::vec(
            (message(), proptest::collection::vec(ping_or_pong(), 0..2)),
            0..6,
        ),
        proptest::option::of(close()),
    )
        .prop_map(|(messages, close)| {
            let mut frames = Vec::new();
            let count = messages.len() as u64;
            for (mut msg, controls) in messages {
                // Put the control frames before the message's last fragment.
                let last = msg.pop().expect("a message has a frame");
                frames.extend(msg);
                frames.extend(controls);
                frames.push(last);
            }
            let close = close.map(|(frame, expect)| {
                frames.push(frame);
                expect
            });
            Stream {
                frames,
                messages: count,
                close,
            }
        })
}

/// What a tracker reported over a whole stream.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    /// Byte offset just past each frame, in order.
    frame_ends: Vec<usize>,
    messages: u64,
    closes: Vec<(u16, String)>,
    at_boundary: bool,
}

/// Feeds `bytes` in reads of the given sizes (cycled; the rest in one read),
/// stopping at every frame boundary the way the relay does.
fn observe(bytes: &[u8], reads: &[usize]) -> Observed {
    let mut t = FrameTracker::new();
    let mut obs = Observed {
        frame_ends: Vec::new(),
        messages: 0,
        closes: Vec::new(),
        at_boundary: true,
    };
    let mut at = 0;
    let mut sizes = reads.iter().cycle();
    while at < bytes.len() {
        let size = sizes.next().copied().unwrap_or(bytes.len());
        let read = &bytes[at..(at + size).min(bytes.len())];
        let mut used = 0;
        while used < read.len() {
            let mut seen = Seen::default();
            let n = t.feed_to_boundary(&read[used..], &mut seen);
            assert!(n > 0, "the tracker makes progress");
            used += n;
            obs.messages += seen.messages;
            obs.closes.extend(seen.close);
            if t.at_boundary() {
                obs.frame_ends.push(at + used);
            }
        }
        at += read.len();
    }
    obs.at_boundary = t.at_boundary();
    obs
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Any split of a valid frame stream into reads yields the same frames,
    /// messages and Close as one read of it, and those are the ones sent.
    #[test]
    fn frame_tracker_is_split_invariant(
        s in stream(),
        reads in proptest::collection::vec(1usize..=300, 1..8),
    ) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for f in &s.frames {
            bytes.extend(f.encode());
            ends.push(bytes.len());
        }
        let whole = observe(&bytes, &[bytes.len().max(1)]);
        prop_assert_eq!(&whole.frame_ends, &ends);
        prop_assert_eq!(whole.messages, s.messages);
        prop_assert_eq!(whole.closes.last(), s.close.as_ref());
        prop_assert!(whole.at_boundary);
        let split = observe(&bytes, &reads);
        prop_assert_eq!(&split, &whole);

        // `feed` (no stopping at boundaries) over the same reads agrees too.
        let mut t = FrameTracker::new();
        let mut seen = Seen::default();
        let mut sizes = reads.iter().cycle();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap_or(&1)).min(rest.len());
            t.feed(&rest[..n], &mut seen);
            rest = &rest[n..];
        }
        prop_assert_eq!(seen.messages, s.messages);
        prop_assert_eq!(seen.close, s.close);
        prop_assert!(t.at_boundary());
    }

    /// Cut anywhere inside a frame, the tracker is not at a boundary; the
    /// rest of the bytes finish the frame exactly.
    #[test]
    fn frame_tracker_knows_it_is_mid_frame(f in message(), cut in any::<prop::sample::Index>()) {
        let bytes = f[0].encode();
        let cut = 1 + cut.index(bytes.len() - 1);
        let mut t = FrameTracker::new();
        let mut seen = Seen::default();
        t.feed(&bytes[..cut], &mut seen);
        prop_assert_eq!(t.at_boundary(), cut == bytes.len());
        let used = t.feed_to_boundary(&[&bytes[cut..], &b"\x81\x00"[..]].concat(), &mut seen);
        prop_assert_eq!(cut + used, bytes.len());
        prop_assert!(t.at_boundary());
    }
}

/// A duration as the shortest canonical text `parse_duration` reads back:
/// whole seconds, then milliseconds (it only ever builds whole milliseconds).
fn render(d: Duration) -> String {
    let (s, ms) = (d.as_secs(), d.subsec_millis());
    match (s, ms) {
        (0, ms) => format!("{ms}ms"),
        (s, 0) => format!("{s}s"),
        (s, ms) => format!("{s}s{ms}ms"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Durations built from pieces parse to their sum (or are refused when
    /// the sum overflows), and what parses re-renders and re-parses the same.
    #[test]
    fn durations_parse_to_their_sum(
        pieces in proptest::collection::vec(
            (0u64..100_000, prop_oneof![Just("ms"), Just("s"), Just("m"), Just("h"), Just("d")]),
            1..4,
        ),
    ) {
        let text: String = pieces.iter().map(|(n, u)| format!("{n}{u}")).collect();
        let sum = pieces.iter().try_fold(Duration::ZERO, |acc, (n, u)| {
            let d = match *u {
                "ms" => Duration::from_millis(*n),
                "s" => Duration::from_secs(*n),
                "m" => Duration::from_secs(n * 60),
                "h" => Duration::from_secs(n * 3600),
                _ => Duration::from_secs(n * 86_400),
            };
            acc.checked_add(d)
        });
        prop_assert_eq!(parse_duration(&text), sum);
        if let Some(d) = sum {
            prop_assert_eq!(parse_duration(&render(d)), Some(d));
        }
    }

    /// Whatever text parse_duration accepts (including huge numbers) re-renders
    /// and re-parses to the same duration; nothing it is given makes it panic.
    #[test]
    fn accepted_durations_round_trip(text in "[0-9]{0,21}(ms|s|m|h|d|x|)[0-9]{0,3}(ms|s|m|h|d| |)") {
        if let Some(d) = parse_duration(&text) {
            prop_assert_eq!(parse_duration(&render(d)), Some(d), "{} → {}", text, render(d));
        }
    }
}

/// Found by the `router` fuzz target: a stray `%` before escaped hex digits
/// decoded into a new escape (`/api/%%32%65` → `/api/%2e`), which a second
/// normalisation turned into a dot segment (`/api/`).
#[test]
fn normalising_a_stray_percent_twice_changes_nothing() {
    use ferry::router::normalize_path;
    for path in ["/api/%%32%65", "/a/%4%31", "/%%%34%31/x", "/x/%2%2e%2e/y"] {
        let once = normalize_path(path).into_owned();
        assert_eq!(normalize_path(&once), once, "{path:?}");
    }
}

/// Found by the `router` fuzz target: a port was cut from hosts that have
/// none (`[::1::443` → `[::1:` → `[::1`), and only one trailing dot was
/// trimmed (`a..` → `a.` → `a`), so a second normalisation changed them again.
#[test]
fn normalising_a_host_twice_changes_nothing() {
    use ferry::router::normalize_host;
    for host in [
        "[::1::443",
        "a..",
        "a.:80",
        "[a]:1]:2",
        "Example.COM.:8443",
        "name:abc",
    ] {
        let once = normalize_host(host).into_owned();
        assert_eq!(normalize_host(&once), once, "{host:?}");
    }
    assert_eq!(normalize_host("Example.COM:8443"), "example.com");
    assert_eq!(normalize_host("[::1]:443"), "[::1]");
    assert_eq!(normalize_host("example.com.:443"), "example.com");
}
