//! TLS to etcd: client options built from `deployment.etcd.tls`, and a
//! fresh etcd client whenever those files are rotated.

use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use rustls::{ClientConfig, RootCertStore};
use tokio::sync::watch;

use crate::certfile::{CertFileError, Reloading, TlsMaterial};
use crate::config::EtcdTls;

/// Follows the configured files; each valid version becomes `TlsOptions`.
pub(super) fn follow(config: &EtcdTls, handshake_timeout: std::time::Duration) -> Result<Reloading<TlsOptions>, CertFileError> {
    let sni = config.sni.clone();
    Reloading::start(config.files(), move |material| {
        options(material, sni.as_deref(), handshake_timeout)
    })
}

/// The client TLS options for one version of the files.
fn options(
    material: &TlsMaterial,
    sni: Option<&str>,
    handshake_timeout: std::time::Duration,
) -> Result<TlsOptions, CertFileError> {
    check_usable(material)?;
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

/// Builds the rustls client configuration the etcd client will build, so
/// that whatever rustls refuses is refused here, with a reason, and not
/// later when connecting (the etcd client silently drops CA certificates it
/// cannot use, which would only show as failed handshakes).
fn check_usable(material: &TlsMaterial) -> Result<(), CertFileError> {
    let mut roots = RootCertStore::empty();
    for root in material.roots() {
        roots
            .add(root.clone())
            .map_err(|e| material.rejected(format!("the CA certificate cannot be a trust anchor: {e}")))?;
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| material.rejected(e))?
        .with_root_certificates(roots);
    if let (chain, Some(key)) = (material.chain(), material.key()) {
        builder
            .with_client_auth_cert(chain.to_vec(), key.clone_key())
            .map_err(|e| material.rejected(format!("the client certificate cannot be used: {e}")))?;
    }
    Ok(())
}

/// Replaces the client in `slot` whenever the TLS files change, so new
/// requests present the new certificate. Ends when the store is dropped.
pub(super) async fn rotate(
    endpoints: Vec<String>,
    options: ConnectOptions,
    mut updates: watch::Receiver<Arc<TlsOptions>>,
    slot: Weak<ArcSwap<Client>>,
) {
    while updates.changed().await.is_ok() {
        let Some(slot) = slot.upgrade() else {
            return;
        };
        let tls = TlsOptions::clone(&updates.borrow_and_update());
        match Client::connect(&endpoints, Some(options.clone().with_tls(tls))).await {
            Ok(client) => {
                slot.store(Arc::new(client));
                tracing::info!(endpoints = %endpoints.join(","), "etcd TLS files changed: new etcd requests use them");
            }
            Err(err) => tracing::error!(
                endpoints = %endpoints.join(","),
                error = %super::describe(&err),
                "cannot use the changed etcd TLS files; the ones loaded before stay in use"
            ),
        }
    }
}
