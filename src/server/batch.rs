//! Write batching for HTTP/2 connections.
//!
//! hyper runs every HTTP/2 stream (a request, or a WebSocket session) as a
//! task of its own, and each stream that queues a frame wakes the
//! connection's task. tokio polls a task woken that way next, so the
//! connection writes and flushes once per frame: one `writev`, one TCP
//! segment and one wake-up of the client for every response or WebSocket
//! message, however many streams had something to send at the same moment.
//!
//! [`BatchedWrites`] sits between the connection and its socket and puts a
//! flush off once: the bytes stay in its buffer and the connection's task is
//! rescheduled behind the tasks already waiting to run. Those add their
//! frames, and the next flush writes everything in one go, as an event loop
//! like nginx's or HAProxy's does at the end of each round. A flush is never
//! put off twice in a row, so nothing waits longer than one pass of the
//! runtime's queue.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Beyond this many buffered bytes, writes go out without waiting for a flush.
const HIGH_WATER: usize = 64 * 1024;
/// A buffer that grew beyond this is freed once written out, so an idle
/// connection holds at most this much here.
const KEEP: usize = 4 * 1024;

/// An I/O stream whose writes are buffered until a flush, and whose first
/// flush of a batch is put off by one turn of the scheduler.
pub struct BatchedWrites<T> {
    io: T,
    buf: Vec<u8>,
    /// How much of `buf` is already written.
    written: usize,
    /// A flush was put off: the next one goes through.
    deferred: bool,
}

impl<T> BatchedWrites<T> {
    pub fn new(io: T) -> Self {
        BatchedWrites {
            io,
            buf: Vec::new(),
            written: 0,
            deferred: false,
        }
    }
}

impl<T: AsyncWrite + Unpin> BatchedWrites<T> {
    /// Writes out everything buffered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.written = 0;
        self.buf.clear();
        if self.buf.capacity() > KEEP {
            // A burst (a large response) is over: don't keep its buffer.
            self.buf = Vec::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for BatchedWrites<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for BatchedWrites<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(data)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.buf.len() >= HIGH_WATER {
            ready!(this.poll_drain(cx))?;
        }
        let mut n = 0;
        for b in bufs {
            this.buf.extend_from_slice(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.buf.is_empty() {
            this.deferred = false;
            return Pin::new(&mut this.io).poll_flush(cx);
        }
        if !this.deferred {
            // Put this flush off: waking ourselves while running sends this
            // task to the back of the queue, behind the streams that are
            // about to add their frames. The flush it comes back for
            // writes them all.
            this.deferred = true;
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_drain(cx))?;
        this.deferred = false;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    //! The adapter's bookkeeping, polled by hand: what reaches the socket
    //! side, and when. (Its behaviour on real connections is covered by the
    //! HTTP/2 and WebSocket integration tests.)

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    use super::*;

    /// The socket side: records each write call.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        flushes: usize,
        shut: bool,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes.push(data.to_vec());
            Poll::Ready(Ok(data.len()))
        }
        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.shut = true;
            Poll::Ready(Ok(()))
        }
    }

    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn write(io: &mut BatchedWrites<Recorder>, cx: &mut Context<'_>, data: &[u8]) {
        let n = Pin::new(io).poll_write(cx, data);
        assert!(matches!(n, Poll::Ready(Ok(n)) if n == data.len()));
    }

    fn flush(io: &mut BatchedWrites<Recorder>, cx: &mut Context<'_>) {
        assert!(matches!(Pin::new(io).poll_flush(cx), Poll::Ready(Ok(()))));
    }

    #[test]
    fn a_flush_is_put_off_once_and_the_next_writes_everything_at_once() {
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut io = BatchedWrites::new(Recorder::default());

        write(&mut io, &mut cx, b"stream 1;");
        flush(&mut io, &mut cx);
        assert!(io.io.writes.is_empty(), "the first flush waits");
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "and asks to be polled again"
        );

        // Meanwhile another stream adds its frame; the flush that follows
        // sends both in one write.
        write(&mut io, &mut cx, b"stream 3;");
        flush(&mut io, &mut cx);
        assert_eq!(io.io.writes, [b"stream 1;stream 3;".to_vec()]);
        assert_eq!(io.io.flushes, 1);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);

        // With nothing buffered a flush goes straight through.
        flush(&mut io, &mut cx);
        assert_eq!(io.io.flushes, 2);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);

        // The next batch is put off again, once.
        write(&mut io, &mut cx, b"stream 5;");
        flush(&mut io, &mut cx);
        assert_eq!(io.io.writes.len(), 1);
        flush(&mut io, &mut cx);
        assert_eq!(io.io.writes.len(), 2);
    }

    #[test]
    fn shutdown_writes_what_is_buffered_first() {
        let waker = Waker::from(Arc::new(Wakes::default()));
        let mut cx = Context::from_waker(&waker);
        let mut io = BatchedWrites::new(Recorder::default());
        write(&mut io, &mut cx, b"GOAWAY");
        flush(&mut io, &mut cx);
        assert!(matches!(
            Pin::new(&mut io).poll_shutdown(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(io.io.writes, [b"GOAWAY".to_vec()]);
        assert!(io.io.shut);
    }

    #[test]
    fn past_the_high_water_mark_writes_go_out_without_a_flush() {
        let waker = Waker::from(Arc::new(Wakes::default()));
        let mut cx = Context::from_waker(&waker);
        let mut io = BatchedWrites::new(Recorder::default());
        let chunk = vec![7u8; 16 * 1024];
        for _ in 0..4 {
            write(&mut io, &mut cx, &chunk);
        }
        assert!(io.io.writes.is_empty());
        write(&mut io, &mut cx, &chunk);
        assert_eq!(
            io.io.writes.len(),
            1,
            "64 KiB buffered: written before taking more"
        );
        assert_eq!(io.io.writes[0].len(), HIGH_WATER);
    }
}
