//! `deployment.admin.tls`: the admin listener's rustls configuration, rebuilt
//! whenever its certificate files are rotated.
//!
//! The whole `ServerConfig` is rebuilt per change (certificate, key or
//! client CA), never per connection; each handshake takes the newest one.
//! A fresh configuration also means a fresh session cache, so a session
//! resumed after a CA rotation was verified against the new CA.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use shared::certfile::{CertFileError, Reloading, TlsMaterial};

/// The admin listener's TLS configuration, following its files.
#[derive(Clone)]
pub struct AdminTls(Reloading<ServerConfig>);

impl AdminTls {
    /// Loads the configured files (an error names the file and the reason)
    /// and follows them from then on. Needs a tokio runtime.
    pub fn load(config: &shared::config::AdminTls) -> Result<AdminTls, CertFileError> {
        Reloading::start(config.files(), server_config).map(AdminTls)
    }

    /// The configuration for the next handshake.
    pub(crate) fn current(&self) -> Arc<ServerConfig> {
        self.0.current()
    }
}

/// One version of the files as a rustls configuration: HTTPS only, and a
/// client certificate signed by the `client_ca` required when one is set.
pub(crate) fn server_config(material: &TlsMaterial) -> Result<ServerConfig, CertFileError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certified = certified_key(material, &provider)?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| material.rejected(e))?;
    let builder = if material.files().ca.is_some() {
        let roots = roots(material)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| material.rejected(format!("client CA: {e}")))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_cert_resolver(Arc::new(SingleCert(certified)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// `CertifiedKey::new` rather than rustls's own loaders, which refuse X.509
/// v1 certificates; the key was already checked against the certificate.
fn certified_key(
    material: &TlsMaterial,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, CertFileError> {
    let key = material
        .key()
        .ok_or_else(|| material.rejected("no private key"))?;
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| material.rejected(format!("the private key cannot sign: {e}")))?;
    Ok(Arc::new(CertifiedKey::new(
        material.chain().to_vec(),
        signing_key,
    )))
}

fn roots(material: &TlsMaterial) -> Result<RootCertStore, CertFileError> {
    let mut roots = RootCertStore::empty();
    for root in material.roots() {
        roots
            .add(root.clone())
            .map_err(|e| material.rejected(format!("client CA cannot be a trust anchor: {e}")))?;
    }
    Ok(roots)
}

/// Serves the one admin certificate whatever the SNI.
#[derive(Debug)]
struct SingleCert(Arc<CertifiedKey>);

impl ResolvesServerCert for SingleCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}
