//! A set of trusted issuers of client certificates, with its depth limit
//! and revocation lists: what an SSL object's `client` section verifies at
//! the handshake, and what a route's `client-cert-auth` verifies per request.
//!
//! v3 chains go to webpki unchanged (client-auth key usage, path building
//! through the intermediates the client sent, CRLs); the depth limit is
//! enforced on the path webpki found. A v1 leaf, which webpki cannot parse,
//! is checked by [`super::v1`] and its revocation by [`Crls::check_v1`]. In
//! both cases a certificate that is itself one of the trust anchors is
//! refused.
//!
//! Built once per configuration change; verifying allocates nothing but
//! webpki's path-building state and, with CRLs, the slice of references
//! through which webpki borrows them.

use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::DistinguishedName;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use shared::validate::{OnlineRevocation, Revocation};
use thiserror::Error;
use webpki::{CertRevocationList, EndEntityCert, KeyUsage, VerifiedPath};

use super::cert_error::ClientCertError;
use super::online::OnlineCheck;
use super::revocation::Crls;
use super::v1::{self, V1Issuer, V1Leaf};

/// Why a trust set cannot be built from its configuration.
#[derive(Debug, Error)]
pub enum TrustError {
    #[error("CA certificate #{index} is not a usable trust anchor: {source}")]
    Anchor {
        index: usize,
        #[source]
        source: AnchorError,
    },
    #[error("no CA certificate")]
    NoAnchor,
    #[error("CRL #{index} cannot be used: {reason}")]
    Crl { index: usize, reason: String },
}

/// Why one CA certificate cannot anchor client chains.
#[derive(Debug, Error)]
pub enum AnchorError {
    #[error(transparent)]
    Webpki(#[from] webpki::Error),
    /// webpki took it, but it does not parse as X.509 for the v1-leaf check.
    #[error(transparent)]
    X509(#[from] x509_parser::nom::Err<x509_parser::error::X509Error>),
}

/// Trusted issuers, depth and CRLs.
pub(crate) struct TrustSet {
    anchors: Vec<TrustAnchor<'static>>,
    anchor_ders: Vec<CertificateDer<'static>>,
    v1_issuers: Vec<V1Issuer>,
    /// nginx `ssl_verify_depth`: certificates allowed above the leaf, the
    /// trust anchor included.
    depth: u32,
    crls: Option<Crls>,
    online: Option<OnlineCheck>,
    algs: WebPkiSupportedAlgorithms,
}

impl TrustSet {
    pub(crate) fn new(
        ca: &[CertificateDer<'static>],
        depth: u32,
        revocation: Option<&Revocation>,
        online: Option<&OnlineRevocation>,
        algs: WebPkiSupportedAlgorithms,
    ) -> Result<TrustSet, TrustError> {
        if ca.is_empty() {
            return Err(TrustError::NoAnchor);
        }
        let anchor_error = |index, source: AnchorError| TrustError::Anchor { index, source };
        let mut anchors = Vec::with_capacity(ca.len());
        let mut v1_issuers = Vec::with_capacity(ca.len());
        for (index, der) in ca.iter().enumerate() {
            let anchor =
                webpki::anchor_from_trusted_cert(der).map_err(|e| anchor_error(index, e.into()))?;
            anchors.push(anchor.to_owned());
            v1_issuers.push(V1Issuer::from_ca(der).map_err(|e| anchor_error(index, e.into()))?);
        }
        let crls = match revocation {
            Some(revocation) => Crls::new(revocation, ca)
                .map_err(|(index, reason)| TrustError::Crl { index, reason })?,
            None => None,
        };
        Ok(TrustSet {
            anchors,
            anchor_ders: ca.to_vec(),
            v1_issuers,
            depth,
            crls,
            online: online.map(OnlineCheck::new),
            algs,
        })
    }

    /// The subjects of the trust anchors, as a CertificateRequest lists
    /// them.
    pub(crate) fn names(&self) -> impl Iterator<Item = DistinguishedName> + '_ {
        self.anchors
            .iter()
            .map(|anchor| DistinguishedName::in_sequence(anchor.subject.as_ref()))
    }

    /// Whether `end_entity` (with the `intermediates` the client sent, in any
    /// order, possibly including the CA itself) chains to a trust anchor
    /// within the depth and is not revoked. A v1 leaf that passes is
    /// returned, for the caller to log.
    pub(crate) fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<Option<V1Leaf>, ClientCertError> {
        if self.anchor_ders.iter().any(|anchor| anchor == end_entity) {
            return Err(ClientCertError::AnchorAsLeaf);
        }
        match EndEntityCert::try_from(end_entity) {
            Ok(cert) => self
                .verify_v3(end_entity, &cert, intermediates, now)
                .map(|()| None),
            Err(webpki::Error::UnsupportedCertVersion) => {
                self.check_depth(0)?;
                let leaf = v1::verify_leaf(end_entity, &self.v1_issuers, now)?;
                if let Some(crls) = &self.crls {
                    crls.check_v1(end_entity, now)?;
                }
                // No extensions: nowhere to ask online.
                if self.online.as_ref().is_some_and(OnlineCheck::hard) {
                    return Err(ClientCertError::UnknownRevocationStatus);
                }
                Ok(Some(leaf))
            }
            Err(err) => Err(err.into()),
        }
    }

    fn verify_v3(
        &self,
        der: &CertificateDer<'_>,
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
        let lists: Vec<&CertRevocationList<'_>> = self.crls.iter().flat_map(Crls::lists).collect();
        let revocation = self.crls.as_ref().and_then(|crls| crls.options(&lists));
        let path = cert.verify_for_usage(
            self.algs.all,
            &self.anchors,
            intermediates,
            now,
            KeyUsage::client_auth(),
            revocation,
            Some(&within_depth),
        )?;
        match &self.online {
            Some(online) => online.check(&self.path_ders(der, &path)),
            None => Ok(()),
        }
    }

    /// The verified path as DER (borrowed): leaf, intermediates, anchor.
    fn path_ders<'a>(
        &'a self,
        leaf: &'a CertificateDer<'_>,
        path: &'a VerifiedPath<'a>,
    ) -> Vec<CertificateDer<'a>> {
        let anchor = self
            .anchors
            .iter()
            .position(|anchor| std::ptr::eq(anchor, path.anchor()))
            .and_then(|index| self.anchor_ders.get(index));
        std::iter::once(CertificateDer::from(leaf.as_ref()))
            .chain(path.intermediate_certificates().map(|cert| cert.der()))
            .chain(anchor.map(|der| CertificateDer::from(der.as_ref())))
            .collect()
    }

    /// The online revocation check, when configured.
    pub(crate) fn online(&self) -> Option<&OnlineCheck> {
        self.online.as_ref()
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
}

impl std::fmt::Debug for TrustSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustSet")
            .field("anchors", &self.anchors.len())
            .field("depth", &self.depth)
            .field("crls", &self.crls.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
