//! The response body ferry sends: an upstream body streamed through (with a
//! between-chunks read timeout), a small body of our own, or any other
//! stream of bytes (a file, a compressed body) boxed.
//!
//! It also carries the request's context, whose log line is written when the
//! body is finished or dropped, so the line has the real byte count and
//! duration, and says whether the client abandoned the response.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::context::RequestContext;

/// A boxed error, as bodies pass them to hyper.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response ferry sends.
pub struct ProxyBody {
    kind: Kind,
    /// Written on drop: one line per request.
    context: Option<Box<RequestContext>>,
}

enum Kind {
    Full(Option<Bytes>),
    Upstream {
        body: Incoming,
        /// Max wait between chunks.
        timeout: Duration,
        /// When the last chunk arrived; the idle deadline is this + `timeout`.
        last: Instant,
        /// Created only when the body is actually waiting.
        idle: Option<Pin<Box<Sleep>>>,
    },
    /// A file being read, a body being compressed.
    Stream(Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send>>),
}

/// The upstream went quiet mid-body for longer than `read_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("upstream sent nothing for {0:?} in the middle of a response body")]
pub struct BodyTimeout(pub Duration);

impl ProxyBody {
    pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
        ProxyBody {
            kind: Kind::Full(Some(bytes.into())),
            context: None,
        }
    }

    pub fn empty() -> ProxyBody {
        ProxyBody {
            kind: Kind::Full(None),
            context: None,
        }
    }

    pub fn upstream(body: Incoming, timeout: Duration) -> ProxyBody {
        ProxyBody {
            kind: Kind::Upstream {
                body,
                timeout,
                last: Instant::now(),
                idle: None,
            },
            context: None,
        }
    }

    /// Any other body: a file, a compressed body (boxed: these are the rarer paths).
    pub fn stream<B>(body: B) -> ProxyBody
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        use http_body_util::BodyExt;
        ProxyBody {
            kind: Kind::Stream(Box::pin(body.map_err(Into::into))),
            context: None,
        }
    }

    /// The request this body answers: its log line is written when the body ends.
    pub(crate) fn set_context(&mut self, context: Box<RequestContext>) {
        self.context = Some(context);
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = match &mut this.kind {
            Kind::Full(bytes) => bytes.take().map(|b| Ok(Frame::data(b))),
            Kind::Upstream {
                body,
                timeout,
                last,
                idle,
            } => match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    *last = Instant::now();
                    Some(Ok(frame))
                }
                Poll::Ready(Some(Err(e))) => Some(Err(BoxError::from(e))),
                Poll::Ready(None) => None,
                Poll::Pending => {
                    let deadline = *last + *timeout;
                    let sleep =
                        idle.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                    if sleep.deadline() != deadline {
                        sleep.as_mut().reset(deadline);
                    }
                    ready!(sleep.as_mut().poll(cx));
                    Some(Err(BoxError::from(BodyTimeout(*timeout))))
                }
            },
            Kind::Stream(body) => ready!(body.as_mut().poll_frame(cx)),
        };
        if let Some(log) = &mut this.context {
            match &frame {
                Some(Ok(f)) => {
                    if let Some(data) = f.data_ref() {
                        log.bytes_out += data.len() as u64;
                    }
                }
                Some(Err(e)) => log.body_error = Some(e.to_string()),
                None => log.complete = true,
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Upstream { body, .. } => body.is_end_stream(),
            Kind::Stream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Upstream { body, .. } => body.size_hint(),
            Kind::Stream(body) => body.size_hint(),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        let end = self.is_end_stream();
        if let Some(mut context) = self.context.take() {
            // hyper stops polling once a body says it is at its end; a body
            // dropped before that was abandoned by the client.
            context.complete |= end;
            drop(context);
        }
    }
}
