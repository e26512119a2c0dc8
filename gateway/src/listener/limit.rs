//! `proxy.max_connections`: one cap over every proxy listener.
//!
//! A connection holds a permit from accept to close; when none is left, a new
//! connection is closed at once (before any TLS or HTTP work) and counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// At most one warning per this many seconds while connections are refused.
const WARNING_INTERVAL_SECS: u64 = 10;

/// The connection cap and what it did; shared by the listeners and `/status`.
#[derive(Debug)]
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    max: usize,
    /// Connections admitted since start.
    handled: AtomicU64,
    refused: AtomicU64,
    /// Unix seconds of the last "refusing connections" warning.
    last_warning: AtomicU64,
}

impl ConnectionLimit {
    pub fn new(max: usize) -> Arc<ConnectionLimit> {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(ConnectionLimit {
            permits: Arc::new(Semaphore::new(max)),
            max,
            handled: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            last_warning: AtomicU64::new(0),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections open right now.
    pub fn current(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// Connections closed at accept because the cap was reached.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections admitted since start (nginx's `handled`).
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    /// Connections accepted since start, admitted or refused (nginx's
    /// `accepted`).
    pub fn accepted(&self) -> u64 {
        self.handled() + self.refused()
    }

    /// A permit for one more connection, or `None` (counted) at the cap.
    pub(crate) fn admit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok();
        if permit.is_some() {
            self.handled.fetch_add(1, Ordering::Relaxed);
        } else {
            let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
            if self.warning_due() {
                tracing::warn!(
                    max = self.max,
                    refused,
                    "proxy.max_connections reached: closing new connections"
                );
            }
        }
        permit
    }

    fn warning_due(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_warning.load(Ordering::Relaxed);
        now >= last + WARNING_INTERVAL_SECS
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_and_counts_beyond_the_cap() {
        let limit = ConnectionLimit::new(2);
        let first = limit.admit().expect("1");
        let _second = limit.admit().expect("2");
        assert!(limit.admit().is_none());
        assert!(limit.admit().is_none());
        assert_eq!((limit.current(), limit.max(), limit.refused()), (2, 2, 2));
        drop(first);
        assert_eq!(limit.current(), 1);
        assert!(
            limit.admit().is_some(),
            "a closed connection frees its slot"
        );
        assert_eq!((limit.handled(), limit.accepted()), (3, 5));
    }
}
