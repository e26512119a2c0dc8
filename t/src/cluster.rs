//! A real etcd cluster (three `etcd` processes on loopback ports) for the
//! fleet and fault tests: find the leader, kill it, stop and start members,
//! compact and defragment, save a snapshot and restore the whole cluster
//! from it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;
use tempfile::TempDir;

use crate::etcd::{healthy, run_etcdctl, tail};
use crate::net::free_addr;
use crate::process::Process;
use crate::wait::wait_until;

/// How long the members may take to elect a leader and answer.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts with fresh ports when another process grabbed ours first.
const START_ATTEMPTS: usize = 3;
/// Raft timing, in ms: quick elections, yet no spurious ones when the test
/// machine's two cores are busy with debug builds.
const HEARTBEAT_MS: u32 = 100;
const ELECTION_MS: u32 = 1000;

/// One member: its ports, its process while it runs.
#[derive(Debug)]
struct Member {
    name: String,
    client: SocketAddr,
    peer: SocketAddr,
    process: Option<Process>,
}

impl Member {
    fn new(index: usize) -> Member {
        Member {
            name: format!("m{index}"),
            client: free_addr(),
            peer: free_addr(),
            process: None,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.client)
    }

    fn peer_url(&self) -> String {
        format!("http://{}", self.peer)
    }
}

/// A real etcd cluster on free loopback ports, data in a temporary
/// directory. Every member is killed on drop.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    /// `--initial-cluster-token`; a restore starts a new cluster with a new one.
    token: String,
    /// How many clusters were bootstrapped in `dir` (restores included).
    generation: usize,
    // Last: the directory must outlive the processes writing into it.
    dir: TempDir,
}

impl EtcdCluster {
    /// Starts `size` members and waits until every one is healthy (a leader
    /// is elected).
    pub async fn start(size: usize) -> crate::Result<EtcdCluster> {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-etcd-cluster-")
            .tempdir()
            .context("cannot create a temporary directory for etcd")?;
        let mut cluster = EtcdCluster {
            members: (0..size).map(Member::new).collect(),
            token: String::new(),
            generation: 0,
            dir,
        };
        for attempt in 1..=START_ATTEMPTS {
            cluster.new_generation();
            match cluster.start_all().await {
                Ok(()) => return Ok(cluster),
                Err(e) if attempt < START_ATTEMPTS => {
                    eprintln!("etcd cluster did not start ({e:#}); retrying on other ports");
                    cluster.kill_all();
                    cluster.members = (0..size).map(Member::new).collect();
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// How many members the cluster has (running or not).
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// Every member's client URL, as `deployment.etcd.endpoints` lists them.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// Member `index`'s client URL.
    pub fn endpoint(&self, index: usize) -> String {
        self.members[index].endpoint()
    }

    /// The members whose process runs.
    pub fn running(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].process.is_some())
            .collect()
    }

    /// The index of the current leader, as the running members report it.
    pub fn leader(&self) -> crate::Result<usize> {
        let out = self.etcdctl(&["endpoint", "status", "--write-out=json"])?;
        let statuses: Vec<Value> = serde_json::from_str(&out).context("endpoint status -w json")?;
        for status in &statuses {
            let reported = &status["Status"];
            let (Some(member), Some(leader)) = (
                reported["header"]["member_id"].as_u64(),
                reported["leader"].as_u64(),
            ) else {
                continue;
            };
            if member == leader {
                let endpoint = status["Endpoint"].as_str().unwrap_or_default();
                return self.index_of(endpoint);
            }
        }
        bail!("no running member reports itself as the leader: {out}")
    }

    /// Waits until the running members agree on a leader; returns it.
    pub async fn wait_for_leader(&self, timeout: Duration) -> crate::Result<usize> {
        let mut leader = None;
        wait_until("the etcd members to elect a leader", timeout, || {
            leader = self.leader().ok();
            async move { leader.is_some() }
        })
        .await?;
        leader.context("a leader was reported")
    }

    /// Kills member `index` with SIGKILL, as a crash would.
    pub fn kill(&mut self, index: usize) {
        // Dropping a process kills it with SIGKILL and reaps it.
        drop(self.members[index].process.take());
    }

    /// Stops member `index` gracefully (SIGTERM).
    pub async fn stop(&mut self, index: usize) {
        if let Some(mut process) = self.members[index].process.take() {
            process.terminate(Duration::from_secs(10)).await;
        }
    }

    /// Stops every member gracefully.
    pub async fn stop_all(&mut self) {
        for index in 0..self.members.len() {
            self.stop(index).await;
        }
    }

    /// Starts member `index` again with its data; waits until it is healthy,
    /// which needs a quorum of members running.
    pub async fn start_member(&mut self, index: usize) -> crate::Result<()> {
        self.launch(index)?;
        self.wait_healthy(&[index]).await
    }

    /// Starts every member that is not running (with its data) and waits
    /// until all are healthy.
    pub async fn start_all(&mut self) -> crate::Result<()> {
        let stopped: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].process.is_none())
            .collect();
        for &index in &stopped {
            self.launch(index)?;
        }
        self.wait_healthy(&stopped).await
    }

