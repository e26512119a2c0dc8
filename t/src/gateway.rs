//! The real `gateway` binary with a generated `config.yaml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};
use tempfile::TempDir;

use crate::admin::AdminClient;
use crate::etcd::{tail, Etcd};
use crate::net::{accepts, free_addr};
use crate::process::Process;
use crate::tls_setup::{AdminTlsFiles, EtcdClientTls};

/// How long the gateway may take to open its listeners.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful shutdown may take before the gateway is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// Attempts with fresh ports when another process grabbed ours first.
const START_ATTEMPTS: usize = 3;

/// Makes default etcd prefixes unique within a test binary.
static NEXT_PREFIX: AtomicUsize = AtomicUsize::new(0);

/// Options for a gateway process.
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    /// `traditional` (default) | `data_plane` | `control_plane`.
    pub role: &'static str,
    /// etcd prefix; default: a unique `/portcullis-test-<n>`.
    pub prefix: String,
    pub fallback_sni: Option<String>,
    /// Default `test-admin-key`.
    pub admin_key: String,
    /// `deployment.etcd.tls` (the etcd must then be started with TLS).
    pub etcd_tls: Option<EtcdClientTls>,
    /// `deployment.admin.tls`: the admin API is then HTTPS only, and
    /// [`Gateway::admin`] (plain HTTP) cannot reach it; use curl.
    pub admin_tls: Option<AdminTlsFiles>,
    /// `deployment.admin.allow`; `None` leaves it out (every address).
    pub admin_allow: Option<Vec<String>>,
    /// Extra lines under `deployment.admin:`, indented by four spaces, e.g.
    /// `"    max_connections: 2\n"`.
    pub admin_yaml: String,
    /// `deployment.data_encryption.keyring` (base64 keys); empty leaves it out.
    pub keyring: Vec<String>,
    /// `deployment.status.listen` on a free port (see [`Gateway::status_addr`]).
    pub status: bool,
    /// `deployment.etcd.cache_dir`.
    pub cache_dir: Option<PathBuf>,
    /// Extra lines under `proxy:`, indented by two spaces, e.g.
    /// `"  max_connections: 5\n"`.
    pub proxy_yaml: String,
    /// `deployment.etcd.timeout`, seconds (default 3).
    pub etcd_timeout: u64,
    /// `proxy.worker_threads` (default 2: connections spread over threads).
    pub worker_threads: usize,
    /// Standalone mode: `deployment.config_provider: yaml` with this
    /// `deployment.standalone.file`, and no etcd (see
    /// [`Gateway::start_standalone`]).
    pub standalone_file: Option<PathBuf>,
    /// Extra environment variables of the process.
    pub env: Vec<(String, String)>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        let n = NEXT_PREFIX.fetch_add(1, Ordering::Relaxed);
        GatewayOptions {
            role: "traditional",
            prefix: format!("/portcullis-test-{}-{n}", std::process::id()),
            fallback_sni: None,
            admin_key: "test-admin-key".to_owned(),
            etcd_tls: None,
            admin_tls: None,
            admin_allow: None,
            admin_yaml: String::new(),
            keyring: Vec::new(),
            status: false,
            cache_dir: None,
            proxy_yaml: String::new(),
            etcd_timeout: 3,
            worker_threads: 2,
            standalone_file: None,
            env: Vec::new(),
        }
    }
}

/// The ports one gateway listens on.
#[derive(Clone, Copy, Debug)]
struct Ports {
    admin: SocketAddr,
    http: SocketAddr,
    https: SocketAddr,
    status: SocketAddr,
}

impl Ports {
    fn pick() -> Ports {
        Ports {
            admin: free_addr(),
            http: free_addr(),
            https: free_addr(),
            status: free_addr(),
        }
    }
}

/// The real `gateway` binary (`target/debug/gateway`, or
/// `$PORTCULLIS_GATEWAY_BIN`) with a generated config.yaml in a temporary
/// directory, on free ports. Killed on drop; its stdout and stderr go to a
/// log file, printed when a test panics.
#[derive(Debug)]
pub struct Gateway {
    opts: GatewayOptions,
    etcd_endpoints: Vec<String>,
    ports: Ports,
    config: PathBuf,
    process: Option<Process>,
    last_exit: Option<ExitStatus>,
    // Last: the directory must outlive the process writing into it.
    dir: TempDir,
}

