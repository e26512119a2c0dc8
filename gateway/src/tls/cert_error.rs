//! Why a client certificate is not trusted: the verdict every step of
//! verification (chain, v1 leaf, CRL, online check) may reach, apart from
//! the verifier that runs the steps.

use std::sync::Arc;

use rustls::{CertificateError, OtherError};
use thiserror::Error;

/// Why a client certificate is not trusted. The messages are OpenSSL's, since
/// they surface in `$ssl_client_verify` as `FAILED:<reason>`, as with nginx.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub(crate) enum ClientCertError {
    #[error("unable to get local issuer certificate")]
    UnknownIssuer,
    #[error("certificate signature failure")]
    BadSignature,
    #[error("certificate has expired")]
    Expired,
    #[error("certificate is not yet valid")]
    NotYetValid,
    /// The chain needs more certificates above the leaf than `client.depth`.
    #[error("certificate chain too long")]
    ChainTooLong,
    #[error("self-signed certificate")]
    SelfSigned,
    #[error("CA certificate used as a client certificate")]
    AnchorAsLeaf,
    #[error("unsupported certificate purpose")]
    UnsupportedPurpose,
    #[error("invalid CA certificate")]
    InvalidCa,
    #[error("malformed certificate: {0}")]
    Malformed(String),
    #[error("certificate revoked")]
    Revoked,
    /// A CRL check was required but no CRL of the issuer was configured.
    #[error("unable to get certificate CRL")]
    UnknownRevocationStatus,
    #[error("CRL has expired")]
    CrlExpired,
    #[error("CRL signature failure")]
    CrlSignature,
    /// `revocation.mode: hard_fail` and no answer cached yet: the fetch has
    /// started, the handshake waits for it afterwards (`tls::accept`).
    #[error("revocation status not yet known")]
    RevocationPending,
    #[error("certificate rejected: {0}")]
    Rejected(String),
}

impl From<webpki::Error> for ClientCertError {
    fn from(err: webpki::Error) -> Self {
        use webpki::Error as E;
        match err {
            E::UnknownIssuer => ClientCertError::UnknownIssuer,
            E::InvalidSignatureForPublicKey => ClientCertError::BadSignature,
            E::CertExpired { .. } => ClientCertError::Expired,
            E::CertNotValidYet { .. } => ClientCertError::NotYetValid,
            E::MaximumPathDepthExceeded => ClientCertError::ChainTooLong,
            E::RequiredEkuNotFoundContext(_) | E::CaUsedAsEndEntity => {
                ClientCertError::UnsupportedPurpose
            }
            // Reached only for intermediates: a v1 leaf never gets here.
            E::UnsupportedCertVersion | E::EndEntityUsedAsCa => ClientCertError::InvalidCa,
            E::BadDer | E::BadDerTime | E::TrailingData(_) | E::InvalidCertValidity => {
                ClientCertError::Malformed(err.to_string())
            }
            E::CertRevoked => ClientCertError::Revoked,
            E::UnknownRevocationStatus => ClientCertError::UnknownRevocationStatus,
            E::CrlExpired { .. } => ClientCertError::CrlExpired,
            E::InvalidCrlSignatureForPublicKey => ClientCertError::CrlSignature,
            other => ClientCertError::Rejected(other.to_string()),
        }
    }
}

impl From<ClientCertError> for rustls::Error {
    /// Keeps rustls's own variants where they exist: they choose the alert
    /// the client sees (`unknown_ca`, `certificate_expired`, ...).
    fn from(err: ClientCertError) -> Self {
        let cert_error = match err {
            ClientCertError::UnknownIssuer => CertificateError::UnknownIssuer,
            ClientCertError::BadSignature => CertificateError::BadSignature,
            ClientCertError::Expired => CertificateError::Expired,
            ClientCertError::NotYetValid => CertificateError::NotValidYet,
            ClientCertError::UnsupportedPurpose => CertificateError::InvalidPurpose,
            ClientCertError::Malformed(_) => CertificateError::BadEncoding,
            ClientCertError::Revoked => CertificateError::Revoked,
            ClientCertError::UnknownRevocationStatus => CertificateError::UnknownRevocationStatus,
            ClientCertError::CrlExpired => CertificateError::ExpiredRevocationList,
            other => CertificateError::Other(OtherError(Arc::new(other))),
        };
        rustls::Error::InvalidCertificate(cert_error)
    }
}
