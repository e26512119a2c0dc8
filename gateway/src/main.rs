//! `gateway`: the Portcullis process. Depending on `deployment.role` it runs
//! the admin API (control plane), the proxy (data plane), or both.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use clap::{Parser, Subcommand};
use gateway::listener::{ConnectionLimit, Listener, Protocol, Server, ShutdownSignal, Workers};
use gateway::proxy::Proxy;
use gateway::snapshot::{self, Snapshot};
use gateway::source::ConfigSource;
use gateway::status::{DataPlaneStatus, StatusServer, StatusSources};
use shared::config::{AdminConfig, Config, ConfigProvider, DataEncryption, Role, StatusConfig};
use shared::keyring::Keyring;
use shared::store::Store;
use tokio::task::JoinSet;

/// Per-request allocations are many and small; mimalloc serves them faster
/// than glibc's malloc (see bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Portcullis, the mTLS-first API gateway.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Path to config.yaml.
    #[arg(
        short = 'c',
        long = "config",
        default_value = "conf/config.yaml",
        global = true
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Checks a standalone configuration file offline and prints every
    /// problem with its path (e.g. `routes[3].upstream.nodes`); exits 1 on
    /// any. For CI pipelines.
    Validate {
        /// The file; default: `deployment.standalone.file` of the config.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Reads a PEM private key on standard input and prints it sealed with
    /// the keyring (`deployment.data_encryption.keyring`), for a standalone
    /// file.
    SealKey,
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    init_tracing();
    let config = Config::load(&args.config)?;
    match args.command {
        Some(Command::Validate { file }) => validate(&config, &args.config, file.as_deref()),
        Some(Command::SealKey) => {
            let keyring = Keyring::from_base64(&config.deployment.data_encryption.keyring)?;
            println!(
                "{}",
                gateway::source::seal_key(&keyring, &mut std::io::stdin())?
            );
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let runtime = runtime()?;
            runtime.block_on(run(config, &args.config))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `gateway validate`: exit code 1 when the file has any problem.
fn validate(config: &Config, config_path: &Path, file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let path = file.map_or_else(
        || config.deployment.standalone.path(config_path),
        Path::to_owned,
    );
    let keyring = Keyring::from_base64(&config.deployment.data_encryption.keyring)?;
    let ok = gateway::source::validate_file(&path, &keyring, &mut std::io::stdout().lock())?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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

/// The control runtime: etcd, the admin API, the status endpoints and the
/// snapshot builder. Proxy traffic runs on worker threads of its own
/// ([`Workers`]), so one thread is plenty here.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn run(config: Config, config_path: &Path) -> anyhow::Result<()> {
    let role = config.deployment.role;
    let keyring = load_keyring(
        &config.deployment.data_encryption,
        config.deployment.config_provider,
    )?;
    // Standalone (`config_provider: yaml`) needs no etcd at all.
    let store = match config.deployment.config_provider {
        ConfigProvider::Etcd => {
            let store = Store::connect(&config.deployment.etcd).await?;
            probe_etcd(&store).await?;
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
        start_admin(
            admin,
            store.clone(),
            keyring.clone(),
            shutdown.clone(),
            &mut tasks,
        )
        .await?;
    }
    start_observability(&config)?;
    let data_plane = if role.serves_traffic() {
        let source = match store {
            Some(store) => ConfigSource::etcd(&config, store.reader().clone(), keyring),
            None => {
                let file = config.deployment.standalone.path(config_path);
                ConfigSource::standalone(&file, keyring).await?
            }
        };
        Some(start_data_plane(&config, source))
    } else {
        None
    };
    if let Some(status) = &config.deployment.status {
        let data_plane = data_plane.as_ref().map(|(status, _)| status.clone());
        start_status(status, role, data_plane, shutdown.clone(), &mut tasks).await?;
    }
    if let Some((status, server)) = data_plane {
        status.first_load().await;
        open_proxy_listeners(&config, server, shutdown, &mut tasks).await?;
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
async fn probe_etcd(store: &Store) -> anyhow::Result<()> {
    match store.reader().probe().await {
        Ok(()) => tracing::info!(endpoints = store.reader().endpoints(), "etcd reachable"),
        Err(err) if err.is_fatal() => {
            return Err(err).context("etcd refuses this gateway: check deployment.etcd.tls against the etcd server's TLS settings")
        }
        Err(err) => tracing::warn!(%err, "etcd not reachable yet; starting anyway and retrying"),
    }
    Ok(())
}

/// Starts building snapshots from the configuration source; the listeners
/// open later, once the first configuration is applied (see
/// [`DataPlaneStatus::first_load`]).
fn start_data_plane(config: &Config, source: ConfigSource) -> (DataPlaneStatus, Arc<Server>) {
    let fallback_sni = config.proxy.fallback_sni.clone();
    let current = Arc::new(ArcSwap::from_pointee(Snapshot::empty(
        fallback_sni.as_deref(),
    )));
    let watch = source.watch;
    let (tls_changed, tls_changes) = tokio::sync::watch::channel(());
    tokio::spawn(snapshot::follow(
        watch.states.clone(),
        Arc::clone(&current),
        fallback_sni,
        tls_changed,
    ));

    let proxy = Arc::new(Proxy::new(Arc::clone(&current)));
    let limit = ConnectionLimit::new(config.proxy.max_connections);
    let server = Server::new(
        proxy,
        Arc::clone(&current),
        tls_changes,
        Arc::clone(&limit),
        &config.proxy,
    );
    let status = DataPlaneStatus {
        states: watch.states,
        sync: watch.status,
        snapshot: current,
        connections: limit,
        cache_path: source.cache_path,
        standalone_file: source.standalone_file,
    };
    (status, server)
}

/// Binds every proxy listener once per worker thread and starts the
/// workers; `tasks` ends when they have drained.
async fn open_proxy_listeners(
    config: &Config,
    server: Arc<Server>,
    shutdown: ShutdownSignal,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let proxy = &config.proxy;
    let workers = worker_count(proxy.worker_threads);
    let addrs = proxy
        .http_listen
        .iter()
        .map(|addr| (addr, Protocol::Http))
        .chain(
            proxy
                .https_listen
                .iter()
                .map(|addr| (addr, Protocol::Https)),
        );
    let mut per_worker: Vec<Vec<Listener>> = (0..workers).map(|_| Vec::new()).collect();
    for (addr, protocol) in addrs {
        let first = Listener::bind(addr, protocol, proxy.reuse_port)
            .await
            .with_context(|| format!("cannot listen on {addr} ({protocol:?})"))?;
        tracing::info!(addr = %first.local_addr()?, ?protocol, workers, "proxy listening");
        for listeners in per_worker.iter_mut().skip(1) {
            let sibling = first.sibling(proxy.reuse_port).with_context(|| {
                format!("cannot listen on {addr} ({protocol:?}) again for another worker")
            })?;
            listeners.push(sibling);
        }
        per_worker[0].push(first);
    }
    let workers = Workers::start(per_worker, &server, &shutdown)
        .context("cannot start the proxy worker threads")?;
    tasks.spawn(workers.drained());
    Ok(())
}

/// `proxy.worker_threads`, 0 meaning one per core.
fn worker_count(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
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
