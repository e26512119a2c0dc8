//! Revocation checks against configured CRLs (`crl`, `crl_mode`,
//! `unknown_status`).
//!
//! v3 chains are checked by webpki while it builds the path, with the
//! options mapped here. webpki cannot parse X.509 v1 leaves, so for those the
//! CRLs signed by one of the trust anchors are indexed once, when the
//! configuration is built, and a v1 leaf costs one parse and a hash lookup.

use std::collections::HashSet;

use rustls_pki_types::{CertificateDer, UnixTime};
use shared::resource::{CrlMode, UnknownStatus};
use shared::validate::Revocation;
use webpki::{
    CertRevocationList, ExpirationPolicy, OwnedCertRevocationList, RevocationCheckDepth,
    RevocationOptions, RevocationOptionsBuilder, UnknownStatusPolicy,
};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::cert_error::ClientCertError;

/// The CRLs of one trust set, ready for verification.
pub(crate) struct Crls {
    /// Never empty.
    lists: Vec<CertRevocationList<'static>>,
    depth: RevocationCheckDepth,
    unknown: UnknownStatusPolicy,
    expiration: ExpirationPolicy,
    v1: Vec<AnchorCrl>,
}

/// A CRL issued and signed by one of the trust anchors, for v1 leaves.
struct AnchorCrl {
    /// DER `Name` of the issuer (outer SEQUENCE included).
    issuer: Vec<u8>,
    /// DER INTEGER contents of each revoked serial number.
    revoked: HashSet<Vec<u8>>,
    /// Unix seconds.
    next_update: Option<i64>,
}

impl Crls {
    /// `None` when `revocation` holds no CRL. The error names the CRL (by
    /// index) webpki cannot use.
    pub(crate) fn new(
        revocation: &Revocation,
        anchors: &[CertificateDer<'_>],
    ) -> Result<Option<Crls>, (usize, String)> {
        let lists = revocation
            .crls
            .iter()
            .enumerate()
            .map(|(index, der)| {
                OwnedCertRevocationList::from_der(der.as_ref())
                    .map(CertRevocationList::from)
                    .map_err(|e| (index, format!("{e:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if lists.is_empty() {
            return Ok(None);
        }
        let (depth, expiration) = match revocation.mode {
            CrlMode::Strict => (RevocationCheckDepth::Chain, ExpirationPolicy::Enforce),
            CrlMode::LeafOnly => (RevocationCheckDepth::EndEntity, ExpirationPolicy::Ignore),
        };
        let unknown = match revocation.unknown_status {
            UnknownStatus::Allow => UnknownStatusPolicy::Allow,
            UnknownStatus::Deny => UnknownStatusPolicy::Deny,
        };
        Ok(Some(Crls {
            lists,
            depth,
            unknown,
            expiration,
            v1: anchor_crls(revocation, anchors),
        }))
    }

    /// The webpki options over `lists`, which the caller collects from
    /// [`Crls::lists`] (webpki borrows a slice of references).
    pub(crate) fn options<'a>(
        &self,
        lists: &'a [&'a CertRevocationList<'a>],
    ) -> Option<RevocationOptions<'a>> {
        let builder = RevocationOptionsBuilder::new(lists).ok()?;
        Some(
            builder
                .with_depth(self.depth)
                .with_status_policy(self.unknown)
                .with_expiration_policy(self.expiration)
                .build(),
        )
    }

    pub(crate) fn lists(&self) -> impl Iterator<Item = &CertRevocationList<'static>> {
        self.lists.iter()
    }

    /// The revocation status of a v1 leaf issued directly by an anchor.
    pub(crate) fn check_v1(
        &self,
        leaf: &CertificateDer<'_>,
        now: UnixTime,
    ) -> Result<(), ClientCertError> {
        let (_, cert) = X509Certificate::from_der(leaf.as_ref())
            .map_err(|e| ClientCertError::Malformed(e.to_string()))?;
        let issuer = cert.issuer().as_raw();
        let mut covering = self.v1.iter().filter(|crl| crl.issuer == issuer).peekable();
        if covering.peek().is_none() {
            return match self.unknown {
                UnknownStatusPolicy::Allow => Ok(()),
                UnknownStatusPolicy::Deny => Err(ClientCertError::UnknownRevocationStatus),
            };
        }
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        for crl in covering {
            let stale = crl.next_update.is_some_and(|next| now > next);
            if stale && self.expiration == ExpirationPolicy::Enforce {
                return Err(ClientCertError::CrlExpired);
            }
            if crl.revoked.contains(cert.raw_serial()) {
                return Err(ClientCertError::Revoked);
            }
        }
        Ok(())
    }
}

/// The CRLs that one of `anchors` issued and signed.
fn anchor_crls(revocation: &Revocation, anchors: &[CertificateDer<'_>]) -> Vec<AnchorCrl> {
    let anchors: Vec<X509Certificate<'_>> = anchors
        .iter()
        .filter_map(|der| X509Certificate::from_der(der.as_ref()).ok())
        .map(|(_, cert)| cert)
        .collect();
    revocation
        .crls
        .iter()
        .filter_map(|der| CertificateRevocationList::from_der(der.as_ref()).ok())
        .map(|(_, crl)| crl)
        .filter(|crl| anchors.iter().any(|ca| signed_by(crl, ca)))
        .map(|crl| AnchorCrl {
            issuer: crl.issuer().as_raw().to_vec(),
            revoked: crl
                .iter_revoked_certificates()
                .map(|revoked| revoked.raw_serial().to_vec())
                .collect(),
            next_update: crl.next_update().map(|at| at.timestamp()),
        })
        .collect()
}

fn signed_by(crl: &CertificateRevocationList<'_>, ca: &X509Certificate<'_>) -> bool {
    let spki: &SubjectPublicKeyInfo<'_> = ca.public_key();
    crl.issuer().as_raw() == ca.subject().as_raw() && crl.verify_signature(spki).is_ok()
}
