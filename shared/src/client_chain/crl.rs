//! The chain settings shared by an SSL object's `client` section and the
//! `client-cert-auth` plugin: `depth`, `crl`, `crl_mode`, `unknown_status`.

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::error::ValidationError;
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

/// Refuses a CRL that names one of `ca` as its issuer without being signed
/// by it: such a CRL would make every certificate of that CA fail at
/// verification time. (A CRL of another issuer, e.g. an intermediate CA, is
/// checked when a chain through that issuer is verified.)
fn check_signers(
    field: &str,
    revocation: &Revocation,
    ca: &[CertificateDer<'_>],
) -> Result<(), ValidationError> {
    let anchors: Vec<X509Certificate<'_>> = ca
        .iter()
        .filter_map(|der| X509Certificate::from_der(der.as_ref()).ok())
        .map(|(_, cert)| cert)
        .collect();
    for (i, der) in revocation.crls.iter().enumerate() {
        let Ok((_, crl)) = CertificateRevocationList::from_der(der.as_ref()) else {
            continue;
        };
        let mut named = anchors
            .iter()
            .filter(|cert| cert.subject().as_raw() == crl.issuer().as_raw())
            .peekable();
        if named.peek().is_some()
            && !named.any(|cert| crl.verify_signature(cert.public_key()).is_ok())
        {
            return Err(ValidationError::field(
                field,
                format!(
                    "CRL #{i} names {} as its issuer but is not signed by that CA",
                    revocation
                        .summaries
                        .get(i)
                        .map_or("its CA", |s| s.issuer.as_str())
                ),
            ));
        }
    }
    Ok(())
}

/// The raw settings, as found in the object.
pub(crate) struct RevocationSpec<'a> {
    pub(crate) crl: Option<&'a [String]>,
    pub(crate) mode: Option<CrlMode>,
    pub(crate) unknown_status: Option<UnknownStatus>,
}

/// nginx `ssl_verify_depth`: 1 unless given, never 0 (a chain always has
/// its leaf). `prefix` as in [`revocation`].
pub(crate) fn verify_depth(prefix: &str, depth: Option<u32>) -> Result<u32, ValidationError> {
    match depth.unwrap_or(1) {
        0 => Err(ValidationError::field(
            prefixed(prefix, "depth"),
            "must be at least 1",
        )),
        depth => Ok(depth),
    }
}

/// `None` without `crl`. A CRL naming one of `ca` as its issuer must be
/// signed by it. `prefix` prefixes the field names in errors (`client` gives
/// `client.crl[1]`; empty gives `crl[1]`).
pub(crate) fn revocation(
    prefix: &str,
    spec: RevocationSpec<'_>,
    ca: &[CertificateDer<'_>],
) -> Result<Option<Revocation>, ValidationError> {
    let named = |name: &str| prefixed(prefix, name);
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
    let revocation = Revocation {
        crls,
        summaries,
        mode: spec.mode.unwrap_or_default(),
        unknown_status: spec.unknown_status.unwrap_or_default(),
    };
    check_signers(&named("crl"), &revocation, ca)?;
    Ok(Some(revocation))
}

fn prefixed(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}
