//! Ids generated for `POST`: 20 decimal digits like APISIX's, increasing
//! within a process. Two control planes could still pick the same id, so the
//! write itself is create-only and a taken id is simply skipped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Hands out unique, increasing ids.
#[derive(Debug, Default)]
pub(crate) struct IdGenerator {
    last: AtomicU64,
}

impl IdGenerator {
    /// Microseconds since the epoch, bumped past the previous id if the
    /// clock did not move (or moved back).
    pub(crate) fn next(&self) -> String {
        let now = unix_micros();
        let previous = self
            .last
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or_else(|last| last);
        format!("{:020}", now.max(previous + 1))
    }
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2))
}

/// Unix seconds, the unit of `create_time` and `update_time`.
pub(crate) fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_twenty_digits_and_increase() {
        let ids = IdGenerator::default();
        let generated: Vec<String> = (0..1000).map(|_| ids.next()).collect();
        for id in &generated {
            assert_eq!(id.len(), 20, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_digit()), "{id}");
        }
        for pair in generated.windows(2) {
            assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn ids_are_valid_object_ids() {
        let id = IdGenerator::default().next();
        shared::validate::check_id(&id).expect("valid id");
    }
}
