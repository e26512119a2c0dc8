//! Client-certificate verification for one SSL object's `client` section.
//!
//! v3 chains go to webpki unchanged (client-auth key usage, path building
//! through the intermediates the client sent); `client.depth` is enforced on
//! the path webpki found. A v1 leaf, which webpki cannot parse, is checked by
//! [`super::v1`]. In both cases a certificate that is itself one of the trust
//! anchors is refused.
//!
//! When `skip_mtls_uri_regex` makes the certificate optional, the handshake
//! must succeed even with an untrusted certificate (the proxy answers 400 on
//! the paths that need one). rustls offers no per-connection channel from a
//! verifier to the application, so in that mode the handshake only checks
//! the proof of possession, and [`ClientVerifier::verify`] runs once after the
//! handshake to record the verdict.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use shared::validate::ClientAuth;
use thiserror::Error;
use webpki::{EndEntityCert, KeyUsage, VerifiedPath};

use super::signature;
use super::v1::{self, V1Issuer, V1Leaf};

/// How many distinct v1 certificates per SSL object are remembered for the
/// once-only warning; bounds the memory a stream of certificates can take.
const V1_WARNED_MAX: usize = 1024;

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
            other => CertificateError::Other(OtherError(Arc::new(other))),
        };
        rustls::Error::InvalidCertificate(cert_error)
    }
}

/// Why a `client` section cannot be turned into a verifier.
#[derive(Debug, Error)]
pub(crate) enum VerifierError {
    #[error("client.ca certificate {index} is not a usable trust anchor: {reason}")]
    Anchor { index: usize, reason: String },
    #[error("client.ca contains no certificate")]
    NoAnchor,
}

/// The client-certificate verifier of one SSL object.
pub(crate) struct ClientVerifier {
    ssl_id: Arc<str>,
    anchors: Vec<TrustAnchor<'static>>,
    anchor_ders: Vec<CertificateDer<'static>>,
    v1_issuers: Vec<V1Issuer>,
    /// Subjects advertised in the CertificateRequest.
    hints: Vec<DistinguishedName>,
    /// nginx `ssl_verify_depth`: certificates allowed above the leaf,
    /// the trust anchor included.
    depth: u32,
    mandatory: bool,
    algs: WebPkiSupportedAlgorithms,
    v1_warned: Mutex<HashSet<Vec<u8>>>,
}

impl ClientVerifier {
    pub(crate) fn new(
        ssl_id: Arc<str>,
        auth: &ClientAuth,
        algs: WebPkiSupportedAlgorithms,
    ) -> Result<ClientVerifier, VerifierError> {
        if auth.ca.is_empty() {
            return Err(VerifierError::NoAnchor);
        }
        let anchor_error = |index, reason: String| VerifierError::Anchor { index, reason };
        let mut anchors = Vec::with_capacity(auth.ca.len());
        let mut v1_issuers = Vec::with_capacity(auth.ca.len());
        for (index, der) in auth.ca.iter().enumerate() {
            let anchor = webpki::anchor_from_trusted_cert(der)
                .map_err(|e| anchor_error(index, e.to_string()))?;
            anchors.push(anchor.to_owned());
            v1_issuers.push(V1Issuer::from_ca(der).map_err(|e| anchor_error(index, e))?);
        }
        let hints = anchors
            .iter()
            .map(|anchor| DistinguishedName::in_sequence(anchor.subject.as_ref()))
            .collect();
        Ok(ClientVerifier {
            ssl_id,
            anchors,
            anchor_ders: auth.ca.clone(),
            v1_issuers,
            hints,
            depth: auth.depth,
            mandatory: auth.skip_mtls_uri_regex.is_none(),
            algs,
            v1_warned: Mutex::new(HashSet::new()),
        })
    }

    /// Whether the handshake refuses clients without a trusted certificate.
    pub(crate) fn mandatory(&self) -> bool {
        self.mandatory
    }

    /// Whether `end_entity` (with the `intermediates` the client sent, in any
    /// order, possibly including the CA itself) chains to a trust anchor
    /// within `client.depth`.
    pub(crate) fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), ClientCertError> {
        if self.anchor_ders.iter().any(|anchor| anchor == end_entity) {
            return Err(ClientCertError::AnchorAsLeaf);
        }
        match EndEntityCert::try_from(end_entity) {
            Ok(cert) => self.verify_v3(&cert, intermediates, now),
            Err(webpki::Error::UnsupportedCertVersion) => {
                self.check_depth(0)?;
                let leaf = v1::verify_leaf(end_entity, &self.v1_issuers, now)?;
                self.warn_v1_once(leaf);
                Ok(())
            }
            Err(err) => Err(err.into()),
        }
    }

    fn verify_v3(
        &self,
        cert: &EndEntityCert<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), ClientCertError> {
        if cert.subject() == cert.issuer() {
            return Err(ClientCertError::SelfSigned);
        }
        // Rejecting a path here makes webpki try the next one, so a client
        // that sends its CA along still gets the shortest path.
        let within_depth = |path: &VerifiedPath<'_>| {
            self.check_depth(path.intermediate_certificates().count())
                .map_err(|_| webpki::Error::MaximumPathDepthExceeded)
        };
        cert.verify_for_usage(
            self.algs.all,
            &self.anchors,
            intermediates,
            now,
            KeyUsage::client_auth(),
            None,
            Some(&within_depth),
        )?;
        Ok(())
    }

    /// A chain is the leaf, `intermediates` and the anchor: nginx's depth
    /// counts the certificates above the leaf.
    fn check_depth(&self, intermediates: usize) -> Result<(), ClientCertError> {
        let above_leaf = u64::try_from(intermediates)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        if above_leaf > u64::from(self.depth) {
            return Err(ClientCertError::ChainTooLong);
        }
        Ok(())
    }

    /// v1 certificates work but deserve reissuing; say so once per
    /// certificate and SSL object rather than on every connection.
    fn warn_v1_once(&self, leaf: V1Leaf) {
        let mut warned = self
            .v1_warned
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if warned.len() < V1_WARNED_MAX && warned.insert(leaf.identity) {
            tracing::warn!(
                ssl_id = %self.ssl_id,
                subject = %leaf.subject,
                serial = %leaf.serial,
                "accepted an X.509 v1 client certificate; it carries no extensions \
                 (key usage, basic constraints), consider reissuing it as v3"
            );
        }
    }
}

impl fmt::Debug for ClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientVerifier")
            .field("ssl_id", &self.ssl_id)
            .field("anchors", &self.anchors.len())
            .field("depth", &self.depth)
            .field("mandatory", &self.mandatory)
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Optional mode: the verdict is taken after the handshake, see the
        // module documentation.
        if self.mandatory {
            self.verify(end_entity, intermediates, now)?;
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        signature::verify_tls12(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        signature::verify_tls13(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
