//! A streaming compressor for one response body: bytes in as they arrive,
//! compressed bytes out, with a sync flush so a client can decode everything
//! fed so far (what keeps server-sent events and long polls prompt).
//!
//! Each coding writes into a `Vec` that is emptied after every call, so an
//! encoder holds only its own window and tables, never the body.

use std::io::{self, Write};

use bytes::Bytes;

use super::Encoding;

/// gzip level 1 (the fastest; nginx's `gzip_comp_level` default too):
/// docs/performance.md "Compression cost" has the measurements behind it.
pub const GZIP_LEVEL: u32 = 1;
/// Brotli quality 3: a better ratio than gzip 6 at half its CPU; quality 4
/// costs 30–45 % more for 1–3 % smaller output.
pub const BROTLI_QUALITY: u32 = 3;
/// zstd level 3 (zstd's default): cheaper than gzip 1 and as small as gzip 6.
pub const ZSTD_LEVEL: u32 = 3;
/// Brotli's window (2^20 = 1 MiB, not the default 4 MiB): it bounds the
/// memory a concurrent compressed response may hold, and costs nothing on
/// bodies smaller than it.
const BROTLI_LGWIN: u32 = 20;

/// One body's compressor.
pub struct Encoder {
    inner: Inner,
}

enum Inner {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    // Boxed: the brotli state is large and the others are small.
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Encoder").field(&self.encoding()).finish()
    }
}

impl Encoder {
    /// An encoder for `encoding` at ferry's level for it.
    pub fn new(encoding: Encoding) -> io::Result<Encoder> {
        let level = match encoding {
            Encoding::Gzip => GZIP_LEVEL,
            Encoding::Brotli => BROTLI_QUALITY,
            Encoding::Zstd => ZSTD_LEVEL,
        };
        Encoder::with_level(encoding, level)
    }

    /// An encoder at another level (gzip 0–9, brotli 0–11, zstd 1–22), for
    /// measuring what a level costs.
    pub fn with_level(encoding: Encoding, level: u32) -> io::Result<Encoder> {
        let inner = match encoding {
            Encoding::Gzip => Inner::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(level.min(9)),
            )),
            Encoding::Brotli => Inner::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                // The encoder's own output buffer, copied into the Vec.
                16 * 1024,
                level.min(11),
                BROTLI_LGWIN,
            ))),
            Encoding::Zstd => {
                let level = i32::try_from(level.clamp(1, 22)).unwrap_or(1);
                Inner::Zstd(zstd::stream::write::Encoder::new(Vec::new(), level)?)
            }
        };
        Ok(Encoder { inner })
    }

    /// The coding this encoder writes.
    pub fn encoding(&self) -> Encoding {
        match self.inner {
            Inner::Gzip(_) => Encoding::Gzip,
            Inner::Brotli(_) => Encoding::Brotli,
            Inner::Zstd(_) => Encoding::Zstd,
        }
    }

    /// Feeds `input`; returns what the encoder has written so far (often
    /// nothing: it keeps a block until it is worth writing).
    pub fn compress(&mut self, input: &[u8]) -> io::Result<Bytes> {
        match &mut self.inner {
            Inner::Gzip(e) => e.write_all(input)?,
            Inner::Brotli(e) => e.write_all(input)?,
            Inner::Zstd(e) => e.write_all(input)?,
        }
        Ok(self.take())
    }

    /// A sync flush: the output so far, ending on a boundary after which the
    /// client can decode every byte fed in. The stream stays open.
    pub fn flush(&mut self) -> io::Result<Bytes> {
        match &mut self.inner {
            Inner::Gzip(e) => e.flush()?,
            Inner::Brotli(e) => e.flush()?,
            Inner::Zstd(e) => e.flush()?,
        }
        Ok(self.take())
    }

    /// Ends the stream: the rest of the output, with the coding's trailer
    /// (gzip's CRC and length, brotli's last block, zstd's frame end).
    pub fn finish(self) -> io::Result<Bytes> {
        let out = match self.inner {
            Inner::Gzip(e) => e.finish()?,
            // `into_inner` writes the last block (an error there would only
            // be the Vec failing to grow, which aborts anyway).
            Inner::Brotli(e) => e.into_inner(),
            Inner::Zstd(e) => e.finish()?,
        };
        Ok(Bytes::from(out))
    }

    /// Empties the output buffer, keeping its allocation only when empty.
    fn take(&mut self) -> Bytes {
        let out = match &mut self.inner {
            Inner::Gzip(e) => e.get_mut(),
            Inner::Brotli(e) => e.get_mut(),
            Inner::Zstd(e) => e.get_mut(),
        };
        if out.is_empty() {
            Bytes::new()
        } else {
            Bytes::from(std::mem::take(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn decode(encoding: Encoding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match encoding {
            Encoding::Gzip => {
                flate2::read::GzDecoder::new(data)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Encoding::Brotli => {
                brotli::Decompressor::new(data, 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Encoding::Zstd => {
                out = zstd::stream::decode_all(data).unwrap();
            }
        }
        out
    }

    /// Decodes a prefix of a stream that has not ended: what a client has
    /// after a flush.
    fn decode_prefix(encoding: Encoding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let mut read = |r: &mut dyn Read| {
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
            }
        };
        match encoding {
            Encoding::Gzip => read(&mut flate2::read::GzDecoder::new(data)),
            Encoding::Brotli => read(&mut brotli::Decompressor::new(data, 4096)),
            Encoding::Zstd => read(&mut zstd::stream::read::Decoder::new(data).unwrap()),
        }
        out
    }

    #[test]
    fn round_trips_in_pieces() {
        let text: Vec<u8> = (0..5000)
            .flat_map(|i| format!("{{\"id\":{i},\"name\":\"item {i}\"}},").into_bytes())
            .collect();
        for encoding in Encoding::ALL {
            let mut e = Encoder::new(encoding).unwrap();
            assert_eq!(e.encoding(), encoding);
            let mut out = Vec::new();
            for piece in text.chunks(7000) {
                out.extend_from_slice(&e.compress(piece).unwrap());
            }
            out.extend_from_slice(&e.finish().unwrap());
            assert!(out.len() < text.len() / 4, "{encoding:?}: {}", out.len());
            assert_eq!(decode(encoding, &out), text, "{encoding:?}");
        }
    }

    #[test]
    fn a_flush_makes_everything_so_far_decodable() {
        for encoding in Encoding::ALL {
            let mut e = Encoder::new(encoding).unwrap();
            let mut out = e.compress(b"data: one\n\n").unwrap().to_vec();
            out.extend_from_slice(&e.flush().unwrap());
            assert_eq!(
                decode_prefix(encoding, &out),
                b"data: one\n\n",
                "{encoding:?}"
            );
            out.extend_from_slice(&e.compress(b"data: two\n\n").unwrap());
            out.extend_from_slice(&e.flush().unwrap());
            assert_eq!(
                decode_prefix(encoding, &out),
                b"data: one\n\ndata: two\n\n",
                "{encoding:?}"
            );
            out.extend_from_slice(&e.finish().unwrap());
            assert_eq!(decode(encoding, &out), b"data: one\n\ndata: two\n\n");
        }
    }

    #[test]
    fn an_empty_body_is_a_valid_stream() {
        for encoding in Encoding::ALL {
            let e = Encoder::new(encoding).unwrap();
            let out = e.finish().unwrap();
            assert!(!out.is_empty());
            assert_eq!(decode(encoding, &out), b"", "{encoding:?}");
        }
    }
}
