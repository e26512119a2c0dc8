//! `deployment.admin.timeouts.idle`: a connection on which no byte is
//! received or sent for that long fails its next read or write, which ends
//! it. This bounds what the other limits cannot see: an HTTP/2 connection
//! without requests, a request body that stopped, a client that stopped
//! reading its response.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `inner`, failing with `TimedOut` once idle for `limit`.
pub(super) struct IdleIo<S> {
    inner: S,
    limit: Duration,
    last_progress: Instant,
    /// Armed at `last_progress + limit` when an operation waits; moved
    /// forward lazily rather than reset on every byte.
    deadline: Pin<Box<Sleep>>,
}

impl<S> IdleIo<S> {
    pub(super) fn new(inner: S, limit: Duration) -> IdleIo<S> {
        let now = Instant::now();
        IdleIo {
            inner,
            limit,
            last_progress: now,
            deadline: Box::pin(tokio::time::sleep_until(now + limit)),
        }
    }

    fn progressed(&mut self) {
        self.last_progress = Instant::now();
    }

    /// For an operation that is waiting: an error once the connection has
    /// been idle for the whole limit, else `Pending` (woken at the deadline).
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        loop {
            let due = self.last_progress + self.limit;
            if self.deadline.deadline() != due {
                self.deadline.as_mut().reset(due);
            }
            if self.deadline.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if self.last_progress + self.limit <= Instant::now() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "admin connection idle for deployment.admin.timeouts.idle",
                )));
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => this.pending(cx),
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.progressed();
                Poll::Ready(Ok(()))
            }
            ready => ready,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.pending(cx),
            Poll::Ready(Ok(n)) if n > 0 => {
                this.progressed();
                Poll::Ready(Ok(n))
            }
            ready => ready,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.pending(cx),
            ready => ready,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_silent_peer_times_out_and_progress_defers_it() {
        let (mut client, server) = tokio::io::duplex(64);
        let limit = Duration::from_millis(300);
        let mut io = IdleIo::new(server, limit);
        let writer = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(limit * 2 / 3).await;
                client.write_all(b"x").await.expect("write");
            }
            client // kept open, silent
        });
        let started = Instant::now();
        let mut buf = [0u8; 8];
        for _ in 0..3 {
            assert_eq!(io.read(&mut buf).await.expect("a byte in time"), 1);
        }
        let err = io.read(&mut buf).await.expect_err("idle");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let elapsed = started.elapsed();
        assert!(
            elapsed >= limit * 2 + limit && elapsed < limit * 10,
            "three bytes deferred the limit, silence then reached it: {elapsed:?}"
        );
        drop(writer.await);
    }
}
