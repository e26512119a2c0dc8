//! What a role runs, in order: etcd (unless standalone), the admin API,
//! observability, the data plane, the status endpoints; then the wait for
//! a signal and the graceful shutdown.

use std::path::Path;

use anyhow::Context;
use gateway::shutdown::ShutdownSignal;
use gateway::source::ConfigSource;
use gateway::status::{DataPlaneStatus, StatusServer, StatusSources};
use gateway::DataPlane;
use shared::config::{Config, ConfigProvider, DataEncryption, Role, StatusConfig};
use shared::keyring::Keyring;
use shared::store::{Store, StoreReader};
use tokio::task::JoinSet;

use crate::control_plane;

pub(crate) async fn run(config: Config, config_path: &Path) -> anyhow::Result<()> {
    let role = config.deployment.role;
    let keyring = load_keyring(
        &config.deployment.data_encryption,
        config.deployment.config_provider,
    )?;
    // Standalone (`config_provider: yaml`) needs no etcd at all.
    let store = match config.deployment.config_provider {
        ConfigProvider::Etcd => {
            let store = Store::connect(&config.deployment.etcd).await?;
            probe_etcd(store.reader()).await?;
            Some(store)
        }
        ConfigProvider::Yaml => None,
    };
    let (trigger, shutdown) = ShutdownSignal::new();
    let mut tasks = JoinSet::new();

    let admin = config
        .deployment
        .admin
        .as_ref()
        .filter(|_| role.serves_admin());
    if let (Some(admin), Some(store)) = (admin, &store) {
        control_plane::start_admin(
            admin,
            store.clone(),
            keyring.clone(),
            shutdown.clone(),
            &mut tasks,
        )
        .await?;
    }
    start_observability(&config)?;
    let mut data_plane = if role.serves_traffic() {
        let source = config_source(&config, config_path, store.as_ref(), keyring).await?;
        Some(DataPlane::start(&config, source))
    } else {
        None
    };
    if let Some(status) = &config.deployment.status {
        let data_plane = data_plane.as_ref().map(|dp| dp.status().clone());
        start_status(status, role, data_plane, shutdown.clone(), &mut tasks).await?;
    }
    if let Some(data_plane) = &mut data_plane {
        data_plane.listen().await?;
    }
    tracing::info!(?role, "portcullis started");

    wait_for_signal().await;
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    let _ = trigger.send(true);
    if let Some(data_plane) = data_plane {
        data_plane.shutdown();
        tasks.spawn(data_plane.wait());
    }
    while tasks.join_next().await.is_some() {}
    tracing::info!("stopped");
    Ok(())
}

/// Where the data plane's configuration comes from: etcd, read through a
/// handle that cannot write, or the standalone file.
async fn config_source(
    config: &Config,
    config_path: &Path,
    store: Option<&Store>,
    keyring: Keyring,
) -> anyhow::Result<ConfigSource> {
    match store {
        Some(store) => Ok(ConfigSource::etcd(config, store.reader().clone(), keyring)),
        None => {
            let file = config.deployment.standalone.path(config_path);
            ConfigSource::standalone(&file, keyring).await
        }
    }
}

/// Metrics and the access log (`proxy.metrics`, `proxy.access_log`), and
/// the certificate files whose expiry the metrics report.
fn start_observability(config: &Config) -> anyhow::Result<()> {
    gateway::metrics::set_enabled(config.proxy.metrics.enabled);
    if config.deployment.role.serves_traffic() {
        gateway::access_log::start(&config.proxy.access_log)
            .context("cannot start the access-log writer")?;
    }
    let etcd = config
        .deployment
        .etcd
        .tls
        .iter()
        .flat_map(|tls| std::iter::once(tls.ca.clone()).chain(tls.cert.clone()));
    let admin = config.deployment.admin.iter().flat_map(|admin| &admin.tls);
    let admin =
        admin.flat_map(|tls| std::iter::once(tls.cert.clone()).chain(tls.client_ca.clone()));
    gateway::metrics::expiry::watch_files(etcd.chain(admin).collect());
    Ok(())
}

/// `deployment.data_encryption.keyring`; a malformed key stops the start.
fn load_keyring(config: &DataEncryption, provider: ConfigProvider) -> anyhow::Result<Keyring> {
    let keyring = Keyring::from_base64(&config.keyring)?;
    if provider == ConfigProvider::Yaml {
        // A standalone file holds its keys as the operator wrote them; the
        // keyring only opens the sealed ones.
        return Ok(keyring);
    }
    if keyring.is_enabled() {
        tracing::info!(
            keys = config.keyring.len(),
            "private keys in etcd are encrypted (AES-256-GCM)"
        );
    } else {
        tracing::warn!(
            "no deployment.data_encryption.keyring: private keys are stored in etcd as given, in clear"
        );
    }
    Ok(keyring)
}

/// Stops the start when etcd refuses us (TLS, credentials): that will not
/// fix itself. An etcd that is merely down is waited for in the background.
async fn probe_etcd(store: &StoreReader) -> anyhow::Result<()> {
    match store.probe().await {
        Ok(()) => tracing::info!(endpoints = store.endpoints(), "etcd reachable"),
        Err(err) if err.is_fatal() => {
            return Err(err).context("etcd refuses this gateway: check deployment.etcd.tls against the etcd server's TLS settings")
        }
        Err(err) => tracing::warn!(%err, "etcd not reachable yet; starting anyway and retrying"),
    }
    Ok(())
}

async fn start_status(
    config: &StatusConfig,
    role: Role,
    data_plane: Option<DataPlaneStatus>,
    shutdown: ShutdownSignal,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let server = StatusServer::bind(&config.listen, StatusSources { role, data_plane })
        .await
        .with_context(|| {
            format!(
                "cannot listen on deployment.status.listen {}",
                config.listen
            )
        })?;
    tracing::info!(addr = %server.local_addr()?, "status endpoints listening (/healthz, /readyz, /status, /metrics)");
    tasks.spawn(server.serve(shutdown));
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::warn!(%err, "cannot listen for SIGTERM; only Ctrl-C stops the gateway");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
