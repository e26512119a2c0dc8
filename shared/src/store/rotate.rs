//! A fresh etcd client whenever the `deployment.etcd.tls` files are
//! rotated.

use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use etcd_client::{Client, ConnectOptions};
use tokio::sync::watch;

use super::cause::describe;
use super::handshake::first_refusal;
use super::tls::EtcdTlsVersion;

/// Replaces the client in `slot` whenever the TLS files change, so new
/// requests present the new certificate. Files that etcd refuses (e.g. a
/// certificate from a CA it does not trust) do not replace working ones.
/// Ends when the store is dropped.
pub(super) async fn rotate(
    endpoints: Vec<String>,
    options: ConnectOptions,
    mut updates: watch::Receiver<Arc<EtcdTlsVersion>>,
    slot: Weak<ArcSwap<Client>>,
    timeout: Duration,
) {
    let joined = endpoints.join(",");
    while updates.changed().await.is_ok() {
        let version = Arc::clone(&updates.borrow_and_update());
        if let Some(refused) = first_refusal(&endpoints, &version, timeout).await {
            tracing::error!(error = %refused, "refusing the changed etcd TLS files: etcd does not accept them; the ones loaded before stay in use");
            continue;
        }
        let Some(slot) = slot.upgrade() else {
            return;
        };
        match Client::connect(
            &endpoints,
            Some(options.clone().with_tls(version.options.clone())),
        )
        .await
        {
            Ok(client) => {
                slot.store(Arc::new(client));
                tracing::info!(endpoints = %joined, "etcd TLS files changed: new etcd requests use them");
            }
            Err(err) => tracing::error!(
                endpoints = %joined,
                error = %describe(&err),
                "cannot use the changed etcd TLS files; the ones loaded before stay in use"
            ),
        }
    }
}
