//! Where a certificate's status is published (its Authority Information
//! Access and CRL Distribution Points), and the fetch of an answer from
//! there: an OCSP response checked by [`OcspTarget::check`], or a CRL
//! signed by the certificate's issuer.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::time::Instant;
use x509_parser::error::X509Error;
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_OCSP;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use super::super::ocsp::{self, CertState, FetchError, OcspError, OcspTarget};

/// A failed fetch is remembered this long, so that a responder that is down
/// costs one attempt per interval rather than one per handshake.
pub(super) const FAILURE_TTL: Duration = Duration::from_secs(5);
/// An answer without `nextUpdate` is kept for the asker's `cache_ttl`.
const NO_NEXT_UPDATE: Duration = Duration::from_secs(365 * 24 * 3600);

/// A cache key: one certificate at one responder, or one CRL.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Key {
    Ocsp { url: String, cert: [u8; 32] },
    Crl { url: String },
}

/// What was fetched, as the cache holds it.
#[derive(Clone, Debug)]
pub(super) enum Answer {
    Ocsp(CertState),
    Crl(Arc<RevokedSerials>),
    /// Nothing usable (the reason was logged when fetching).
    Failed,
}

/// The serials a CRL lists, and whose CRL it is.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct RevokedSerials {
    /// DER `Name` of the issuer.
    issuer: Vec<u8>,
    serials: HashSet<Vec<u8>>,
}

/// What one certificate says about itself and where its status is.
pub(super) struct Published {
    pub(super) ocsp: Option<Key>,
    pub(super) crls: Vec<Key>,
    issuer: Vec<u8>,
    serial: Vec<u8>,
}

impl Published {
    /// `None` for a certificate that does not parse (the path check refused
    /// it already). Only `http://` locations count.
    pub(super) fn of(der: &CertificateDer<'_>, ocsp: bool, crls: bool) -> Option<Published> {
        let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
        let mut published = Published {
            ocsp: None,
            crls: Vec::new(),
            issuer: cert.issuer().as_raw().to_vec(),
            serial: cert.raw_serial().to_vec(),
        };
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::AuthorityInfoAccess(aia) if ocsp => {
                    let url = aia
                        .iter()
                        .filter(|desc| desc.access_method == OID_PKIX_ACCESS_DESCRIPTOR_OCSP)
                        .find_map(|desc| http_uri(&desc.access_location));
                    if let (None, Some(url)) = (&published.ocsp, url) {
                        let cert = Sha256::digest(der.as_ref()).into();
                        published.ocsp = Some(Key::Ocsp { url, cert });
                    }
                }
                ParsedExtension::CRLDistributionPoints(points) if crls => {
                    let urls = points
                        .iter()
                        .filter_map(|point| match &point.distribution_point {
                            Some(DistributionPointName::FullName(names)) => Some(names),
                            _ => None,
                        })
                        .flatten()
                        .filter_map(http_uri);
                    published.crls.extend(urls.map(|url| Key::Crl { url }));
                }
                _ => {}
            }
        }
        Some(published)
    }

    /// Nowhere to ask.
    pub(super) fn is_unpublished(&self) -> bool {
        self.ocsp.is_none() && self.crls.is_empty()
    }

    /// What `answer` (for one of this certificate's keys) says of it.
    pub(super) fn judge(&self, answer: &Answer) -> Judged {
        match answer {
            Answer::Ocsp(CertState::Good) => Judged::Good,
            Answer::Ocsp(CertState::Revoked) => Judged::Revoked,
            Answer::Ocsp(CertState::Unknown) => Judged::Unknown("the responder does not know it"),
            Answer::Crl(list) if list.issuer != self.issuer => {
                Judged::Unknown("its distribution point serves another issuer's CRL")
            }
            Answer::Crl(list) if list.serials.contains(&self.serial) => Judged::Revoked,
            Answer::Crl(_) => Judged::Good,
            Answer::Failed => Judged::Unknown("no answer from where its status is published"),
        }
    }
}

/// One answer about one certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Judged {
    Good,
    Revoked,
    Unknown(&'static str),
}

fn http_uri(name: &GeneralName<'_>) -> Option<String> {
    match name {
        GeneralName::URI(uri) if uri.starts_with("http://") => Some((*uri).to_owned()),
        _ => None,
    }
}

