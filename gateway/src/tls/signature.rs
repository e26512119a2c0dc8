//! Handshake signatures (`CertificateVerify`) made with a peer's certificate
//! key.
//!
//! rustls's helpers parse the certificate with webpki, which refuses X.509 v1
//! certificates; for those the key is taken from the certificate with
//! x509-parser and checked as a raw public key. v3 certificates go through
//! rustls's own functions unchanged.

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{self, WebPkiSupportedAlgorithms};
use rustls::{CertificateError, DigitallySignedStruct, Error, PeerMisbehaved};
use rustls_pki_types::{CertificateDer, SubjectPublicKeyInfoDer};
use x509_parser::prelude::{FromDer, X509Certificate};

/// TLS 1.2 `CertificateVerify` (client) or `ServerKeyExchange` (server).
pub(crate) fn verify_tls12(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algs: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, Error> {
    match v1_public_key(cert)? {
        None => crypto::verify_tls12_signature(message, cert, dss, algs),
        Some(spki) => verify_tls12_with_raw_key(message, &spki, dss, algs),
    }
}

/// TLS 1.3 `CertificateVerify`.
pub(crate) fn verify_tls13(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algs: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, Error> {
    match v1_public_key(cert)? {
        None => crypto::verify_tls13_signature(message, cert, dss, algs),
        Some(spki) => crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, algs),
    }
}

/// The certificate's public key when it is one webpki cannot parse because of
/// its version; `None` for the certificates webpki handles itself.
fn v1_public_key(
    cert: &CertificateDer<'_>,
) -> Result<Option<SubjectPublicKeyInfoDer<'static>>, Error> {
    match webpki::EndEntityCert::try_from(cert) {
        Ok(_) => Ok(None),
        Err(webpki::Error::UnsupportedCertVersion) => {
            let (_, parsed) = X509Certificate::from_der(cert.as_ref())
                .map_err(|_| Error::from(CertificateError::BadEncoding))?;
            Ok(Some(parsed.public_key().raw.to_vec().into()))
        }
        Err(_) => Err(CertificateError::BadEncoding.into()),
    }
}

/// TLS 1.2 does not tie a signature scheme to one algorithm (ECDSA curves),
/// so every algorithm mapped to the scheme is tried, as rustls does.
fn verify_tls12_with_raw_key(
    message: &[u8],
    spki: &SubjectPublicKeyInfoDer<'_>,
    dss: &DigitallySignedStruct,
    algs: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, Error> {
    let key = webpki::RawPublicKeyEntity::try_from(spki)
        .map_err(|_| Error::from(CertificateError::BadEncoding))?;
    let candidates = algs
        .mapping
        .iter()
        .find(|(scheme, _)| *scheme == dss.scheme)
        .map(|(_, candidates)| *candidates)
        .ok_or(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme)?;
    candidates
        .iter()
        .find(|alg| {
            key.verify_signature(**alg, message, dss.signature())
                .is_ok()
        })
        .map(|_| HandshakeSignatureValid::assertion())
        .ok_or_else(|| CertificateError::BadSignature.into())
}