impl Gateway {
    /// Starts a gateway with default options.
    pub async fn start(etcd: &Etcd) -> crate::Result<Gateway> {
        Gateway::start_with(etcd, GatewayOptions::default()).await
    }

    /// Starts a gateway and waits until its listeners accept.
    pub async fn start_with(etcd: &Etcd, opts: GatewayOptions) -> crate::Result<Gateway> {
        Gateway::start_on(&[etcd.endpoint()], opts).await
    }

    /// Starts a standalone data plane (no etcd) serving
    /// `opts.standalone_file`, and waits until its listeners accept.
    pub async fn start_standalone(opts: GatewayOptions) -> crate::Result<Gateway> {
        if opts.standalone_file.is_none() {
            bail!("a standalone gateway needs GatewayOptions::standalone_file");
        }
        let opts = GatewayOptions {
            role: "data_plane",
            ..opts
        };
        Gateway::start_on(&[], opts).await
    }

    /// Starts a gateway whose `deployment.etcd.endpoints` are `endpoints`
    /// (e.g. every member of an [`crate::EtcdCluster`]) and waits until its
    /// listeners accept.
    pub async fn start_on(endpoints: &[String], opts: GatewayOptions) -> crate::Result<Gateway> {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-gateway-")
            .tempdir()
            .context("cannot create a temporary directory for the gateway")?;
        let mut gateway = Gateway {
            config: dir.path().join("config.yaml"),
            opts,
            etcd_endpoints: endpoints.to_vec(),
            ports: Ports::pick(),
            process: None,
            last_exit: None,
            dir,
        };
        for attempt in 1..=START_ATTEMPTS {
            gateway.write_config()?;
            match gateway.launch().await {
                Ok(()) => return Ok(gateway),
                Err(e) if attempt < START_ATTEMPTS && gateway.port_conflict() => {
                    eprintln!("gateway did not start ({e:#}); retrying on other ports");
                    gateway.ports = Ports::pick();
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the last attempt returns")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.ports.admin
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.ports.http
    }

    /// The status listener (`/healthz`, `/readyz`, `/status`); only opened
    /// with [`GatewayOptions::status`].
    pub fn status_addr(&self) -> SocketAddr {
        self.ports.status
    }

    /// `GET /status` on the status listener, parsed.
    pub async fn status(&self) -> crate::Result<serde_json::Value> {
        let reply =
            crate::http::send(self.ports.status, http::Method::GET, "/status", &[], None).await?;
        if reply.status != 200 {
            bail!("GET /status answered {}", reply.status);
        }
        serde_json::from_slice(&reply.body).context("GET /status is not JSON")
    }

    /// `GET /metrics` on the status listener: the Prometheus text.
    pub async fn metrics(&self) -> crate::Result<String> {
        let reply =
            crate::http::send(self.ports.status, http::Method::GET, "/metrics", &[], None).await?;
        if reply.status != 200 {
            bail!("GET /metrics answered {}", reply.status);
        }
        String::from_utf8(reply.body.to_vec()).context("GET /metrics is not UTF-8")
    }

    /// The HTTP status of `GET path` on the status listener (`/healthz`, `/readyz`).
    pub async fn status_code(&self, path: &str) -> crate::Result<u16> {
        let reply =
            crate::http::send(self.ports.status, http::Method::GET, path, &[], None).await?;
        Ok(reply.status)
    }

    pub fn https_addr(&self) -> SocketAddr {
        self.ports.https
    }

    /// An admin client authenticated with the configured key.
    pub fn admin(&self) -> AdminClient {
        AdminClient::new(self.ports.admin, &self.opts.admin_key)
    }

    /// The etcd prefix this gateway uses.
    pub fn prefix(&self) -> &str {
        &self.opts.prefix
    }

    /// Everything the gateway printed so far, across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits until the log holds `needle`: a line about a connection may be
    /// written just after the client saw the connection end.
    pub async fn until_logged(&self, needle: &str) -> crate::Result<()> {
        crate::wait_until(
            &format!("{needle:?} in the gateway log"),
            Duration::from_secs(10),
            || {
                let found = self.log().contains(needle);
                async move { found }
            },
        )
        .await
        .with_context(|| format!("gateway log:\n{}", self.log()))
    }

    /// SIGTERM, then waits for the exit (killed after 15 s).
    pub async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let (status, graceful) = process.terminate(STOP_GRACE).await;
            if !graceful {
                eprintln!("gateway did not stop within {STOP_GRACE:?} of SIGTERM");
            }
            self.last_exit = status;
        }
    }

    /// Freezes the gateway (SIGSTOP), e.g. to let its etcd watch fall behind.
    pub fn pause(&self) {
        if let Some(process) = &self.process {
            process.pause();
        }
    }

    /// Thaws a paused gateway (SIGCONT).
    pub fn resume(&self) {
        if let Some(process) = &self.process {
            process.resume();
        }
    }

    /// The process id while the gateway runs (e.g. to read `/proc/<pid>/status`).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    /// The exit status of the last stopped (or crashed) process.
    pub fn last_exit(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.process.as_mut().and_then(Process::exited) {
            self.last_exit = Some(status);
        }
        self.last_exit
    }

    /// Stops the gateway if it runs and starts it again with the same config
    /// and ports; waits until its listeners accept.
    pub async fn restart(&mut self) -> crate::Result<()> {
        self.stop().await;
        self.launch().await
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("gateway.log")
    }

    fn write_config(&self) -> crate::Result<()> {
        let yaml = render_config(&self.opts, &self.etcd_endpoints, self.ports);
        std::fs::write(&self.config, yaml)
            .with_context(|| format!("cannot write {}", self.config.display()))
    }

    async fn launch(&mut self) -> crate::Result<()> {
        let mut cmd = Command::new(gateway_bin()?);
        cmd.arg("-c").arg(&self.config);
        cmd.envs(self.opts.env.iter().map(|(k, v)| (k, v)));
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let mut process = Process::spawn("gateway", cmd, &self.log_path())?;
        let listeners = self.listeners();
        let ready = process
            .wait_ready(READY_TIMEOUT, || all_accept(listeners.clone()))
            .await;
        self.process = Some(process);
        if let Err(e) = ready {
            self.stop().await;
            bail!("{e:#}; gateway log:\n{}", tail(&self.log()));
        }
        Ok(())
    }

    /// The listeners the configured role opens.
    fn listeners(&self) -> Vec<SocketAddr> {
        let mut addrs = Vec::new();
        if self.opts.role != "data_plane" {
            addrs.push(self.ports.admin);
        }
        if self.opts.role != "control_plane" {
            addrs.extend([self.ports.http, self.ports.https]);
        }
        if self.opts.status {
            addrs.push(self.ports.status);
        }
        addrs
    }

    /// Whether the last failure looks like a port taken by someone else.
    fn port_conflict(&self) -> bool {
        let log = self.log().to_lowercase();
        log.contains("address already in use") || log.contains("addrinuse")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- gateway log ({}) ----\n{}\n---- end of gateway log ----",
                self.config.display(),
                tail(&self.log())
            );
        }
    }
}

