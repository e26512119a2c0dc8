//! OCSP (RFC 6960) for one certificate: the request naming it, and the
//! checks a response must pass before it is believed (or stapled).
//!
//! A response is accepted when it is `successful` and `basic`, carries a
//! single response for this very certificate (issuer name and key hashes,
//! serial), is current (`thisUpdate` not in the future, `nextUpdate` not
//! past), and is signed either by the issuer itself or by a responder
//! certificate the issuer signed for OCSP (`id-kp-OCSPSigning`).

mod fetch;
#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime};

use const_oid::db::rfc5280::ID_KP_OCSP_SIGNING;
use const_oid::db::rfc6960::ID_PKIX_OCSP_BASIC;
use der::{Decode, Encode};
use rustls::pki_types::SignatureVerificationAlgorithm;
use rustls_pki_types::CertificateDer;
use sha1::Sha1;
use spki::AlgorithmIdentifierOwned;
use thiserror::Error;
use x509_cert::ext::pkix::ExtendedKeyUsage;
use x509_cert::Certificate;
use x509_ocsp::builder::OcspRequestBuilder;
use x509_ocsp::{BasicOcspResponse, CertId, CertStatus, OcspResponse, OcspResponseStatus, Request};

pub(crate) use fetch::{get, post, FetchError};

/// A `thisUpdate` this far in the future still counts (clock skew).
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Why an OCSP exchange gave no usable answer.
#[derive(Debug, Error)]
pub(crate) enum OcspError {
    #[error("cannot encode the OCSP request: {0}")]
    Request(String),
    #[error("the OCSP response is not DER: {0}")]
    Malformed(String),
    #[error("the responder answered {0}")]
    Status(&'static str),
    #[error("the OCSP response is not a basic response")]
    NotBasic,
    #[error("the OCSP response holds no answer for this certificate")]
    NotForThisCertificate,
    #[error("the OCSP response is not signed by the issuer nor by a responder it authorised")]
    Signature,
    #[error("the OCSP response is not current (thisUpdate in the future or nextUpdate past)")]
    NotCurrent,
}

/// What the responder says about the certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CertState {
    Good,
    Revoked,
    Unknown,
}

/// A response that passed every check.
#[derive(Clone, Debug)]
pub(crate) struct Checked {
    pub(crate) state: CertState,
    pub(crate) next_update: Option<SystemTime>,
}

/// One certificate's OCSP identity and the request asking for its status.
pub(crate) struct OcspTarget {
    pub(crate) url: String,
    cert_id: CertId,
    request: Vec<u8>,
    issuer: Certificate,
}

