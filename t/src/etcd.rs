//! A real single-node etcd on free loopback ports.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use http::Method;
use tempfile::TempDir;

use crate::net::free_addr;
use crate::process::Process;
use crate::tls_setup::{utf8, EtcdServerTls};

/// How long etcd may take to answer its health check.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts with fresh ports when another process grabbed ours first.
const START_ATTEMPTS: usize = 3;

/// A real single-node etcd (the `etcd` binary) on free loopback ports, data
/// in a temporary directory. Killed on drop.
#[derive(Debug)]
pub struct Etcd {
    client: SocketAddr,
    peer: SocketAddr,
    process: Option<Process>,
    /// Set: client URLs are https:// and require client certificates.
    tls: Option<EtcdServerTls>,
    // Last: the directory must outlive the process writing into it.
    dir: TempDir,
}

impl Etcd {
    /// Starts etcd and waits until it answers.
    pub async fn start() -> crate::Result<Etcd> {
        Etcd::start_with(None).await
    }

    /// Starts etcd serving `https://` with `--client-cert-auth`, and waits
    /// until it answers the harness's client certificate.
    pub async fn start_tls(tls: EtcdServerTls) -> crate::Result<Etcd> {
        Etcd::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<EtcdServerTls>) -> crate::Result<Etcd> {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-etcd-")
            .tempdir()
            .context("cannot create a temporary directory for etcd")?;
        let mut etcd = Etcd {
            client: free_addr(),
            peer: free_addr(),
            process: None,
            tls,
            dir,
        };
        for attempt in 1..=START_ATTEMPTS {
            match etcd.launch().await {
                Ok(()) => return Ok(etcd),
                Err(e) if attempt < START_ATTEMPTS => {
                    eprintln!("etcd did not start ({e:#}); retrying on other ports");
                    etcd.client = free_addr();
                    etcd.peer = free_addr();
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS), the client URL.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.client)
    }

    /// SIGTERM, then waits for the exit.
    pub async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.terminate(Duration::from_secs(10)).await;
        }
    }

    /// Stops etcd if it runs, then starts it again on the same ports with the
    /// same data, and waits until it is healthy.
    pub async fn restart(&mut self) -> crate::Result<()> {
        self.stop().await;
        self.launch().await
    }

    /// Runs `etcdctl --endpoints=.. ARGS`; returns its stdout, or an error
    /// with its stderr when it exits non-zero.
    pub fn etcdctl(&self, args: &[&str]) -> crate::Result<String> {
        let mut options = vec![
            format!("--endpoints={}", self.endpoint()),
            "--command-timeout=10s".to_owned(),
        ];
        options.extend(self.etcdctl_tls_args()?);
        run_etcdctl(&options, args)
    }

    /// `--cacert`, `--cert`, `--key` for a TLS etcd.
    fn etcdctl_tls_args(&self) -> crate::Result<Vec<String>> {
        let Some(tls) = &self.tls else {
            return Ok(Vec::new());
        };
        Ok(vec![
            format!("--cacert={}", utf8(&tls.server_ca)?),
            format!("--cert={}", utf8(&tls.client_cert)?),
            format!("--key={}", utf8(&tls.client_key)?),
        ])
    }

    /// The current revision of the store.
    pub fn revision(&self) -> crate::Result<i64> {
        let out = self.etcdctl(&["get", "--write-out=json", "/"])?;
        let json: serde_json::Value = serde_json::from_str(&out).context("etcdctl get -w json")?;
        json["header"]["revision"]
            .as_i64()
            .with_context(|| format!("no header.revision in {out}"))
    }

    /// Compacts the history up to the current revision; returns that revision.
    pub fn compact(&self) -> crate::Result<i64> {
        let revision = self.revision()?;
        self.etcdctl(&["compact", &revision.to_string()])?;
        Ok(revision)
    }

    /// The etcd log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    async fn launch(&mut self) -> crate::Result<()> {
        let peer_url = format!("http://{}", self.peer);
        let mut cmd = Command::new("etcd");
        cmd.arg("--name=t")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={}", self.endpoint()))
            .arg(format!("--advertise-client-urls={}", self.endpoint()))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=t={peer_url}"))
            // Quick single-node elections keep restarts fast.
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500");
        if let Some(tls) = &self.tls {
            cmd.arg("--client-cert-auth")
                .arg(format!("--trusted-ca-file={}", utf8(&tls.trusted_ca)?))
                .arg(format!("--cert-file={}", utf8(&tls.cert)?))
                .arg(format!("--key-file={}", utf8(&tls.key)?));
        }
        let mut process = Process::spawn("etcd", cmd, &self.log_path())
            .context("cannot start etcd (run ./scripts/deps to install etcd-server)")?;
        let client = self.client;
        let tls = self.tls.clone();
        let ready = process
            .wait_ready(READY_TIMEOUT, || {
                let tls = tls.clone();
                async move {
                    match tls {
                        Some(tls) => healthy_tls(client, &tls),
                        None => healthy(client).await,
                    }
                }
            })
            .await;
        self.process = Some(process);
        if let Err(e) = ready {
            self.stop().await;
            bail!("{e:#}; etcd log:\n{}", tail(&self.log()));
        }
        Ok(())
    }
}

/// Whether etcd on `client` answers its health check.
pub(crate) async fn healthy(client: SocketAddr) -> bool {
    let health = crate::http::send(client, Method::GET, "/health", &[], None).await;
    matches!(health, Ok(reply) if reply.status == 200
        && String::from_utf8_lossy(&reply.body).contains(r#""health":"true""#))
}

/// Runs `etcdctl OPTIONS ARGS` (API v3, 3 s to dial); returns its stdout, or
/// an error with its stderr when it exits non-zero.
pub(crate) fn run_etcdctl(options: &[String], args: &[&str]) -> crate::Result<String> {
    let output = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--dial-timeout=3s")
        .args(options)
        .args(args)
        .output()
        .context("cannot run etcdctl (run ./scripts/deps to install etcd-client)")?;
    if !output.status.success() {
        bail!(
            "etcdctl {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether a TLS etcd on `client` answers its health check to the
/// harness's client certificate.
fn healthy_tls(client: SocketAddr, tls: &EtcdServerTls) -> bool {
    let (Ok(ca), Ok(cert), Ok(key)) = (
        utf8(&tls.server_ca),
        utf8(&tls.client_cert),
        utf8(&tls.client_key),
    ) else {
        return false;
    };
    let url = format!("https://{client}/health");
    let health = crate::curl(&[
        &url, "--cacert", ca, "--cert", cert, "--key", key, "-m", "2",
    ]);
    matches!(health, Ok(reply) if reply.status == 200 && reply.body.contains(r#""health":"true""#))
}

/// The last lines of a log, enough to see why a process failed.
pub(crate) fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
