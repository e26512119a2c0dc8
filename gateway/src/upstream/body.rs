//! Bodies in flight, streamed frame by frame, never buffered whole:
//!
//! * the client's request body on its way upstream, which a retry can take
//!   back as long as no attempt has read from it (a connect failure happens
//!   before hyper polls the body);
//! * the upstream's response body on its way back, cut off when the upstream
//!   stays silent longer than its read timeout.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use thiserror::Error;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use crate::reply::BoxError;

/// The client's request body, shared by the attempts to send it upstream.
pub(crate) struct RequestBody {
    slot: Arc<Mutex<Option<Incoming>>>,
    hint: SizeHint,
    end_stream: bool,
}

/// The request body as one attempt sends it.
pub(crate) struct AttemptBody {
    slot: Arc<Mutex<Option<Incoming>>>,
    /// Taken out of the slot on the first poll.
    body: Option<Incoming>,
    hint: SizeHint,
    end_stream: bool,
    /// Fired once the body has been read to its end.
    sent: Option<oneshot::Sender<()>>,
}

impl RequestBody {
    pub(crate) fn new(body: Incoming) -> RequestBody {
        RequestBody {
            hint: body.size_hint(),
            end_stream: body.is_end_stream(),
            slot: Arc::new(Mutex::new(Some(body))),
        }
    }

    /// The body for one attempt, and a signal that fires when it has been
    /// sent whole (`None` when there is nothing to send).
    pub(crate) fn attempt(&self) -> (AttemptBody, Option<oneshot::Receiver<()>>) {
        let (sent, signal) = if self.end_stream {
            (None, None)
        } else {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        };
        let body = AttemptBody {
            slot: Arc::clone(&self.slot),
            body: None,
            hint: self.hint,
            end_stream: self.end_stream,
            sent,
        };
        (body, signal)
    }

    /// Whether no attempt has read from the body yet, so that another attempt
    /// can still send it whole.
    pub(crate) fn is_untouched(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

#[cfg(test)]
impl AttemptBody {
    /// A request without a body.
    pub(crate) fn empty() -> AttemptBody {
        AttemptBody {
            slot: Arc::new(Mutex::new(None)),
            body: None,
            hint: SizeHint::with_exact(0),
            end_stream: true,
            sent: None,
        }
    }
}

impl Body for AttemptBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if this.body.is_none() {
            this.body = this
                .slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
        }
        // Only reachable if a retry were attempted after a read, which the
        // proxy never does: end the body rather than panic.
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(Pin::new(body).poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            if let Some(sent) = this.sent.take() {
                // The receiver may be gone (response already here): fine.
                let _ = sent.send(());
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body
            .as_ref()
            .map_or(self.end_stream, Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body.as_ref().map_or(self.hint, Body::size_hint)
    }
}

/// The upstream went quiet for longer than its read timeout.
#[derive(Debug, Error)]
#[error("{upstream} sent nothing for {timeout:?} while streaming the response body")]
pub(crate) struct ReadTimedOut {
    upstream: Arc<str>,
    timeout: Duration,
}

/// An upstream response body with a deadline between two frames.
pub(crate) struct ResponseBody<B> {
    inner: B,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    upstream: Arc<str>,
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, timeout: Duration, upstream: Arc<str>) -> ResponseBody<B> {
        ResponseBody {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            upstream,
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            let next = Instant::now() + this.timeout;
            this.deadline.as_mut().reset(next);
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        ready!(this.deadline.as_mut().poll(cx));
        let err = ReadTimedOut {
            upstream: Arc::clone(&this.upstream),
            timeout: this.timeout,
        };
        tracing::warn!(error = %err, "response aborted");
        Poll::Ready(Some(Err(err.into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> ResponseBody<B>
where
    B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    /// Boxed as the proxy's response body type.
    pub(crate) fn boxed(self) -> crate::reply::ProxyBody {
        BodyExt::boxed(self)
    }
}
