//! Handshake signatures (`CertificateVerify`) made with a peer's certificate
//! key.
//!
//! rustls's helpers parse the certificate with webpki, which refuses X.509 v1
//! certificates; for those the key is taken from the certificate with
//! x509-parser and checked as a raw public key. v3 certificates go through
//! rustls's own functions unchanged. [`AnyServerCert`], the upstream verifier
//! of `tls.verify: false`, still checks them.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{self, WebPkiSupportedAlgorithms};
use rustls::{CertificateError, DigitallySignedStruct, Error, PeerMisbehaved, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
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

/// Accepts any server certificate (upstream `tls.verify: false`). The
/// handshake signature is still checked against the presented certificate's
/// key (v1 certificates included), so the peer at least holds that key.
#[derive(Debug)]
pub(crate) struct AnyServerCert {
    algs: WebPkiSupportedAlgorithms,
    /// Offered to the server; every scheme of `algs` unless narrowed.
    schemes: Vec<SignatureScheme>,
}

impl AnyServerCert {
    pub(crate) fn new(algs: WebPkiSupportedAlgorithms) -> AnyServerCert {
        AnyServerCert {
            algs,
            schemes: algs.supported_schemes(),
        }
    }

    /// The same verifier offering only `schemes`.
    #[cfg(test)]
    pub(crate) fn offering(mut self, schemes: Vec<SignatureScheme>) -> AnyServerCert {
        self.schemes = schemes;
        self
    }
}

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}
