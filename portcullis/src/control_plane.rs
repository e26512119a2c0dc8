//! The control plane: the admin API over the etcd store.

use anyhow::Context;
use gateway::shutdown::ShutdownSignal;
use shared::config::AdminConfig;
use shared::keyring::Keyring;
use shared::store::Store;
use tokio::task::JoinSet;

pub(crate) async fn start_admin(
    admin: &AdminConfig,
    store: Store,
    keyring: Keyring,
    shutdown: ShutdownSignal,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let socket = tokio::net::TcpListener::bind(&admin.listen)
        .await
        .with_context(|| format!("cannot listen on deployment.admin.listen {}", admin.listen))?;
    tracing::info!(addr = %socket.local_addr()?, "admin API listening");
    warn_sample_keys(admin);
    let state = admin::AdminState::new(store, admin.keys.clone())
        .with_allow(admin.allow.clone())
        .with_keyring(keyring);
    let tls = admin.tls.as_ref().map(admin::AdminTls::load).transpose()?;
    let limits = admin::Limits::of(admin);
    tasks.spawn(async move {
        let served = match tls {
            Some(tls) => admin::serve_tls(socket, state, tls, limits, shutdown.fired()).await,
            None => admin::serve(socket, state, limits, shutdown.fired()).await,
        };
        if let Err(err) = served {
            tracing::error!(%err, "admin API stopped");
        }
    });
    Ok(())
}

/// The sample configurations ship an admin key everyone has read; a
/// gateway still using it is open to anyone who reaches its admin port.
fn warn_sample_keys(admin: &AdminConfig) {
    for key in admin.keys.iter().filter(|k| k.key == SAMPLE_ADMIN_KEY) {
        tracing::warn!(
            name = %key.name,
            "deployment.admin.keys: this key is the sample value \"{SAMPLE_ADMIN_KEY}\"; \
             anyone who reaches the admin API can change the configuration: set a key of your own"
        );
    }
}

/// The admin key of the sample configurations in `conf/`.
const SAMPLE_ADMIN_KEY: &str = "change-me";
