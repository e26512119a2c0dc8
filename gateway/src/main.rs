//! `gateway`: the Portcullis process. Depending on `deployment.role` it runs
//! the admin API (control plane), the proxy (data plane), or both.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use clap::Parser;
use gateway::listener::{Listener, Protocol, ShutdownSignal};
use gateway::proxy::Proxy;
use gateway::snapshot::{self, Snapshot};
use shared::config::{AdminConfig, Config};
use shared::store::Store;
use tokio::task::JoinSet;

/// Portcullis, the mTLS-first API gateway.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Path to config.yaml.
    #[arg(short = 'c', long = "config", default_value = "conf/config.yaml")]
    config: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing();
    let config = Config::load(&args.config)?;
    let runtime = runtime(config.proxy.worker_threads)?;
    runtime.block_on(run(config))
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

fn runtime(worker_threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if worker_threads > 0 {
        builder.worker_threads(worker_threads);
    }
    builder.enable_all().build().context("cannot start the async runtime")
}

async fn run(config: Config) -> anyhow::Result<()> {
    let role = config.deployment.role;
    let store = Store::connect(&config.deployment.etcd).await?;
    probe_etcd(&store).await?;
    let (trigger, shutdown) = ShutdownSignal::new();
    let mut tasks = JoinSet::new();

    if let Some(admin) = config.deployment.admin.as_ref().filter(|_| role.serves_admin()) {
        start_admin(admin, store.clone(), shutdown.clone(), &mut tasks).await?;
    }
    if role.serves_traffic() {
        start_data_plane(&config, store, shutdown, &mut tasks).await?;
    }
    tracing::info!(?role, "portcullis started");

    wait_for_signal().await;
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    let _ = trigger.send(true);
    while tasks.join_next().await.is_some() {}
    tracing::info!("stopped");
    Ok(())
}

async fn start_admin(
    admin: &AdminConfig,
    store: Store,
    shutdown: ShutdownSignal,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let socket = tokio::net::TcpListener::bind(&admin.listen)
        .await
        .with_context(|| format!("cannot listen on deployment.admin.listen {}", admin.listen))?;
    tracing::info!(addr = %socket.local_addr()?, "admin API listening");
    let state = admin::AdminState::new(store, admin.keys.clone()).with_allow(admin.allow.clone());
    let tls = admin.tls.as_ref().map(admin::AdminTls::load).transpose()?;
    tasks.spawn(async move {
        let served = match tls {
            Some(tls) => admin::serve_tls(socket, state, tls, shutdown.fired()).await,
            None => admin::serve(socket, state, shutdown.fired()).await,
        };
        if let Err(err) = served {
            tracing::error!(%err, "admin API stopped");
        }
    });
    Ok(())
}

/// Stops the start when etcd refuses us (TLS, credentials): that will not
/// fix itself. An etcd that is merely down is waited for in the background.
async fn probe_etcd(store: &Store) -> anyhow::Result<()> {
    match store.probe().await {
        Ok(()) => tracing::info!(endpoints = store.endpoints(), "etcd reachable"),
        Err(err) if err.is_fatal() => {
            return Err(err).context("check deployment.etcd.tls and the etcd server's TLS settings")
        }
        Err(err) => tracing::warn!(%err, "etcd not reachable yet; starting anyway and retrying"),
    }
    Ok(())
}

async fn start_data_plane(
    config: &Config,
    store: Store,
    shutdown: ShutdownSignal,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let fallback_sni = config.proxy.fallback_sni.clone();
    let current = Arc::new(ArcSwap::from_pointee(Snapshot::empty(fallback_sni.as_deref())));
    let states = shared::watch::spawn(store);
    tokio::spawn(snapshot::follow(states, Arc::clone(&current), fallback_sni));

    let proxy = Arc::new(Proxy::new(Arc::clone(&current)));
    let listeners = config
        .proxy
        .http_listen
        .iter()
        .map(|addr| (addr, Protocol::Http))
        .chain(config.proxy.https_listen.iter().map(|addr| (addr, Protocol::Https)));
    for (addr, protocol) in listeners {
        let listener = Listener::bind(addr, protocol)
            .await
            .with_context(|| format!("cannot listen on {addr} ({protocol:?})"))?;
        tracing::info!(addr = %listener.local_addr()?, ?protocol, "proxy listening");
        tasks.spawn(listener.serve(Arc::clone(&proxy), Arc::clone(&current), shutdown.clone()));
    }
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