async fn all_accept(addrs: Vec<SocketAddr>) -> bool {
    for addr in addrs {
        if !accepts(addr).await {
            return false;
        }
    }
    true
}

/// The config file for `opts`; the shape of `conf/config.yaml`.
fn render_config(opts: &GatewayOptions, etcd_endpoints: &[String], ports: Ports) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let mut yaml = format!("deployment:\n  role: {role}\n", role = opts.role);
    match &opts.standalone_file {
        Some(file) => {
            yaml += &format!(
                "  config_provider: yaml\n  standalone:\n    file: {}\n",
                yaml_path(file)
            );
        }
        None => {
            yaml += &format!(
                "  etcd:\n    endpoints: {etcd}\n    prefix: {prefix}\n    timeout: {timeout}\n",
                etcd = serde_json::Value::from(etcd_endpoints.to_vec()),
                prefix = q(&opts.prefix),
                timeout = opts.etcd_timeout,
            );
        }
    }
    if opts.standalone_file.is_none() {
        if let Some(tls) = &opts.etcd_tls {
            yaml += &etcd_tls_yaml(tls);
        }
        if let Some(dir) = &opts.cache_dir {
            yaml += &format!("    cache_dir: {}\n", yaml_path(dir));
        }
    }
    if opts.status {
        yaml += &format!("  status:\n    listen: {}\n", q(&ports.status.to_string()));
    }
    if !opts.keyring.is_empty() {
        let keys: Vec<String> = opts.keyring.iter().map(|k| q(k)).collect();
        yaml += &format!("  data_encryption:\n    keyring: [{}]\n", keys.join(", "));
    }
    if opts.role != "data_plane" {
        yaml += &format!(
            "  admin:\n    listen: {listen}\n    keys:\n      - name: admin\n        key: {key}\n",
            listen = q(&ports.admin.to_string()),
            key = q(&opts.admin_key),
        );
        yaml += &admin_access_yaml(opts);
        yaml += &opts.admin_yaml;
    }
    yaml += &format!(
        "proxy:\n  http_listen: [{http}]\n  https_listen: [{https}]\n  worker_threads: {workers}\n",
        http = q(&ports.http.to_string()),
        https = q(&ports.https.to_string()),
        workers = opts.worker_threads,
    );
    if let Some(sni) = &opts.fallback_sni {
        yaml += &format!("  fallback_sni: {}\n", q(sni));
    }
    yaml += &opts.proxy_yaml;
    yaml
}

