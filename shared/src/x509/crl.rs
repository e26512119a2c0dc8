//! Certificate revocation lists (`-----BEGIN X509 CRL-----`): parsing, and
//! what an operator wants to know about one.
//!
//! Every CRL is parsed twice on purpose: by webpki, which the gateway uses to
//! check revocation (so that a CRL the admin API accepts is one the data plane
//! can use: webpki refuses delta and indirect CRLs, for example), and by
//! x509-parser for the summary.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateRevocationListDer;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use super::{dn, pem_error, X509Error};

/// What an operator (and a validation warning) wants to know about a CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlSummary {
    /// RFC 2253, as `openssl crl -nameopt RFC2253` prints it.
    pub issuer: String,
    /// `thisUpdate`, unix seconds.
    pub this_update: i64,
    /// `nextUpdate`, unix seconds; `None` when the CRL names none.
    pub next_update: Option<i64>,
    /// How many certificates it revokes.
    pub revoked: usize,
}

impl CrlSummary {
    pub fn from_der(der: &CertificateRevocationListDer<'_>) -> Result<CrlSummary, X509Error> {
        let crl = parse_x509_crl(der)?;
        Ok(CrlSummary {
            issuer: dn::rfc2253(crl.issuer()),
            this_update: crl.last_update().timestamp(),
            next_update: crl.next_update().map(|at| at.timestamp()),
            revoked: crl.iter_revoked_certificates().count(),
        })
    }

    /// Whether the issuer should have published a newer CRL by `now` (unix
    /// seconds).
    pub fn is_stale_at(&self, now: i64) -> bool {
        self.next_update.is_some_and(|next| now > next)
    }
}

/// Every `X509 CRL` block in `pem`, in order; at least one. Each must be a CRL
/// the gateway can check revocation with, and `pem` must hold no private key.
pub fn parse_crls(pem: &str) -> Result<Vec<CertificateRevocationListDer<'static>>, X509Error> {
    super::refuse_private_keys(pem, "CRLs")?;
    let crls = CertificateRevocationListDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if crls.is_empty() {
        return Err(X509Error::NoPem("X509 CRL"));
    }
    for crl in &crls {
        webpki::OwnedCertRevocationList::from_der(crl.as_ref())
            .map_err(|e| X509Error::Crl(format!("{e:?}")))?;
        parse_x509_crl(crl)?;
    }
    Ok(crls)
}

/// Parses one DER CRL, requiring that nothing trails it.
pub(crate) fn parse_x509_crl<'a>(
    der: &'a CertificateRevocationListDer<'_>,
) -> Result<CertificateRevocationList<'a>, X509Error> {
    match CertificateRevocationList::from_der(der.as_ref()) {
        Ok(([], crl)) => Ok(crl),
        Ok(_) => Err(X509Error::Crl("trailing data after the CRL".into())),
        Err(e) => Err(X509Error::Crl(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{
        CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer, KeyIdMethod,
        KeyPair, RevocationReason, RevokedCertParams, SerialNumber,
    };

    use super::*;

    fn crl_pem(revoked_serials: &[u64], next_update_days: i64) -> String {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "CRL CA");
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let issuer = Issuer::new(params, key);
        let now = time::OffsetDateTime::now_utc();
        let crl = CertificateRevocationListParams {
            this_update: now - time::Duration::days(1),
            next_update: now + time::Duration::days(next_update_days),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked_serials
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from(*serial),
                    revocation_time: now - time::Duration::hours(1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        crl.signed_by(&issuer).unwrap().pem().unwrap()
    }

    #[test]
    fn parses_and_summarises() {
        let pem = crl_pem(&[7, 9], 30);
        let crls = parse_crls(&format!("{pem}{pem}")).unwrap();
        assert_eq!(crls.len(), 2);
        let summary = CrlSummary::from_der(&crls[0]).unwrap();
        assert_eq!(summary.issuer, "CN=CRL CA");
        assert_eq!(summary.revoked, 2);
        let now = summary.this_update + 86_400;
        assert!(!summary.is_stale_at(now));
        assert!(summary.is_stale_at(now + 31 * 86_400));
    }

    #[test]
    fn refuses_what_is_not_a_crl() {
        assert_eq!(parse_crls(""), Err(X509Error::NoPem("X509 CRL")));
        let cert_only = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(parse_crls(cert_only), Err(X509Error::NoPem("X509 CRL")));
        let garbage = "-----BEGIN X509 CRL-----\nMAMCAQA=\n-----END X509 CRL-----\n";
        assert!(matches!(parse_crls(garbage), Err(X509Error::Crl(_))));
        let bad_base64 = "-----BEGIN X509 CRL-----\n!!!!\n-----END X509 CRL-----\n";
        assert!(matches!(parse_crls(bad_base64), Err(X509Error::Pem(_))));
    }
}
