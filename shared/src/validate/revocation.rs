//! Revocation settings, shared by an SSL object's `client` section and the
//! `client-cert-auth` plugin: `crl`, `crl_mode`, `unknown_status`.

use rustls_pki_types::CertificateRevocationListDer;

use super::ValidationError;
use crate::resource::{CrlMode, UnknownStatus};
use crate::x509::{self, CrlSummary};

/// Validated revocation settings: every CRL parsed.
#[derive(Debug, Clone)]
pub struct Revocation {
    /// Every CRL of every `crl` entry, in order.
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    pub summaries: Vec<CrlSummary>,
    pub mode: CrlMode,
    pub unknown_status: UnknownStatus,
}

impl Revocation {
    /// One line per CRL past its `nextUpdate` at `now` (unix seconds): with
    /// `crl_mode: strict` such a CRL refuses every certificate it covers.
    pub fn stale_crls(&self, now: i64) -> Vec<String> {
        self.summaries
            .iter()
            .filter(|crl| crl.is_stale_at(now))
            .map(|crl| format!("the CRL of {} is past its nextUpdate", crl.issuer))
            .collect()
    }
}

/// The raw settings, as found in the object.
pub(super) struct RevocationSpec<'a> {
    pub(super) crl: Option<&'a [String]>,
    pub(super) mode: Option<CrlMode>,
    pub(super) unknown_status: Option<UnknownStatus>,
}

/// `None` without `crl`. `field` prefixes the field names in errors
/// (`client` gives `client.crl[1]`; empty gives `crl[1]`).
pub(super) fn revocation(
    field: &str,
    spec: RevocationSpec<'_>,
) -> Result<Option<Revocation>, ValidationError> {
    let named = |name: &str| {
        if field.is_empty() {
            name.to_owned()
        } else {
            format!("{field}.{name}")
        }
    };
    let crl = spec.crl.unwrap_or_default();
    if crl.is_empty() {
        for (set, name) in [
            (spec.mode.is_some(), "crl_mode"),
            (spec.unknown_status.is_some(), "unknown_status"),
        ] {
            if set {
                return Err(ValidationError::field(
                    named(name),
                    "has no effect without `crl`",
                ));
            }
        }
        return Ok(None);
    }
    let mut crls = Vec::new();
    for (i, pem) in crl.iter().enumerate() {
        let parsed = x509::parse_crls(pem)
            .map_err(|e| ValidationError::field(named(&format!("crl[{i}]")), e.to_string()))?;
        crls.extend(parsed);
    }
    let summaries = crls
        .iter()
        .map(CrlSummary::from_der)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ValidationError::field(named("crl"), e.to_string()))?;
    Ok(Some(Revocation {
        crls,
        summaries,
        mode: spec.mode.unwrap_or_default(),
        unknown_status: spec.unknown_status.unwrap_or_default(),
    }))
}