impl std::fmt::Debug for OcspTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcspTarget")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl OcspTarget {
    /// The target for `leaf`, issued by `issuer`, asked of `url`.
    pub(crate) fn new(
        leaf: &CertificateDer<'_>,
        issuer: &CertificateDer<'_>,
        url: &str,
    ) -> Result<OcspTarget, OcspError> {
        let request_error = |e: &dyn std::fmt::Display| OcspError::Request(e.to_string());
        let leaf = Certificate::from_der(leaf).map_err(|e| request_error(&e))?;
        let issuer = Certificate::from_der(issuer).map_err(|e| request_error(&e))?;
        let cert_id = CertId::from_cert::<Sha1>(&issuer, &leaf).map_err(|e| request_error(&e))?;
        // No nonce: responders that pre-sign (most CAs) ignore it, and a
        // stapled response is shared by every client anyway.
        let request = OcspRequestBuilder::default()
            .with_request(Request::new(cert_id.clone()))
            .build()
            .to_der()
            .map_err(|e| request_error(&e))?;
        Ok(OcspTarget {
            url: url.to_owned(),
            cert_id,
            request,
            issuer,
        })
    }

    /// The DER request to POST to [`OcspTarget::url`].
    pub(crate) fn request(&self) -> &[u8] {
        &self.request
    }

    /// Checks a DER response at `now`; see the module documentation.
    pub(crate) fn check(&self, der: &[u8], now: SystemTime) -> Result<Checked, OcspError> {
        let malformed = |e: der::Error| OcspError::Malformed(e.to_string());
        let response = OcspResponse::from_der(der).map_err(malformed)?;
        if response.response_status != OcspResponseStatus::Successful {
            return Err(OcspError::Status(status_name(response.response_status)));
        }
        let bytes = response.response_bytes.ok_or(OcspError::NotBasic)?;
        if bytes.response_type != ID_PKIX_OCSP_BASIC {
            return Err(OcspError::NotBasic);
        }
        let basic = BasicOcspResponse::from_der(bytes.response.as_bytes()).map_err(malformed)?;
        let single = basic
            .tbs_response_data
            .responses
            .iter()
            .find(|single| same_certificate(&single.cert_id, &self.cert_id))
            .ok_or(OcspError::NotForThisCertificate)?;
        self.verify_signature(&basic, now)?;
        let this_update = single.this_update.0.to_system_time();
        let next_update = single.next_update.map(|t| t.0.to_system_time());
        if this_update > now + CLOCK_SKEW || next_update.is_some_and(|next| next <= now) {
            return Err(OcspError::NotCurrent);
        }
        let state = match single.cert_status {
            CertStatus::Good(_) => CertState::Good,
            CertStatus::Revoked(_) => CertState::Revoked,
            CertStatus::Unknown(_) => CertState::Unknown,
        };
        Ok(Checked { state, next_update })
    }

    /// Signed by the issuer, or by a responder certificate in the response
    /// that the issuer signed for OCSP signing and that is valid at `now`.
    fn verify_signature(
        &self,
        basic: &BasicOcspResponse,
        now: SystemTime,
    ) -> Result<(), OcspError> {
        let tbs = basic
            .tbs_response_data
            .to_der()
            .map_err(|e| OcspError::Malformed(e.to_string()))?;
        let signature = basic.signature.raw_bytes();
        let signed_by =
            |cert: &Certificate| verify(cert, &basic.signature_algorithm, &tbs, signature);
        if signed_by(&self.issuer) {
            return Ok(());
        }
        let delegated = basic
            .certs
            .iter()
            .flatten()
            .any(|responder| self.authorised(responder, now) && signed_by(responder));
        if delegated {
            Ok(())
        } else {
            Err(OcspError::Signature)
        }
    }

    /// Whether the issuer made `responder` an OCSP responder valid at `now`.
    fn authorised(&self, responder: &Certificate, now: SystemTime) -> bool {
        let tbs = &responder.tbs_certificate;
        let validity = &tbs.validity;
        let current = validity.not_before.to_system_time() <= now
            && now <= validity.not_after.to_system_time();
        let for_ocsp = tbs.extensions.iter().flatten().any(|ext| {
            ext.extn_id == const_oid::db::rfc5280::ID_CE_EXT_KEY_USAGE
                && ExtendedKeyUsage::from_der(ext.extn_value.as_bytes())
                    .is_ok_and(|eku| eku.0.contains(&ID_KP_OCSP_SIGNING))
        });
        let Ok(responder_tbs) = tbs.to_der() else {
            return false;
        };
        current
            && for_ocsp
            && tbs.issuer == self.issuer.tbs_certificate.subject
            && verify(
                &self.issuer,
                &responder.signature_algorithm,
                &responder_tbs,
                responder.signature.raw_bytes(),
            )
    }
}

/// The same certificate: hash algorithm, issuer hashes and serial.
fn same_certificate(a: &CertId, b: &CertId) -> bool {
    a.hash_algorithm.oid == b.hash_algorithm.oid
        && a.issuer_name_hash == b.issuer_name_hash
        && a.issuer_key_hash == b.issuer_key_hash
        && a.serial_number == b.serial_number
}

/// Whether `signature` over `message` verifies with `signer`'s key, by any
/// algorithm of the data plane's provider that matches both the signature
/// algorithm and the key's.
fn verify(
    signer: &Certificate,
    algorithm: &AlgorithmIdentifierOwned,
    message: &[u8],
    signature: &[u8],
) -> bool {
    let spki = &signer.tbs_certificate.subject_public_key_info;
    let (Some(signature_id), Some(key_id)) = (alg_id(algorithm), alg_id(&spki.algorithm)) else {
        return false;
    };
    let key = spki.subject_public_key.raw_bytes();
    let algs: &[&dyn SignatureVerificationAlgorithm] =
        super::provider().signature_verification_algorithms.all;
    algs.iter()
        .filter(|alg| {
            alg.signature_alg_id().as_ref() == signature_id.as_slice()
                && alg.public_key_alg_id().as_ref() == key_id.as_slice()
        })
        .any(|alg| alg.verify_signature(key, message, signature).is_ok())
}

/// An AlgorithmIdentifier's DER content (without its SEQUENCE header), as
/// `pki_types::AlgorithmIdentifier` holds it.
fn alg_id(alg: &AlgorithmIdentifierOwned) -> Option<Vec<u8>> {
    let mut out = alg.oid.to_der().ok()?;
    if let Some(parameters) = &alg.parameters {
        out.extend(parameters.to_der().ok()?);
    }
    Some(out)
}

fn status_name(status: OcspResponseStatus) -> &'static str {
    match status {
        OcspResponseStatus::Successful => "successful",
        OcspResponseStatus::MalformedRequest => "malformedRequest",
        OcspResponseStatus::InternalError => "internalError",
        OcspResponseStatus::TryLater => "tryLater",
        OcspResponseStatus::SigRequired => "sigRequired",
        OcspResponseStatus::Unauthorized => "unauthorized",
    }
}
