//! OCSP stapling (`ocsp_stapling` of an SSL object): the gateway fetches the
//! OCSP response for each of its certificates and sends it in the handshake
//! (rustls `CertifiedKey::ocsp`).
//!
//! Fetching runs on the control runtime, never on a handshake: one task per
//! certificate, started when its SSL object is built. A good response is
//! installed by swapping the certificate's `CertifiedKey` (handshakes read
//! it lock-free), refreshed after `cache_ttl` or halfway to its
//! `nextUpdate`, whichever comes first. While the responder fails, the last
//! good response is served until its `nextUpdate`, then dropped; a response
//! saying `revoked` or `unknown` is not stapled (as nginx). The task holds
//! the certificate weakly and ends once its SSL object is replaced.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;
use shared::validate::{CertKeyPair, OcspStapling};

use super::ocsp::{self, CertState, Checked, OcspTarget};

/// One certificate as handshakes read it, swapped when its staple changes.
pub(crate) type KeySlot = Arc<ArcSwap<CertifiedKey>>;

/// How long one OCSP exchange may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The first retry after a failure; doubled each time.
const FIRST_RETRY: Duration = Duration::from_secs(2);
/// The longest wait between retries.
const MAX_RETRY: Duration = Duration::from_secs(300);
/// Never sooner than this, whatever the response says.
const MIN_WAIT: Duration = Duration::from_secs(1);

/// Starts stapling for each certificate of an SSL object (`slots` in the
/// order of `pairs`). Needs a Tokio runtime (the snapshot builder runs on
/// the control runtime's blocking pool); without one, nothing is stapled.
pub(crate) fn start(
    ssl_id: &str,
    stapling: &OcspStapling,
    pairs: &[CertKeyPair],
    slots: &[KeySlot],
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(
            ssl = ssl_id,
            "no runtime to fetch OCSP responses on; not stapling"
        );
        return;
    };
    for ((pair, url), slot) in pairs.iter().zip(&stapling.responders).zip(slots) {
        let [leaf, issuer, ..] = pair.chain.as_slice() else {
            continue;
        };
        match OcspTarget::new(leaf, issuer, url) {
            Ok(target) => {
                let stapler = Stapler {
                    ssl_id: ssl_id.to_owned(),
                    target,
                    slot: Arc::downgrade(slot),
                    cache_ttl: stapling.cache_ttl,
                };
                runtime.spawn(stapler.run());
            }
            Err(err) => {
                tracing::warn!(ssl = ssl_id, %err, "cannot staple OCSP for this certificate")
            }
        }
    }
}

struct Stapler {
    ssl_id: String,
    target: OcspTarget,
    slot: Weak<ArcSwap<CertifiedKey>>,
    cache_ttl: Duration,
}

impl Stapler {
    async fn run(self) {
        let mut state = StapleState::default();
        loop {
            let fetched = ocsp::post(&self.target.url, self.target.request(), FETCH_TIMEOUT)
                .await
                .map_err(|e| e.to_string())
                .and_then(|der| {
                    let checked = self
                        .target
                        .check(&der, SystemTime::now())
                        .map_err(|e| e.to_string())?;
                    Ok((checked, der))
                });
            let Some(slot) = self.slot.upgrade() else {
                return; // The SSL object was replaced.
            };
            let step = state.next(SystemTime::now(), fetched, self.cache_ttl);
            self.log(&step);
            match &step.staple {
                Change::Keep => {}
                Change::Set(der) => install(&slot, Some(der.clone())),
                Change::Drop => install(&slot, None),
            }
            drop(slot);
            tokio::time::sleep(step.wait).await;
        }
    }

    fn log(&self, step: &Step) {
        let (ssl, url) = (&self.ssl_id, &self.target.url);
        match (&step.staple, &step.reason) {
            (Change::Set(_), _) => {
                tracing::debug!(ssl, url, refresh_in = ?step.wait, "OCSP response stapled")
            }
            (Change::Drop, Some(reason)) => {
                tracing::warn!(ssl, url, %reason, "OCSP stapling stopped for this certificate")
            }
            (_, Some(reason)) => {
                tracing::warn!(ssl, url, %reason, retry_in = ?step.wait, "cannot refresh the stapled OCSP response; serving the last good one while it is current")
            }
            _ => {}
        }
    }
}

/// A new `CertifiedKey` with the same chain and key and `ocsp` as staple.
fn install(slot: &ArcSwap<CertifiedKey>, ocsp: Option<Vec<u8>>) {
    let current = slot.load();
    if current.ocsp.is_none() && ocsp.is_none() {
        return;
    }
    let mut next = CertifiedKey::new(current.cert.clone(), Arc::clone(&current.key));
    next.ocsp = ocsp;
    slot.store(Arc::new(next));
}

/// What stays between two attempts.
#[derive(Debug, Default)]
struct StapleState {
    /// When the stapled response stops being current, if one is stapled.
    stapled_until: Option<SystemTime>,
    failures: u32,
}

