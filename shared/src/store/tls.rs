//! TLS to etcd: client settings built from `deployment.etcd.tls` (a fresh
//! client when those files are rotated is `rotate`'s).

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Certificate, Identity, TlsOptions};
use rustls::{ClientConfig, RootCertStore};

use crate::certfile::{CertFileError, Reloading, TlsMaterial};
use crate::config::EtcdTls;

/// One version of the TLS files, ready for use.
pub(super) struct EtcdTlsVersion {
    /// What the etcd client is given.
    pub(super) options: TlsOptions,
    /// The same settings as a rustls configuration, for the startup probe's
    /// own handshake.
    pub(super) rustls: Arc<ClientConfig>,
    /// The name sent and verified, when not the endpoint's host.
    pub(super) sni: Option<String>,
}

/// Follows the configured files; each valid version is built once.
pub(super) fn follow(
    config: &EtcdTls,
    handshake_timeout: Duration,
) -> Result<Reloading<EtcdTlsVersion>, CertFileError> {
    let sni = config.sni.clone();
    Reloading::start(config.files(), move |material| {
        Ok(EtcdTlsVersion {
            options: options(material, sni.as_deref(), handshake_timeout)?,
            rustls: Arc::new(rustls_config(material)?),
            sni: sni.clone(),
        })
    })
}

/// The etcd client's TLS options for one version of the files.
fn options(
    material: &TlsMaterial,
    sni: Option<&str>,
    handshake_timeout: Duration,
) -> Result<TlsOptions, CertFileError> {
    let ca = material
        .roots_pem()
        .ok_or_else(|| material.rejected("no CA certificate to verify etcd with"))?;
    let mut tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(ca))
        .timeout(handshake_timeout);
    if let Some((cert, key)) = material.identity_pem() {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    if let Some(sni) = sni {
        tls = tls.domain_name(sni);
    }
    Ok(tls)
}

/// The rustls configuration the etcd client will build from the same
/// files. Building it here refuses, with a reason, whatever rustls would
/// refuse later: the etcd client silently drops CA certificates it cannot
/// use, which would only show as failed handshakes.
fn rustls_config(material: &TlsMaterial) -> Result<ClientConfig, CertFileError> {
    let mut roots = RootCertStore::empty();
    for root in material.roots() {
        roots.add(root.clone()).map_err(|e| {
            material.rejected(format!("the CA certificate cannot be a trust anchor: {e}"))
        })?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| material.rejected(e))?
        .with_root_certificates(roots);
    let mut config = match (material.chain(), material.key()) {
        (chain, Some(key)) => builder
            .with_client_auth_cert(chain.to_vec(), key.clone_key())
            .map_err(|e| {
                material.rejected(format!("the client certificate cannot be used: {e}"))
            })?,
        (_, None) => builder.with_no_client_auth(),
    };
    // etcd speaks gRPC, which is HTTP/2 only.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}
