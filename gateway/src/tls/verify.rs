//! Client-certificate verification at the handshake of one SSL object: its
//! `client` section (checked by a [`TrustSet`]), and the certificate
//! requests of routes that verify client certificates themselves.
//!
//! When `skip_mtls_uri_regex` makes the certificate optional, the handshake
//! must succeed even with an untrusted certificate (the proxy answers 400 on
//! the paths that need one). rustls offers no per-connection channel from a
//! verifier to the application, so in that mode the handshake only checks
//! the proof of possession, and [`ClientVerifier::verify`] runs once after the
//! handshake to record the verdict.
//!
//! The same holds when routes reachable on the object's SNIs carry
//! `client-cert-auth`: the handshake asks for a certificate (listing the
//! routes' CAs so that a client picks the right one), never fails on it, and
//! each route judges the certificate against its own trust set per request.
//! An object whose `client` section makes the certificate mandatory is left
//! as it is.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use shared::validate::ClientAuth;

use super::cert_error::ClientCertError;
use super::online::OnlineCheck;
use super::signature;
use super::trust::{TrustError, TrustSet};
use super::v1::V1Leaf;

/// How many distinct v1 certificates per SSL object are remembered for the
/// once-only warning; bounds the memory a stream of certificates can take.
const V1_WARNED_MAX: usize = 1024;

/// The client-certificate verifier of one SSL object.
pub(crate) struct ClientVerifier {
    ssl_id: Arc<str>,
    /// From the `client` section; `None` when the object has none and the
    /// handshake only asks for a certificate on behalf of routes that verify
    /// it themselves (`client-cert-auth`).
    trust: Option<TrustSet>,
    /// Subjects advertised in the CertificateRequest.
    hints: Vec<DistinguishedName>,
    mandatory: bool,
    algs: WebPkiSupportedAlgorithms,
    v1_warned: Mutex<HashSet<Vec<u8>>>,
}

impl ClientVerifier {
    /// The verifier for the `client` section `auth` and the CA names
    /// (DER `Name`s) of the routes on this object's SNIs that verify client
    /// certificates themselves. The handshake is mandatory only for a
    /// `client` section without `skip_mtls_uri_regex`, which then advertises
    /// its own CAs only: the routes' CAs would invite certificates it
    /// refuses.
    pub(crate) fn new(
        ssl_id: Arc<str>,
        auth: Option<&ClientAuth>,
        route_names: &[Vec<u8>],
        algs: WebPkiSupportedAlgorithms,
    ) -> Result<ClientVerifier, TrustError> {
        let trust = auth
            .map(|auth| {
                let online = auth.online_revocation.as_ref();
                TrustSet::new(&auth.ca, auth.depth, auth.revocation.as_ref(), online, algs)
            })
            .transpose()?;
        let mandatory = auth.is_some_and(|auth| auth.skip_mtls_uri_regex.is_none());
        let mut hints: Vec<DistinguishedName> = trust.iter().flat_map(TrustSet::names).collect();
        if !mandatory {
            for name in route_names {
                if !hints.iter().any(|hint| hint.as_ref() == name.as_slice()) {
                    hints.push(DistinguishedName::from(name.clone()));
                }
            }
        }
        Ok(ClientVerifier {
            ssl_id,
            trust,
            hints,
            mandatory,
            algs,
            v1_warned: Mutex::new(HashSet::new()),
        })
    }

    /// The online revocation check under `hard_fail`, which may have to be
    /// waited for after the handshake.
    pub(crate) fn hard_online(&self) -> Option<&OnlineCheck> {
        self.trust.as_ref()?.online().filter(|online| online.hard())
    }

    /// Whether the handshake refuses clients without a trusted certificate.
    pub(crate) fn mandatory(&self) -> bool {
        self.mandatory
    }

    /// Whether `end_entity` (with the `intermediates` the client sent)
    /// chains to one of the `client.ca` anchors within `client.depth` and is
    /// not revoked. Without a `client` section nothing is trusted here.
    pub(crate) fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), ClientCertError> {
        let trust = self.trust.as_ref().ok_or(ClientCertError::UnknownIssuer)?;
        if let Some(leaf) = trust.verify(end_entity, intermediates, now)? {
            self.warn_v1_once(leaf);
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
            .field("trust", &self.trust)
            .field("hints", &self.hints.len())
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
            match self.verify(end_entity, intermediates, now) {
                // Settled after the handshake, which cannot wait here.
                Ok(()) | Err(ClientCertError::RevocationPending) => {}
                Err(err) => return Err(err.into()),
            }
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
