//! Certificate selection by signature scheme: an SSL object's server
//! certificates, and the client certificates an upstream TLS profile
//! presents.
//!
//! The keys are loaded with `CertifiedKey::new`, which (unlike
//! `with_single_cert` and `CertifiedKey::from_der`) does not parse the
//! certificate with webpki and so serves X.509 v1 certificates too; that the
//! key matches the certificate was checked when the object was validated.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::stapling::KeySlot;

/// Presents the first of its certificates whose key can make a signature the
/// peer accepts: with an RSA and an ECDSA pair, an ECDSA-only peer gets the
/// ECDSA certificate.
#[derive(Debug)]
pub(crate) struct CertResolver {
    /// Swappable, so that a stapled OCSP response can be replaced without
    /// rebuilding the configuration (see `stapling`).
    keys: Vec<KeySlot>,
}

impl CertResolver {
    /// Loads every (chain, key) pair, in order; `index` in the error names
    /// the pair that failed.
    pub(crate) fn new<'a>(
        pairs: impl IntoIterator<Item = (&'a [CertificateDer<'static>], &'a PrivateKeyDer<'static>)>,
        provider: &CryptoProvider,
    ) -> Result<CertResolver, (usize, rustls::Error)> {
        let keys = pairs
            .into_iter()
            .enumerate()
            .map(|(index, (chain, key))| {
                let key = provider
                    .key_provider
                    .load_private_key(key.clone_key())
                    .map_err(|e| (index, e))?;
                Ok(Arc::new(ArcSwap::from_pointee(CertifiedKey::new(
                    chain.to_vec(),
                    key,
                ))))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CertResolver { keys })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The certificates, in the order of the pairs.
    pub(crate) fn slots(&self) -> &[KeySlot] {
        &self.keys
    }

    fn choose(&self, offered: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.keys
            .iter()
            .map(|slot| slot.load_full())
            .find(|key| key.key.choose_scheme(offered).is_some())
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.choose(hello.signature_schemes())
    }
}

impl ResolvesClientCert for CertResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.choose(sigschemes)
    }

    fn has_certs(&self) -> bool {
        !self.is_empty()
    }
}