#[derive(Debug, PartialEq, Eq)]
enum Change {
    Keep,
    Set(Vec<u8>),
    Drop,
}

/// What to do after one attempt, and when to try again.
#[derive(Debug)]
struct Step {
    staple: Change,
    wait: Duration,
    reason: Option<String>,
}

impl StapleState {
    fn next(
        &mut self,
        now: SystemTime,
        fetched: Result<(Checked, Vec<u8>), String>,
        cache_ttl: Duration,
    ) -> Step {
        match fetched {
            Ok((checked, der)) if checked.state == CertState::Good => {
                self.failures = 0;
                let until = checked.next_update.unwrap_or(now + cache_ttl);
                self.stapled_until = Some(until);
                // Halfway to nextUpdate: time to retry before it passes.
                let half_left = until.duration_since(now).unwrap_or_default() / 2;
                Step {
                    staple: Change::Set(der),
                    wait: cache_ttl.min(half_left).max(MIN_WAIT),
                    reason: None,
                }
            }
            Ok((checked, _)) => {
                self.stapled_until = None;
                self.failures = 0;
                Step {
                    staple: Change::Drop,
                    wait: cache_ttl,
                    reason: Some(format!(
                        "the responder says the certificate is {:?}",
                        checked.state
                    )),
                }
            }
            Err(reason) => self.failed(now, reason, cache_ttl),
        }
    }

    /// Keeps the staple while it is current; retries with backoff, waking
    /// up when the staple expires to drop it on time.
    fn failed(&mut self, now: SystemTime, reason: String, cache_ttl: Duration) -> Step {
        let backoff = FIRST_RETRY
            .saturating_mul(1 << self.failures.min(16))
            .min(MAX_RETRY)
            .min(cache_ttl);
        self.failures += 1;
        let staple = match self.stapled_until {
            Some(until) if until <= now => {
                self.stapled_until = None;
                Change::Drop
            }
            _ => Change::Keep,
        };
        let until_expiry = self.stapled_until.map_or(backoff, |until| {
            until.duration_since(now).unwrap_or_default()
        });
        Step {
            staple,
            wait: backoff.min(until_expiry).max(MIN_WAIT),
            reason: Some(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good(now: SystemTime, next_in: Option<u64>) -> Result<(Checked, Vec<u8>), String> {
        Ok((
            Checked {
                state: CertState::Good,
                next_update: next_in.map(|s| now + Duration::from_secs(s)),
            },
            vec![1, 2, 3],
        ))
    }

    const TTL: Duration = Duration::from_secs(3600);

    #[test]
    fn a_good_response_is_stapled_and_refreshed_before_next_update() {
        let now = SystemTime::now();
        let mut state = StapleState::default();
        let step = state.next(now, good(now, Some(600)), TTL);
        assert_eq!(step.staple, Change::Set(vec![1, 2, 3]));
        assert_eq!(step.wait, Duration::from_secs(300), "halfway to nextUpdate");
        let step = state.next(now, good(now, Some(86_400)), TTL);
        assert_eq!(step.wait, TTL, "cache_ttl comes first");
        let step = state.next(now, good(now, None), TTL);
        assert_eq!(step.wait, TTL / 2);
    }

    #[test]
    fn the_last_good_response_is_served_while_current_then_dropped() {
        let now = SystemTime::now();
        let mut state = StapleState::default();
        state.next(now, good(now, Some(100)), TTL);
        let later = now + Duration::from_secs(50);
        let step = state.next(later, Err("connection refused".into()), TTL);
        assert_eq!(step.staple, Change::Keep);
        assert_eq!(step.wait, FIRST_RETRY);
        let step = state.next(later, Err("connection refused".into()), TTL);
        assert_eq!(step.wait, FIRST_RETRY * 2, "backoff");
        let close = now + Duration::from_secs(99);
        let step = state.next(close, Err("down".into()), TTL);
        assert_eq!(step.staple, Change::Keep);
        assert_eq!(step.wait, MIN_WAIT, "wakes up when the staple expires");
        let expired = now + Duration::from_secs(100);
        let step = state.next(expired, Err("down".into()), TTL);
        assert_eq!(step.staple, Change::Drop);
        let step = state.next(expired + MIN_WAIT, Err("down".into()), TTL);
        assert_eq!(step.staple, Change::Keep, "nothing left to drop");
    }

    #[test]
    fn revoked_or_unknown_is_not_stapled() {
        let now = SystemTime::now();
        let mut state = StapleState::default();
        state.next(now, good(now, Some(600)), TTL);
        for cert_state in [CertState::Revoked, CertState::Unknown] {
            let answer = Checked {
                state: cert_state,
                next_update: None,
            };
            let step = state.next(now, Ok((answer, vec![9])), TTL);
            assert_eq!(step.staple, Change::Drop);
        }
    }
}