    /// Runs `etcdctl --endpoints=<running members> ARGS`; returns its stdout,
    /// or an error with its stderr when it exits non-zero.
    pub fn etcdctl(&self, args: &[&str]) -> crate::Result<String> {
        let endpoints: Vec<String> = self.running().iter().map(|&i| self.endpoint(i)).collect();
        etcdctl(&endpoints, args)
    }

    /// The current revision of the store.
    pub fn revision(&self) -> crate::Result<i64> {
        let out = self.etcdctl(&["get", "--write-out=json", "/"])?;
        let json: Value = serde_json::from_str(&out).context("etcdctl get -w json")?;
        json["header"]["revision"]
            .as_i64()
            .with_context(|| format!("no header.revision in {out}"))
    }

    /// Compacts the history up to the current revision (physically, so the
    /// old revisions are gone when it returns); returns that revision.
    pub fn compact(&self) -> crate::Result<i64> {
        let revision = self.revision()?;
        self.etcdctl(&["compact", "--physical", &revision.to_string()])?;
        Ok(revision)
    }

    /// Defragments every running member, one after the other.
    pub fn defrag(&self) -> crate::Result<()> {
        for index in self.running() {
            etcdctl(&[self.endpoint(index)], &["defrag"])?;
        }
        Ok(())
    }

    /// `etcdctl snapshot save` from a running member into `path`.
    pub fn snapshot_save(&self, path: &Path) -> crate::Result<()> {
        let member = *self.running().first().context("no member runs")?;
        let path = path.to_str().context("a snapshot path must be UTF-8")?;
        etcdctl(&[self.endpoint(member)], &["snapshot", "save", path])?;
        Ok(())
    }