fn yaml_path(path: &Path) -> String {
    serde_json::Value::from(path.to_string_lossy()).to_string()
}

/// `    tls: {...}` under `deployment.etcd`.
fn etcd_tls_yaml(tls: &EtcdClientTls) -> String {
    let mut fields = vec![format!("ca: {}", yaml_path(&tls.ca))];
    fields.extend(
        tls.cert
            .as_deref()
            .map(|p| format!("cert: {}", yaml_path(p))),
    );
    fields.extend(tls.key.as_deref().map(|p| format!("key: {}", yaml_path(p))));
    fields.extend(
        tls.sni
            .as_deref()
            .map(|s| format!("sni: {}", serde_json::Value::from(s))),
    );
    format!("    tls: {{{}}}\n", fields.join(", "))
}

/// `tls` and `allow` under `deployment.admin`.
fn admin_access_yaml(opts: &GatewayOptions) -> String {
    let mut yaml = String::new();
    if let Some(tls) = &opts.admin_tls {
        let mut fields = vec![
            format!("cert: {}", yaml_path(&tls.cert)),
            format!("key: {}", yaml_path(&tls.key)),
        ];
        fields.extend(
            tls.client_ca
                .as_deref()
                .map(|p| format!("client_ca: {}", yaml_path(p))),
        );
        yaml += &format!("    tls: {{{}}}\n", fields.join(", "));
    }
    if let Some(allow) = &opts.admin_allow {
        yaml += &format!("    allow: {}\n", serde_json::Value::from(allow.clone()));
    }
    yaml
}

/// The gateway binary under test: `$PORTCULLIS_GATEWAY_BIN`, else the
/// `gateway` built beside this test binary (same target dir and profile), else
/// `<workspace>/target/debug/gateway`.
pub fn gateway_bin() -> crate::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PORTCULLIS_GATEWAY_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("PORTCULLIS_GATEWAY_BIN={} is not a file", path.display());
        }
        return Ok(path);
    }
    // Test binaries live in <target>/<profile>/deps/.
    let beside_tests = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("gateway")));
    let in_workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/gateway");
    beside_tests
        .into_iter()
        .chain([in_workspace.clone()])
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "the gateway binary is missing ({}): run `cargo build -p portcullis` (the crate of the `gateway` binary) first",
                in_workspace.display()
            )
        })
}
