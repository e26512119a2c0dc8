//! Riding out an etcd leader election.
//!
//! While a 3-member cluster elects a new leader (a second or two after the
//! old one dies), members answer `etcdserver: leader changed` or `no
//! leader`, or the call is cut with the dead member's connection; etcd's own
//! clients retry these. So does the store, with a growing pause, for as long
//! as the call's budget (`deployment.etcd.timeout`) allows.
//!
//! A write retried this way cannot be applied twice in a way that matters:
//! the admin API only writes with compare-and-swap transactions, so if the
//! first attempt was applied after all, the retry's comparison fails and the
//! caller reads the object again (and recognises its own write); a delete
//! that finds nothing left after such a retry has done its job.

use std::time::Duration;

use tokio::time::Instant;

use super::failover;

/// gRPC `UNAVAILABLE` (fixed by the gRPC specification): etcd's election
/// errors, a stopping member, a connection cut during the call.
const UNAVAILABLE: i32 = 14;

/// The first pause between two attempts; doubled each time.
const FIRST_PAUSE: Duration = Duration::from_millis(25);
/// The longest pause: an election rarely takes longer than a few of them.
const LONGEST_PAUSE: Duration = Duration::from_millis(400);

/// Whether `err` is worth another attempt: etcd was reached (or the call was
/// cut on its way) but could not serve it now. A call no member accepted is
/// not: [`failover`] has tried every member already, and an etcd that is
/// down must be reported at once.
pub(super) fn is_transient(err: &etcd_client::Error) -> bool {
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            status.code() as i32 == UNAVAILABLE && !failover::never_sent(err)
        }
        _ => false,
    }
}

/// The attempts of one call within its budget.
pub(super) struct Attempts {
    deadline: Instant,
    pause: Duration,
    /// Whether an attempt failed after it may have reached etcd.
    pub(super) retried: bool,
}

impl Attempts {
    pub(super) fn within(budget: Duration) -> Attempts {
        Attempts {
            deadline: Instant::now() + budget,
            pause: FIRST_PAUSE,
            retried: false,
        }
    }

    /// What is left of the budget for the next attempt.
    pub(super) fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Waits before the next attempt; `false` when the budget does not
    /// allow one.
    pub(super) async fn pause(&mut self) -> bool {
        if Instant::now() + self.pause >= self.deadline {
            return false;
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(LONGEST_PAUSE);
        self.retried = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn election_errors_are_transient_and_others_are_not() {
        let status = |code, message: &str| {
            etcd_client::Error::GRpcStatus(tonic::Status::new(code, message.to_owned()))
        };
        for message in ["etcdserver: leader changed", "etcdserver: no leader"] {
            assert!(
                is_transient(&status(tonic::Code::Unavailable, message)),
                "{message}"
            );
        }
        assert!(!is_transient(&status(
            tonic::Code::InvalidArgument,
            "etcdserver: key is not provided"
        )));
        assert!(!is_transient(&status(
            tonic::Code::PermissionDenied,
            "etcdserver: permission denied"
        )));
    }

    #[tokio::test]
    async fn attempts_stop_within_the_budget() {
        let started = Instant::now();
        let mut attempts = Attempts::within(Duration::from_millis(300));
        let mut pauses = 0;
        while attempts.pause().await {
            pauses += 1;
        }
        assert!(attempts.retried);
        assert!(pauses >= 3, "25 + 50 + 100 ms fit: {pauses}");
        assert!(started.elapsed() < Duration::from_millis(300));
    }
}