    /// Restores the whole cluster from `snapshot` the way the etcd docs do it:
    /// every member is stopped, gets a fresh data directory made by
    /// `etcdctl snapshot restore` (a new cluster, same names and URLs), and
    /// is started again. The revision goes back to the snapshot's.
    pub async fn restore(&mut self, snapshot: &Path) -> crate::Result<()> {
        self.stop_all().await;
        self.new_generation();
        let snapshot = snapshot.to_str().context("a snapshot path must be UTF-8")?;
        for index in 0..self.members.len() {
            let member = &self.members[index];
            let data_dir = self.data_dir(index);
            let output = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["snapshot", "restore", snapshot])
                .arg(format!("--name={}", member.name))
                .arg(format!("--data-dir={}", data_dir.display()))
                .arg(format!("--initial-cluster={}", self.initial_cluster()))
                .arg(format!("--initial-cluster-token={}", self.token))
                .arg(format!(
                    "--initial-advertise-peer-urls={}",
                    member.peer_url()
                ))
                .output()
                .context("cannot run etcdctl snapshot restore")?;
            if !output.status.success() {
                bail!(
                    "etcdctl snapshot restore for {} failed: {}",
                    member.name,
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
        }
        self.start_all().await
    }

    /// How many watch streams member `index` serves right now (its
    /// `etcd_debugging_mvcc_watch_stream_total` metric).
    pub async fn watch_streams(&self, index: usize) -> crate::Result<u64> {
        let reply = crate::http::send(
            self.members[index].client,
            http::Method::GET,
            "/metrics",
            &[],
            None,
        )
        .await?;
        let metrics = String::from_utf8_lossy(&reply.body);
        let value = metrics
            .lines()
            .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watch_stream_total "))
            .context("etcd exports no etcd_debugging_mvcc_watch_stream_total")?;
        let value: f64 = value.trim().parse().context("a metric value")?;
        // A gauge of streams: a small whole number.
        Ok(value as u64)
    }

    /// Member `index`'s log so far (across its restarts).
    pub fn log(&self, index: usize) -> String {
        std::fs::read_to_string(self.log_path(index)).unwrap_or_default()
    }

    /// A fresh token and data directories, for a newly bootstrapped cluster.
    fn new_generation(&mut self) {
        self.generation += 1;
        self.token = format!("portcullis-test-{}-{}", std::process::id(), self.generation);
    }

    fn data_dir(&self, index: usize) -> PathBuf {
        let name = format!("{}-{}", self.members[index].name, self.generation);
        self.dir.path().join(name)
    }

    fn log_path(&self, index: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[index].name))
    }

    fn initial_cluster(&self) -> String {
        let members: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect();
        members.join(",")
    }

    fn index_of(&self, endpoint: &str) -> crate::Result<usize> {
        let bare = endpoint.trim_start_matches("http://");
        self.members
            .iter()
            .position(|m| m.client.to_string() == bare)
            .with_context(|| format!("{endpoint} is no member of this cluster"))
    }

    /// Spawns member `index` without waiting: a lone member of a stopped
    /// cluster cannot become healthy before the others run.
    fn launch(&mut self, index: usize) -> crate::Result<()> {
        let member = &self.members[index];
        let mut cmd = Command::new("etcd");
        cmd.arg(format!("--name={}", member.name))
            .arg(format!("--data-dir={}", self.data_dir(index).display()))
            .arg(format!("--listen-client-urls={}", member.endpoint()))
            .arg(format!("--advertise-client-urls={}", member.endpoint()))
            .arg(format!("--listen-peer-urls={}", member.peer_url()))
            .arg(format!(
                "--initial-advertise-peer-urls={}",
                member.peer_url()
            ))
            .arg(format!("--initial-cluster={}", self.initial_cluster()))
            .arg("--initial-cluster-state=new")
            .arg(format!("--initial-cluster-token={}", self.token))
            .arg(format!("--heartbeat-interval={HEARTBEAT_MS}"))
            .arg(format!("--election-timeout={ELECTION_MS}"));
        let name = format!("etcd {}", member.name);
        let process = Process::spawn(&name, cmd, &self.log_path(index))
            .context("cannot start etcd (run ./scripts/deps to install etcd-server)")?;
        self.members[index].process = Some(process);
        Ok(())
    }

    /// Waits until each of `indexes` answers its health check (which needs a
    /// leader); fails early when one of them exits.
    async fn wait_healthy(&mut self, indexes: &[usize]) -> crate::Result<()> {
        for &index in indexes {
            let client = self.members[index].client;
            let Some(process) = self.members[index].process.as_mut() else {
                bail!("member {index} is not running");
            };
            let ready = process.wait_ready(READY_TIMEOUT, || healthy(client)).await;
            if let Err(e) = ready {
                bail!("{e:#}; etcd log:\n{}", tail(&self.log(index)));
            }
        }
        Ok(())
    }

    fn kill_all(&mut self) {
        for index in 0..self.members.len() {
            self.kill(index);
        }
    }
}

/// `etcdctl --endpoints=ENDPOINTS ARGS` (plain http).
fn etcdctl(endpoints: &[String], args: &[&str]) -> crate::Result<String> {
    let options = [
        format!("--endpoints={}", endpoints.join(",")),
        "--command-timeout=15s".to_owned(),
    ];
    run_etcdctl(&options, args)
}
