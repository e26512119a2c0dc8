//! Online revocation checks of client certificates (`revocation` of a
//! `client` section or of `client-cert-auth`): OCSP from the certificate's
//! Authority Information Access, CRLs from its CRL Distribution Points.
//!
//! A handshake never waits on the network when an answer is cached: the
//! rustls verifier (synchronous) reads the process-wide [`cache`], starts a
//! background fetch on the control runtime for what is missing or due for a
//! refresh, and decides:
//! * revoked: refused, under either mode;
//! * no answer yet: `soft_fail` accepts and logs; `hard_fail` lets the
//!   handshake finish and [`OnlineCheck::settle`] then waits (in
//!   `tls::accept`) up to `timeout_ms` for the fetch already running;
//! * unknown to the CA, or its responder down (a failure is cached for a few
//!   seconds): `soft_fail` accepts and logs, `hard_fail` refuses.
//!
//! Per certificate, one good answer (OCSP `good`, or a CRL of its issuer not
//! listing it) is enough; one `revoked` wins over everything. Under
//! `leaf_only: false` every certificate of the verified path but the trust
//! anchor is checked, and an intermediate that publishes nothing passes.

mod cache;
mod source;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::future::join_all;
use rustls_pki_types::CertificateDer;
use shared::validate::OnlineRevocation;
use tokio::runtime::Handle;
use tokio::time::Instant;

use self::cache::Cache;
use self::source::{Answer, Judged, Key, Published};
use super::cert_error::ClientCertError;

/// Answers kept at most (an OCSP answer per certificate, a CRL per URL).
const CACHE_CAPACITY: usize = 10_000;

fn cache() -> &'static Arc<Cache<Key, Answer>> {
    static CACHE: LazyLock<Arc<Cache<Key, Answer>>> =
        LazyLock::new(|| Arc::new(Cache::new(CACHE_CAPACITY)));
    &CACHE
}

/// The online check of one trust set, built with it.
pub(crate) struct OnlineCheck {
    settings: OnlineRevocation,
    /// Where fetches run: the control runtime the configuration is built
    /// on. Without one (unit tests), nothing is fetched.
    runtime: Option<Handle>,
}

/// The status of a certificate or a path, worst first.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Revoked,
    Missing(Vec<Key>),
    Unknown(&'static str),
    Good,
}

impl Verdict {
    fn rank(&self) -> u8 {
        match self {
            Verdict::Revoked => 0,
            Verdict::Missing(_) => 1,
            Verdict::Unknown(_) => 2,
            Verdict::Good => 3,
        }
    }

    /// The worse of two; missing keys add up.
    fn and(self, other: Verdict) -> Verdict {
        match (self, other) {
            (Verdict::Missing(mut a), Verdict::Missing(b)) => {
                a.extend(b);
                Verdict::Missing(a)
            }
            (a, b) if a.rank() <= b.rank() => a,
            (_, b) => b,
        }
    }
}

