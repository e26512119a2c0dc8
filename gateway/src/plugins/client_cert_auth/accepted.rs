//! The handshake certificates a route accepted, so that the requests after
//! the first on a keep-alive connection skip the chain verification.
//!
//! Verifying depends on the route's trust set, the certificates the client
//! sent and the time. The trust set is fixed for this plugin instance (a
//! configuration change builds a new one, with nothing remembered) and the
//! certificates are fixed for the connection, so an acceptance holds from
//! the moment it was given until the earliest moment time could change it:
//! the first `notAfter` among the certificates that could be on the path
//! (the leaf, what the client sent with it, the route's CAs) or, when CRL
//! expiry is enforced, the first `nextUpdate`. Refusals are not remembered:
//! a certificate that is not yet valid becomes valid.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use rustls_pki_types::CertificateDer;
use shared::client_chain::Revocation;
use shared::resource::CrlMode;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::context::PeerCert;

/// Entries kept before the first sweep of closed connections.
const MIN_SWEEP: usize = 64;

pub(super) struct AcceptedCerts {
    /// Unix seconds after which the route's own configuration (its CAs, its
    /// enforced CRLs) lets no acceptance stand.
    config_until: i64,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    /// Keyed by the address of the connection's certificate.
    by_cert: HashMap<usize, Accepted>,
    sweep_at: usize,
}

struct Accepted {
    /// Keeps the allocation, so no other connection's certificate can take
    /// its address while this entry exists.
    cert: Weak<PeerCert>,
    /// Unix seconds: the acceptance holds for `since <= now <= until`.
    since: i64,
    until: i64,
}

impl AcceptedCerts {
    pub(super) fn new(ca: &[CertificateDer<'_>], revocation: Option<&Revocation>) -> AcceptedCerts {
        let crls_until = revocation
            .filter(|revocation| revocation.mode == CrlMode::Strict)
            .into_iter()
            .flat_map(|revocation| &revocation.summaries)
            .filter_map(|crl| crl.next_update);
        // A CA that does not parse never anchors a path; `TrustSet` refused it.
        let ca_until = ca.iter().filter_map(not_after);
        AcceptedCerts {
            config_until: crls_until.chain(ca_until).min().unwrap_or(i64::MAX),
            entries: Mutex::default(),
        }
    }

    /// Whether `cert` was accepted on its connection and that still holds
    /// at `now` (unix seconds).
    pub(super) fn holds(&self, cert: &Arc<PeerCert>, now: i64) -> bool {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .by_cert
            .get(&address(cert))
            .is_some_and(|accepted| (accepted.since..=accepted.until).contains(&now))
    }

    /// Remembers that `cert` was accepted at `now`.
    pub(super) fn insert(&self, cert: &Arc<PeerCert>, now: i64) {
        let Some(until) = self.valid_until(cert) else {
            return;
        };
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.by_cert.len() >= entries.sweep_at {
            entries
                .by_cert
                .retain(|_, accepted| accepted.cert.strong_count() > 0 && now <= accepted.until);
            entries.sweep_at = (entries.by_cert.len() * 2).max(MIN_SWEEP);
        }
        let accepted = Accepted {
            cert: Arc::downgrade(cert),
            since: now,
            until,
        };
        entries.by_cert.insert(address(cert), accepted);
    }

    /// The last second at which every certificate that could be on `cert`'s
    /// path is still valid; `None` when one of them cannot be read (it is
    /// then verified on every request).
    fn valid_until(&self, cert: &PeerCert) -> Option<i64> {
        cert.intermediates.iter().map(not_after).try_fold(
            cert.summary.not_after.min(self.config_until),
            |until, next| Some(until.min(next?)),
        )
    }
}

fn address(cert: &Arc<PeerCert>) -> usize {
    Arc::as_ptr(cert) as usize
}

fn not_after(der: &CertificateDer<'_>) -> Option<i64> {
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use shared::plugins::client_cert_auth::ClientCertAuth;

    use super::*;
    use crate::plugins::testing::{peer, Pki};

    fn accepted_for(config: Value) -> AcceptedCerts {
        let config = ClientCertAuth::from_config(&config).unwrap();
        AcceptedCerts::new(&config.ca, config.revocation.as_ref())
    }

    #[test]
    fn an_acceptance_holds_only_for_its_connection_and_its_validity() {
        let pki = Pki::new();
        let accepted = accepted_for(json!({"ca": [pki.ca.pem]}));
        let cert = Arc::new(peer(&pki.client("alice")));
        let until = cert.summary.not_after;
        let since = until - 1000;
        assert!(!accepted.holds(&cert, since), "nothing accepted yet");
        accepted.insert(&cert, since);
        assert!(accepted.holds(&cert, since));
        assert!(accepted.holds(&cert, until));
        assert!(!accepted.holds(&cert, until + 1), "the leaf has expired");
        assert!(!accepted.holds(&cert, since - 1), "the clock went back");
        let same_cert_other_connection = Arc::new(peer(&pki.client("alice")));
        assert!(!accepted.holds(&same_cert_other_connection, since));
    }

    #[test]
    fn an_enforced_crl_ends_an_acceptance_at_its_next_update() {
        let pki = Pki::new();
        let crl = pki.crl(&[]);
        let strict = accepted_for(json!({"ca": [pki.ca.pem], "crl": [crl], "crl_mode": "strict"}));
        let leaf_only =
            accepted_for(json!({"ca": [pki.ca.pem], "crl": [crl], "crl_mode": "leaf_only"}));
        let cert = Arc::new(peer(&pki.client("alice")));
        let now = unix_now();
        strict.insert(&cert, now);
        leaf_only.insert(&cert, now);
        let next_update = now + 30 * 24 * 3600;
        assert!(strict.holds(&cert, next_update - 3600));
        assert!(!strict.holds(&cert, next_update + 3600));
        assert!(
            leaf_only.holds(&cert, next_update + 3600),
            "expiry is ignored"
        );
    }

    #[test]
    fn a_chain_with_an_unreadable_certificate_is_not_remembered() {
        let pki = Pki::new();
        let accepted = accepted_for(json!({"ca": [pki.ca.pem]}));
        let mut cert = peer(&pki.client("alice"));
        cert.intermediates
            .push(CertificateDer::from(vec![0x30, 0x00]));
        let cert = Arc::new(cert);
        accepted.insert(&cert, unix_now());
        assert!(!accepted.holds(&cert, unix_now()));
    }

    #[test]
    fn closed_connections_are_swept() {
        let pki = Pki::new();
        let accepted = accepted_for(json!({"ca": [pki.ca.pem]}));
        let alice = pki.client("alice");
        let now = unix_now();
        let open = Arc::new(peer(&alice));
        accepted.insert(&open, now);
        for _ in 0..MIN_SWEEP * 4 {
            accepted.insert(&Arc::new(peer(&alice)), now);
        }
        let entries = accepted.entries.lock().unwrap();
        assert!(
            entries.by_cert.len() <= MIN_SWEEP,
            "{}",
            entries.by_cert.len()
        );
        drop(entries);
        assert!(accepted.holds(&open, now), "an open connection is kept");
    }

    fn unix_now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }
}