/// Fetches the answer for `key` about `cert` (issued by `issuer`); a failure
/// is an answer too, kept for [`FAILURE_TTL`].
pub(super) async fn fetch(
    key: Key,
    cert: CertificateDer<'static>,
    issuer: CertificateDer<'static>,
    timeout: Duration,
) -> (Answer, Instant) {
    let result = match &key {
        Key::Ocsp { url, .. } => fetch_ocsp(url, &cert, &issuer, timeout).await,
        Key::Crl { url } => fetch_crl(url, &issuer, timeout).await,
    };
    match result {
        Ok(answer) => {
            tracing::debug!(?key, answer = ?answer.0, "revocation: answer");
            answer
        }
        Err(reason) => {
            tracing::warn!(?key, %reason, "revocation: no answer");
            (Answer::Failed, Instant::now() + FAILURE_TTL)
        }
    }
}

/// Why a fetch gave no answer (logged; the answer is then `Failed`).
#[derive(Debug, Error)]
pub(super) enum NoAnswer {
    /// The OCSP request for the certificate cannot be built.
    #[error(transparent)]
    Request(OcspError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{url}: {source}")]
    Ocsp {
        url: String,
        #[source]
        source: OcspError,
    },
    #[error("{url}: {source}")]
    Crl {
        url: String,
        #[source]
        source: CrlError,
    },
}

/// Why a fetched CRL is not used.
#[derive(Debug, Error)]
pub(super) enum CrlError {
    #[error("not a CRL: {0}")]
    NotACrl(#[source] x509_parser::nom::Err<X509Error>),
    #[error("the issuer's certificate does not parse: {0}")]
    Issuer(#[source] x509_parser::nom::Err<X509Error>),
    #[error("the CRL is not signed by the certificate's issuer")]
    NotSignedByIssuer,
    #[error("the CRL is past its nextUpdate")]
    Expired,
}

async fn fetch_ocsp(
    url: &str,
    cert: &CertificateDer<'_>,
    issuer: &CertificateDer<'_>,
    timeout: Duration,
) -> Result<(Answer, Instant), NoAnswer> {
    let target = OcspTarget::new(cert, issuer, url).map_err(NoAnswer::Request)?;
    let der = ocsp::post(url, target.request(), timeout).await?;
    let checked = target
        .check(&der, SystemTime::now())
        .map_err(|source| NoAnswer::Ocsp {
            url: url.to_owned(),
            source,
        })?;
    Ok((Answer::Ocsp(checked.state), expiry(checked.next_update)))
}

async fn fetch_crl(
    url: &str,
    issuer: &CertificateDer<'_>,
    timeout: Duration,
) -> Result<(Answer, Instant), NoAnswer> {
    let der = ocsp::get(url, timeout).await?;
    let (list, next_update) = verified_crl(&der, issuer).map_err(|source| NoAnswer::Crl {
        url: url.to_owned(),
        source,
    })?;
    Ok((Answer::Crl(Arc::new(list)), expiry(next_update)))
}

/// The CRL in `der` (DER, or PEM as some CAs serve it), if `issuer` issued
/// and signed it and it is not past its `nextUpdate`.
fn verified_crl(
    der: &[u8],
    issuer: &CertificateDer<'_>,
) -> Result<(RevokedSerials, Option<SystemTime>), CrlError> {
    let pem;
    let der = match x509_parser::pem::parse_x509_pem(der) {
        Ok((_, block)) if block.label == "X509 CRL" => {
            pem = block.contents;
            &pem[..]
        }
        _ => der,
    };
    let (_, crl) = CertificateRevocationList::from_der(der).map_err(CrlError::NotACrl)?;
    let (_, issuer) = X509Certificate::from_der(issuer.as_ref()).map_err(CrlError::Issuer)?;
    if crl.issuer().as_raw() != issuer.subject().as_raw()
        || crl.verify_signature(issuer.public_key()).is_err()
    {
        return Err(CrlError::NotSignedByIssuer);
    }
    let next_update = crl
        .next_update()
        .map(|at| SystemTime::UNIX_EPOCH + Duration::from_secs(at.timestamp().max(0) as u64));
    if next_update.is_some_and(|next| next <= SystemTime::now()) {
        return Err(CrlError::Expired);
    }
    let list = RevokedSerials {
        issuer: crl.issuer().as_raw().to_vec(),
        serials: crl
            .iter_revoked_certificates()
            .map(|revoked| revoked.raw_serial().to_vec())
            .collect(),
    };
    Ok((list, next_update))
}

/// When an answer valid until `next_update` stops being used.
fn expiry(next_update: Option<SystemTime>) -> Instant {
    let left = next_update.map_or(NO_NEXT_UPDATE, |next| {
        next.duration_since(SystemTime::now()).unwrap_or_default()
    });
    Instant::now() + left
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testing::Ca;

    fn days_ago(days: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc() - time::Duration::days(days)
    }

    #[test]
    fn reads_where_a_certificate_publishes_its_status() {
        let ca = Ca::new("Client CA");
        let client =
            ca.client_publishing("a", "http://127.0.0.1:1/ocsp", "http://127.0.0.1:2/ca.crl");
        let published = Published::of(client.leaf(), true, true).unwrap();
        assert!(
            matches!(&published.ocsp, Some(Key::Ocsp { url, .. }) if url == "http://127.0.0.1:1/ocsp")
        );
        assert_eq!(
            published.crls,
            [Key::Crl {
                url: "http://127.0.0.1:2/ca.crl".into()
            }]
        );
        let ocsp_only = Published::of(client.leaf(), true, false).unwrap();
        assert!(ocsp_only.ocsp.is_some() && ocsp_only.crls.is_empty());
        assert!(Published::of(ca.client("b").leaf(), true, true)
            .unwrap()
            .is_unpublished());
        let https = ca.client_publishing("c", "https://x/", "ldap://x/");
        assert!(Published::of(https.leaf(), true, true)
            .unwrap()
            .is_unpublished());
    }

    #[test]
    fn a_crl_counts_only_signed_by_the_issuer_and_current() {
        let ca = Ca::new("Client CA");
        let (revoked, good) = (ca.client("revoked"), ca.client("good"));
        let crl = ca.crl(&[&revoked], days_ago(1));
        let (list, next_update) = verified_crl(crl.as_ref(), &ca.cert()).unwrap();
        assert!(next_update.is_some());
        let answer = Answer::Crl(Arc::new(list));
        let judge = |id: &crate::tls::testing::Identity| {
            Published::of(id.leaf(), true, true).unwrap().judge(&answer)
        };
        assert_eq!(judge(&revoked), Judged::Revoked);
        assert_eq!(judge(&good), Judged::Good);
        let other = Ca::new("Other CA");
        assert!(matches!(judge(&other.client("x")), Judged::Unknown(_)));

        let impostor = Ca::new("Client CA");
        assert!(matches!(
            verified_crl(impostor.crl(&[], days_ago(1)).as_ref(), &ca.cert()),
            Err(CrlError::NotSignedByIssuer)
        ));
        let stale = ca.crl(&[], days_ago(31));
        assert!(matches!(
            verified_crl(stale.as_ref(), &ca.cert()),
            Err(CrlError::Expired)
        ));
        assert!(matches!(
            verified_crl(b"not a crl", &ca.cert()),
            Err(CrlError::NotACrl(_))
        ));
    }

    #[test]
    fn a_failed_fetch_names_the_url_and_the_reason() {
        let stale = NoAnswer::Crl {
            url: "http://127.0.0.1:2/ca.crl".into(),
            source: CrlError::Expired,
        };
        assert_eq!(
            stale.to_string(),
            "http://127.0.0.1:2/ca.crl: the CRL is past its nextUpdate"
        );
    }

    #[test]
    fn ocsp_answers_and_failures_are_judged() {
        let ca = Ca::new("Client CA");
        let published = Published::of(ca.client("a").leaf(), true, true).unwrap();
        assert_eq!(
            published.judge(&Answer::Ocsp(CertState::Good)),
            Judged::Good
        );
        assert_eq!(
            published.judge(&Answer::Ocsp(CertState::Revoked)),
            Judged::Revoked
        );
        assert!(matches!(
            published.judge(&Answer::Ocsp(CertState::Unknown)),
            Judged::Unknown(_)
        ));
        assert!(matches!(
            published.judge(&Answer::Failed),
            Judged::Unknown(_)
        ));
    }
}
