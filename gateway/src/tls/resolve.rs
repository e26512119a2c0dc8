//! Server certificate selection for one SSL object.
//!
//! The keys are loaded with `CertifiedKey::new`, which (unlike
//! `with_single_cert` and `CertifiedKey::from_der`) does not parse the
//! certificate with webpki and so serves X.509 v1 certificates too; that the
//! key matches the certificate was checked when the object was validated.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use shared::validate::CertKeyPair;

/// Serves the first of an SSL object's certificates (`cert`, then each of
/// `certs`) whose key can make a signature the client accepts: with an RSA
/// and an ECDSA pair, an ECDSA-only client gets the ECDSA certificate.
#[derive(Debug)]
pub(crate) struct CertResolver {
    keys: Vec<Arc<CertifiedKey>>,
}

impl CertResolver {
    /// Loads every pair; `index` in the error names the pair that failed.
    pub(crate) fn new(
        pairs: &[CertKeyPair],
        provider: &CryptoProvider,
    ) -> Result<CertResolver, (usize, rustls::Error)> {
        let keys = pairs
            .iter()
            .enumerate()
            .map(|(index, pair)| certified_key(pair, provider).map_err(|e| (index, e)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CertResolver { keys })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn certified_key(
    pair: &CertKeyPair,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, rustls::Error> {
    let key = provider
        .key_provider
        .load_private_key(pair.key.clone_key())?;
    Ok(Arc::new(CertifiedKey::new(pair.chain.clone(), key)))
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let offered = hello.signature_schemes();
        self.keys
            .iter()
            .find(|key| key.key.choose_scheme(offered).is_some())
            .cloned()
    }
}