impl std::fmt::Debug for OnlineCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnlineCheck")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl OnlineCheck {
    pub(crate) fn new(settings: &OnlineRevocation) -> OnlineCheck {
        OnlineCheck {
            settings: *settings,
            runtime: Handle::try_current().ok(),
        }
    }

    pub(crate) fn hard(&self) -> bool {
        self.settings.hard()
    }

    /// Checks a verified `path` (leaf first, then each issuer up to the
    /// trust anchor) against cached answers only, starting the fetches of
    /// missing ones. Under `hard_fail`, a missing answer is
    /// [`ClientCertError::RevocationPending`].
    pub(crate) fn check(&self, path: &[CertificateDer<'_>]) -> Result<(), ClientCertError> {
        let checked = if self.settings.leaf_only {
            1
        } else {
            usize::MAX
        };
        let verdict = path
            .windows(2)
            .take(checked)
            .enumerate()
            .map(|(i, pair)| self.certificate(&pair[0], Some(&pair[1]), i == 0))
            .fold(Verdict::Good, Verdict::and);
        self.decide(verdict)
    }

    /// After a `hard_fail` handshake that found no cached answer: waits up
    /// to `timeout_ms` for the fetches its verification started.
    pub(crate) async fn settle(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), ClientCertError> {
        let keys = match self.probe(leaf, intermediates) {
            Verdict::Missing(keys) => keys,
            answered => return self.decide(answered),
        };
        let fetches = keys.iter().filter_map(|key| cache().pending(key));
        let _ =
            tokio::time::timeout(self.settings.timeout, join_all(fetches.map(|p| p.done()))).await;
        match self.probe(leaf, intermediates) {
            Verdict::Missing(_) => {
                tracing::info!(
                    timeout = ?self.settings.timeout,
                    "revocation: no answer in time (hard_fail)"
                );
                Err(ClientCertError::UnknownRevocationStatus)
            }
            verdict => self.decide(verdict),
        }
    }

    /// The cached verdict on the client's own certificates, fetching nothing.
    fn probe(&self, leaf: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> Verdict {
        let leaf_verdict = self.certificate(leaf, None, true);
        if self.settings.leaf_only {
            return leaf_verdict;
        }
        intermediates
            .iter()
            .map(|cert| self.certificate(cert, None, false))
            .fold(leaf_verdict, Verdict::and)
    }

    fn decide(&self, verdict: Verdict) -> Result<(), ClientCertError> {
        let reason = match verdict {
            Verdict::Good => return Ok(()),
            Verdict::Revoked => return Err(ClientCertError::Revoked),
            Verdict::Missing(_) if self.hard() => return Err(ClientCertError::RevocationPending),
            Verdict::Unknown(_) if self.hard() => {
                return Err(ClientCertError::UnknownRevocationStatus)
            }
            Verdict::Missing(_) => "its status is being fetched",
            Verdict::Unknown(reason) => reason,
        };
        tracing::info!(
            reason,
            "revocation: accepted without a known status (soft_fail)"
        );
        Ok(())
    }

    /// One certificate from cached answers; fetches what is missing or due
    /// for a refresh when its `issuer` is known.
    fn certificate(
        &self,
        cert: &CertificateDer<'_>,
        issuer: Option<&CertificateDer<'_>>,
        leaf: bool,
    ) -> Verdict {
        let settings = &self.settings;
        let Some(published) = Published::of(cert, settings.ocsp, settings.crl_distribution_points)
        else {
            return Verdict::Unknown("the certificate does not parse");
        };
        if published.is_unpublished() {
            return if leaf {
                Verdict::Unknown("the certificate names no OCSP responder nor CRL")
            } else {
                Verdict::Good
            };
        }
        let now = Instant::now();
        let mut verdict = None::<Verdict>;
        let mut missing = Vec::new();
        for key in published.ocsp.iter().chain(&published.crls) {
            let Some(hit) = cache().get(key, settings.cache_ttl, now) else {
                self.fetch(key, cert, issuer);
                missing.push(key.clone());
                continue;
            };
            if hit.refresh {
                self.fetch(key, cert, issuer);
            }
            let judged = match published.judge(&hit.value) {
                Judged::Revoked => return Verdict::Revoked,
                Judged::Good => Verdict::Good,
                Judged::Unknown(reason) => Verdict::Unknown(reason),
            };
            // The best answer counts: one good answer is enough.
            verdict = Some(match verdict {
                Some(seen) if seen.rank() >= judged.rank() => seen,
                _ => judged,
            });
        }
        match verdict {
            Some(Verdict::Good) => Verdict::Good,
            _ if !missing.is_empty() => Verdict::Missing(missing),
            Some(verdict) => verdict,
            None => Verdict::Unknown("no answer"),
        }
    }

    fn fetch(&self, key: &Key, cert: &CertificateDer<'_>, issuer: Option<&CertificateDer<'_>>) {
        let (Some(runtime), Some(issuer)) = (&self.runtime, issuer) else {
            return;
        };
        let fetch = source::fetch(
            key.clone(),
            cert.clone().into_owned(),
            issuer.clone().into_owned(),
            self.settings.timeout.max(Duration::from_millis(1)),
        );
        // Dropped unpolled when this key is already being fetched.
        let _ = cache().fetch(key.clone(), runtime, fetch);
    }
}

#[cfg(test)]
mod tests {
    use shared::resource::RevocationMode;

    use super::source::Answer;
    use super::*;
    use crate::tls::ocsp::CertState;
    use crate::tls::testing::{Ca, Identity};

    const HOUR: Duration = Duration::from_secs(3600);

    /// A check that fetches nothing: answers come from [`answer`] only.
    fn offline(mode: RevocationMode) -> OnlineCheck {
        OnlineCheck {
            settings: OnlineRevocation {
                mode,
                ocsp: true,
                crl_distribution_points: false,
                leaf_only: true,
                timeout: Duration::from_millis(100),
                cache_ttl: HOUR,
            },
            runtime: None,
        }
    }

    /// A client of its own (cache keys are per certificate) and its path.
    fn client(ca: &Ca, cn: &str) -> (Identity, Vec<CertificateDer<'static>>) {
        let id = ca.client_publishing(cn, "http://127.0.0.1:1/", "http://127.0.0.1:1/ca.crl");
        let path = vec![id.leaf().clone(), ca.cert()];
        (id, path)
    }

    async fn answer(id: &Identity, state: CertState) {
        let published = Published::of(id.leaf(), true, false).unwrap();
        let key = published.ocsp.unwrap();
        let stored = async move { (Answer::Ocsp(state), Instant::now() + HOUR) };
        cache().fetch(key, &Handle::current(), stored).done().await;
    }

    #[tokio::test]
    async fn each_mode_decides_on_cached_answers_and_their_absence() {
        let ca = Ca::new("Client CA");
        let (soft, hard) = (
            offline(RevocationMode::SoftFail),
            offline(RevocationMode::HardFail),
        );
        let (missing, path) = client(&ca, "missing");
        assert_eq!(soft.check(&path), Ok(()));
        assert_eq!(hard.check(&path), Err(ClientCertError::RevocationPending));
        assert_eq!(
            hard.settle(missing.leaf(), &[]).await,
            Err(ClientCertError::UnknownRevocationStatus),
            "nothing being fetched: refused once settled"
        );
        let cases = [
            (CertState::Good, Ok(()), Ok(())),
            (
                CertState::Revoked,
                Err(ClientCertError::Revoked),
                Err(ClientCertError::Revoked),
            ),
            (
                CertState::Unknown,
                Ok(()),
                Err(ClientCertError::UnknownRevocationStatus),
            ),
        ];
        for (state, under_soft, under_hard) in cases {
            let (id, path) = client(&ca, &format!("{state:?}"));
            answer(&id, state).await;
            assert_eq!(soft.check(&path), under_soft, "{state:?}");
            assert_eq!(hard.check(&path), under_hard, "{state:?}");
            assert_eq!(hard.settle(id.leaf(), &[]).await, under_hard, "{state:?}");
        }
        let unpublished = vec![ca.client("unpublished").leaf().clone(), ca.cert()];
        assert_eq!(soft.check(&unpublished), Ok(()));
        assert_eq!(
            hard.check(&unpublished),
            Err(ClientCertError::UnknownRevocationStatus)
        );
    }

    fn missing(url: &str) -> Verdict {
        Verdict::Missing(vec![Key::Crl { url: url.into() }])
    }

    #[test]
    fn a_path_is_as_good_as_its_worst_certificate() {
        use Verdict::*;
        assert_eq!(Good.and(Unknown("x")), Unknown("x"));
        assert_eq!(Unknown("x").and(missing("a")), missing("a"));
        assert_eq!(missing("a").and(Revoked), Revoked);
        assert_eq!(Revoked.and(Good), Revoked);
        assert_eq!(
            missing("a").and(missing("b")),
            Verdict::Missing(vec![
                Key::Crl { url: "a".into() },
                Key::Crl { url: "b".into() }
            ])
        );
    }
}
