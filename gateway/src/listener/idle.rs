//! When an HTTP/2 connection should end. hyper bounds an idle HTTP/1.1
//! connection with its header-read timeout, but an HTTP/2 connection with
//! no open stream would be held (a connection slot, its buffers) for as
//! long as the client likes. [`Activity`] counts the connection's streams;
//! [`Activity::idle`] completes once none was open or started for a whole
//! `proxy.timeouts.header_read`, and the connection then ends with GOAWAY.
//! A response that asks to close the connection (`Connection: close`,
//! which HTTP/2 cannot carry) ends it the same way ([`Activity::close`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// The streams of one connection, shared with its request tasks.
#[derive(Default)]
pub(super) struct Activity {
    open: AtomicUsize,
    started: AtomicU64,
    closing: Notify,
}

/// Held by a request while it runs, dropped with it (also when the client
/// resets the stream).
pub(super) struct Stream(Arc<Activity>);

impl Activity {
    pub(super) fn start(self: &Arc<Self>) -> Stream {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
        Stream(Arc::clone(self))
    }

    /// Asks the connection to end once its open streams are done.
    pub(super) fn close(&self) {
        self.closing.notify_one();
    }

    /// Completes once [`Self::close`] was called, or once a whole `limit`
    /// passed with no stream open and none started: the connection was
    /// idle for between `limit` and twice it.
    pub(super) async fn ended(&self, limit: Duration) {
        tokio::select! {
            () = self.closing.notified() => {}
            () = self.idle(limit) => {
                tracing::debug!("HTTP/2 connection idle for proxy.timeouts.header_read; closing (GOAWAY)");
            }
        }
    }

    async fn idle(&self, limit: Duration) {
        loop {
            let seen = self.started.load(Ordering::Relaxed);
            tokio::time::sleep(limit).await;
            let open = self.open.load(Ordering::Relaxed);
            if open == 0 && self.started.load(Ordering::Relaxed) == seen {
                return;
            }
        }
    }
}

impl Stream {
    /// [`Activity::close`] for this stream's connection.
    pub(super) fn close_connection(&self) {
        self.0.close();
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_streams_is_idle_after_the_limit() {
        let activity = Arc::new(Activity::default());
        let started = tokio::time::Instant::now();
        activity.idle(LIMIT).await;
        assert_eq!(started.elapsed(), LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_stream_keeps_the_connection_busy() {
        let activity = Arc::new(Activity::default());
        let stream = activity.start();
        let idle = tokio::time::timeout(LIMIT * 5, activity.idle(LIMIT)).await;
        assert!(idle.is_err(), "idle while a stream is open");
        drop(stream);
        let started = tokio::time::Instant::now();
        activity.idle(LIMIT).await;
        assert_eq!(started.elapsed(), LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_close_ends_the_connection_at_once() {
        let activity = Arc::new(Activity::default());
        let _open = activity.start();
        activity.close();
        let started = tokio::time::Instant::now();
        activity.ended(LIMIT).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_started_and_ended_within_the_limit_restarts_it() {
        let activity = Arc::new(Activity::default());
        let started = tokio::time::Instant::now();
        let idle = activity.idle(LIMIT);
        tokio::pin!(idle);
        tokio::select! {
            () = &mut idle => panic!("idle before the limit"),
            () = tokio::time::sleep(LIMIT / 2) => drop(activity.start()),
        }
        idle.await;
        assert_eq!(started.elapsed(), LIMIT * 2);
    }
}
