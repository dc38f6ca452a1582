//! Arbitrary bytes and split points → `FrameTracker`, the relay's frame
//! boundary tracker (it reads frame headers of untrusted peers).
//!
//! Checks: no panic; feeding the bytes in one chunk or in arbitrary chunks
//! (with `feed` or `feed_to_boundary`) gives the same messages, Close frame
//! and boundary state; a Close reason is never longer than a control frame
//! can carry (125 bytes of payload, whatever length the header claims).
#![no_main]

use ferry::proxy::websocket::frame::{FrameTracker, Seen};
use libfuzzer_sys::fuzz_target;

/// Messages, every Close seen in order, and whether the stream ended between frames.
#[derive(Debug, PartialEq, Eq)]
struct Totals {
    messages: u64,
    closes: Vec<(u16, String)>,
    at_boundary: bool,
}

/// Feeds `chunks` through one tracker, chunk by chunk, frame by frame:
/// `feed_to_boundary` stops at every frame end, so no Close is overwritten by a later one.
fn run<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> Totals {
    let mut t = FrameTracker::new();
    let mut totals = Totals {
        messages: 0,
        closes: Vec::new(),
        at_boundary: true,
    };
    for chunk in chunks {
        let mut rest = chunk;
        while !rest.is_empty() {
            let mut seen = Seen::default();
            let used = t.feed_to_boundary(rest, &mut seen);
            assert!(
                used > 0 && used <= rest.len(),
                "progress: {used} of {}",
                rest.len()
            );
            rest = &rest[used..];
            totals.messages += seen.messages;
            if let Some(close) = seen.close {
                assert!(
                    close.1.chars().count() <= 123,
                    "a Close reason of {} characters",
                    close.1.chars().count()
                );
                totals.closes.push(close);
            }
        }
    }
    totals.at_boundary = t.at_boundary();
    totals
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks how many split points follow (each one byte, a chunk length).
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 16).min(rest.len());
    let (lens, stream) = rest.split_at(n);

    let whole = run(std::iter::once(stream));

    let mut chunks = Vec::new();
    let mut at = 0;
    for &len in lens {
        let end = (at + usize::from(len)).min(stream.len());
        chunks.push(&stream[at..end]);
        at = end;
    }
    chunks.push(&stream[at..]);
    assert_eq!(whole, run(chunks.iter().copied()), "split at {lens:?}");

    // `feed` over one-byte chunks: every header split at every byte.
    let mut t = FrameTracker::new();
    let mut seen = Seen::default();
    for b in stream.chunks(1) {
        t.feed(b, &mut seen);
    }
    assert_eq!(seen.messages, whole.messages);
    assert_eq!(seen.close, whole.closes.last().cloned());
    assert_eq!(t.at_boundary(), whole.at_boundary);
});
