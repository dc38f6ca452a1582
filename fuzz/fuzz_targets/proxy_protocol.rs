//! PROXY protocol v1/v2 header bytes → `ferry::server::proxy_protocol::parse`,
//! which a listener with `proxy_protocol = true` calls on the bytes read so
//! far, before TLS (the `ppp` crate underneath, with ferry's size caps).
//!
//! Checks: no panic; a `Complete` header is no longer than the input nor
//! than `MAX_LEN`, a v1 header is one line ending in CRLF, and the header's
//! own bytes parse to the same header; more bytes never change an answer
//! that was given (a `Complete` header stays the same, an error stays an
//! error), and every proper prefix of a complete header is `Incomplete` —
//! so a header split across reads is read the same as one read of it;
//! `Incomplete` is never the answer once `MAX_LEN` bytes are there; errors
//! render and have a metrics label.
#![no_main]

use std::fmt::Write as _;

use ferry::server::proxy_protocol::{MAX_LEN, Parsed, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks a point where the bytes are cut in two reads.
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(data.len());

    let whole = parse(data);
    match &whole {
        Ok(Parsed::Complete(h)) => {
            assert!(
                h.len <= data.len() && h.len <= MAX_LEN,
                "{h:?} from {} bytes",
                data.len()
            );
            assert!(h.version == 1 || h.version == 2, "{h:?}");
            let header = &data[..h.len];
            if h.version == 1 {
                assert!(
                    header.ends_with(b"\r\n"),
                    "v1 header not ending in CRLF: {header:?}"
                );
                assert_eq!(
                    header.iter().filter(|&&b| b == b'\n').count(),
                    1,
                    "{header:?}"
                );
            }
            assert!(matches!(parse(header), Ok(Parsed::Complete(again)) if again == *h));
            for end in 0..h.len {
                assert!(
                    matches!(parse(&header[..end]), Ok(Parsed::Incomplete)),
                    "prefix of {end} of a {}-byte header: {:?}",
                    h.len,
                    parse(&header[..end])
                );
            }
        }
        Ok(Parsed::Incomplete) => {
            assert!(
                data.len() < MAX_LEN,
                "Incomplete after {} bytes",
                data.len()
            );
        }
        Err(e) => {
            let mut out = String::new();
            write!(out, "{e}").expect("an error renders");
            assert!(!e.reason().is_empty());
        }
    }

    // Fewer bytes first (the first read): whatever it answered for sure, the whole agrees with.
    match parse(&data[..cut]) {
        Ok(Parsed::Complete(h)) => {
            assert!(
                matches!(whole, Ok(Parsed::Complete(w)) if w == h),
                "{h:?} then {whole:?}"
            );
        }
        Err(e) => assert!(whole.is_err(), "{e:?} for {cut} bytes, then {whole:?}"),
        Ok(Parsed::Incomplete) => {}
    }
});
