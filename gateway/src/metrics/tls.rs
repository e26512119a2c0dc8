//! TLS metrics: handshakes by SSL object, protocol and kind; refusals by
//! reason; client-certificate verdicts of route plugins.

use rustls::{CertificateError, Error as TlsError};

use super::{enabled, metrics};
use crate::context::TlsInfo;
use crate::tls::{AcceptError, ClientCertError};

/// Why a handshake did not complete, as an operator asks it: a small fixed
/// set, usable as a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeFailure {
    NoCertificate,
    UnknownCa,
    Expired,
    Revoked,
    /// `client.revocation` in `hard_fail` found no answer in time.
    RevocationUnknown,
    BadSignature,
    DepthExceeded,
    NoSni,
    UnknownSni,
    Protocol,
    Timeout,
    Other,
}

impl HandshakeFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeFailure::NoCertificate => "no_certificate",
            HandshakeFailure::UnknownCa => "unknown_ca",
            HandshakeFailure::Expired => "expired",
            HandshakeFailure::Revoked => "revoked",
            HandshakeFailure::RevocationUnknown => "revocation_unknown",
            HandshakeFailure::BadSignature => "bad_signature",
            HandshakeFailure::DepthExceeded => "depth_exceeded",
            HandshakeFailure::NoSni => "no_sni",
            HandshakeFailure::UnknownSni => "unknown_sni",
            HandshakeFailure::Protocol => "protocol",
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Other => "other",
        }
    }

    /// The reason of a failed [`crate::tls::accept`].
    pub fn of(err: &AcceptError) -> HandshakeFailure {
        match err {
            AcceptError::NoSni => HandshakeFailure::NoSni,
            AcceptError::UnknownSni(_) => HandshakeFailure::UnknownSni,
            AcceptError::ClientHello(_) => HandshakeFailure::Protocol,
            AcceptError::Handshake { source, .. } => Self::of_tls(source),
            AcceptError::Revoked { .. } => HandshakeFailure::Revoked,
            AcceptError::RevocationUnknown { .. } => HandshakeFailure::RevocationUnknown,
            AcceptError::Io(_) | AcceptError::PeerCertificate { .. } => HandshakeFailure::Other,
        }
    }

    fn of_tls(err: &TlsError) -> HandshakeFailure {
        match err {
            TlsError::NoCertificatesPresented => HandshakeFailure::NoCertificate,
            TlsError::InvalidCertificate(cert) => Self::of_certificate(cert),
            TlsError::InappropriateMessage { .. }
            | TlsError::InappropriateHandshakeMessage { .. }
            | TlsError::InvalidMessage(_)
            | TlsError::PeerIncompatible(_)
            | TlsError::PeerMisbehaved(_)
            | TlsError::DecryptError
            | TlsError::NoApplicationProtocol
            | TlsError::AlertReceived(_) => HandshakeFailure::Protocol,
            _ => HandshakeFailure::Other,
        }
    }

    fn of_certificate(err: &CertificateError) -> HandshakeFailure {
        match err {
            CertificateError::UnknownIssuer => HandshakeFailure::UnknownCa,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                HandshakeFailure::Expired
            }
            CertificateError::Revoked => HandshakeFailure::Revoked,
            CertificateError::BadSignature => HandshakeFailure::BadSignature,
            CertificateError::Other(other) => other
                .0
                .downcast_ref::<ClientCertError>()
                .map_or(HandshakeFailure::Other, Self::of_client_cert),
            _ => HandshakeFailure::Other,
        }
    }

    /// The reason a client certificate is not trusted.
    pub(crate) fn of_client_cert(err: &ClientCertError) -> HandshakeFailure {
        match err {
            ClientCertError::UnknownIssuer
            | ClientCertError::SelfSigned
            | ClientCertError::AnchorAsLeaf
            | ClientCertError::InvalidCa => HandshakeFailure::UnknownCa,
            ClientCertError::Expired => HandshakeFailure::Expired,
            ClientCertError::Revoked => HandshakeFailure::Revoked,
            ClientCertError::BadSignature => HandshakeFailure::BadSignature,
            ClientCertError::ChainTooLong => HandshakeFailure::DepthExceeded,
            _ => HandshakeFailure::Other,
        }
    }
}

/// Counts a completed handshake.
pub(crate) fn handshake_completed(info: &TlsInfo) {
    if !enabled() {
        return;
    }
    let kind = if info.resumed { "resumed" } else { "full" };
    metrics()
        .handshakes
        .with_label_values(&[&info.ssl_id, info.protocol, kind])
        .inc();
}

/// Counts a refused or failed handshake.
pub(crate) fn handshake_failed(reason: HandshakeFailure, ssl_id: &str) {
    if enabled() {
        metrics()
            .handshake_failures
            .with_label_values(&[reason.as_str(), ssl_id])
            .inc();
    }
}

/// A route plugin's judgement of the client certificate.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Verdict {
    Allowed,
    Refused(&'static str),
}

/// Counts a verdict of `plugin` (`mtls-auth`, `mtls-acl`,
/// `client-cert-auth`) on `route`.
pub(crate) fn client_cert_verdict(plugin: &str, route: &str, verdict: Verdict) {
    if !enabled() {
        return;
    }
    let (verdict, reason) = match verdict {
        Verdict::Allowed => ("allowed", ""),
        Verdict::Refused(reason) => ("refused", reason),
    };
    metrics()
        .client_cert_verdicts
        .with_label_values(&[plugin, route, verdict, reason])
        .inc();
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::OtherError;

    use super::*;

    fn handshake(source: TlsError) -> AcceptError {
        AcceptError::Handshake {
            ssl_id: Arc::from("s1"),
            source,
        }
    }

    #[test]
    fn refusals_are_named_by_reason() {
        let cases = [
            (AcceptError::NoSni, "no_sni"),
            (
                AcceptError::Revoked {
                    ssl_id: Arc::from("s1"),
                },
                "revoked",
            ),
            (
                AcceptError::RevocationUnknown {
                    ssl_id: Arc::from("s1"),
                },
                "revocation_unknown",
            ),
            (AcceptError::UnknownSni("x.test".into()), "unknown_sni"),
            (
                handshake(TlsError::NoCertificatesPresented),
                "no_certificate",
            ),
            (
                handshake(ClientCertError::UnknownIssuer.into()),
                "unknown_ca",
            ),
            (handshake(ClientCertError::Expired.into()), "expired"),
            (handshake(ClientCertError::Revoked.into()), "revoked"),
            (
                handshake(ClientCertError::BadSignature.into()),
                "bad_signature",
            ),
            (
                handshake(ClientCertError::ChainTooLong.into()),
                "depth_exceeded",
            ),
            (handshake(TlsError::NoApplicationProtocol), "protocol"),
            (
                handshake(TlsError::InvalidCertificate(CertificateError::Other(
                    OtherError(Arc::new(std::io::Error::other("x"))),
                ))),
                "other",
            ),
        ];
        for (err, reason) in cases {
            assert_eq!(HandshakeFailure::of(&err).as_str(), reason, "{err}");
        }
    }
}
