//! [`FileBody`]: a small file's bytes, or a large file streamed in chunks
//! read on tokio's blocking pool, one chunk in flight per response.

use std::fs::File;
use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;

/// Files up to this size are read whole in the hop that opens them.
pub const SMALL: u64 = 64 * 1024;
/// The most a large file's body holds in memory at once.
pub const CHUNK: u64 = 256 * 1024;

/// The body of a file response. Its size hint is exact.
pub struct FileBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Stream {
        /// `None` while a read is in flight (it owns the file then).
        file: Option<File>,
        /// Bytes still to send (the file is positioned at the first).
        remaining: u64,
        reading: Option<JoinHandle<(File, io::Result<Bytes>)>>,
    },
}

impl FileBody {
    pub fn full(bytes: Bytes) -> FileBody {
        FileBody {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
        }
    }

    pub fn empty() -> FileBody {
        FileBody {
            kind: Kind::Full(None),
        }
    }

    /// `len` bytes of `file` from its current position.
    pub fn stream(file: File, len: u64) -> FileBody {
        FileBody {
            kind: Kind::Stream {
                file: Some(file),
                remaining: len,
                reading: None,
            },
        }
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &mut self.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream {
                file,
                remaining,
                reading,
            } => {
                if reading.is_none() {
                    if *remaining == 0 {
                        return Poll::Ready(None);
                    }
                    let Some(f) = file.take() else {
                        return Poll::Ready(None);
                    };
                    let n = (*remaining).min(CHUNK);
                    *reading = Some(tokio::task::spawn_blocking(move || {
                        let result = read_chunk(&f, n);
                        (f, result)
                    }));
                }
                let Some(handle) = reading.as_mut() else {
                    return Poll::Ready(None);
                };
                let joined = ready!(Pin::new(handle).poll(cx));
                *reading = None;
                match joined {
                    Ok((f, Ok(chunk))) => {
                        *file = Some(f);
                        *remaining -= chunk.len() as u64;
                        Poll::Ready(Some(Ok(Frame::data(chunk))))
                    }
                    Ok((_, Err(e))) => {
                        *remaining = 0;
                        Poll::Ready(Some(Err(e)))
                    }
                    Err(e) => {
                        *remaining = 0;
                        Poll::Ready(Some(Err(io::Error::other(e))))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream {
                remaining, reading, ..
            } => *remaining == 0 && reading.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}

/// Exactly `n` bytes of `file` from its position: a file that shrank since
/// it was measured is an error (the response's length is already sent).
pub fn read_chunk(mut file: &File, n: u64) -> io::Result<Bytes> {
    let mut buf = Vec::with_capacity(n as usize);
    (&mut file).take(n).read_to_end(&mut buf)?;
    if (buf.len() as u64) < n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file shrank while it was being sent",
        ));
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::{Seek, SeekFrom, Write};

    #[tokio::test]
    async fn streams_exactly_the_range_in_bounded_chunks() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..(CHUNK as usize * 2 + 100))
            .map(|i| (i % 251) as u8)
            .collect();
        f.write_all(&data).unwrap();
        f.seek(SeekFrom::Start(10)).unwrap();
        let len = data.len() as u64 - 20;
        let mut body = FileBody::stream(f, len);
        assert_eq!(body.size_hint().exact(), Some(len));
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            let chunk = frame.unwrap().into_data().unwrap();
            assert!(chunk.len() as u64 <= CHUNK);
            got.extend_from_slice(&chunk);
        }
        assert!(body.is_end_stream());
        assert_eq!(got, data[10..data.len() - 10]);
    }

    #[tokio::test]
    async fn a_file_that_shrank_is_an_error() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"abc").unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        let mut body = FileBody::stream(f, 10);
        assert!(body.frame().await.unwrap().is_err());
        assert!(body.frame().await.is_none());
    }
}
