//! A child process that never outlives its handle.

use std::fs::File;
use std::future::Future;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How often a starting or terminating child is checked.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// A spawned child with its stdout and stderr appended to a log file.
/// Dropping it kills the child (SIGKILL) and reaps it, also while a test panics.
#[derive(Debug)]
pub(crate) struct Process {
    name: String,
    child: Child,
}

impl Process {
    /// Spawns `cmd` with both output streams appended to `log`.
    pub(crate) fn spawn(name: &str, mut cmd: Command, log: &Path) -> crate::Result<Process> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open the log file {}", log.display()))?;
        let err = out
            .try_clone()
            .context("cannot duplicate a log file handle")?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
        Ok(Process {
            name: name.to_owned(),
            child,
        })
    }

    /// Waits until `ready` holds; fails early when the child exits first.
    pub(crate) async fn wait_ready<F, Fut>(
        &mut self,
        timeout: Duration,
        mut ready: F,
    ) -> crate::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if ready().await {
                return Ok(());
            }
            if let Some(status) = self.exited() {
                bail!("{} exited before it was ready ({status})", self.name);
            }
            if Instant::now() >= deadline {
                bail!("{} was not ready after {timeout:?}", self.name);
            }
            tokio::time::sleep(EXIT_POLL).await;
        }
    }

    /// The child's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the child has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM and waits up to `grace` for the exit; SIGKILL after that.
    /// Returns the exit status and whether the child exited by itself.
    pub(crate) async fn terminate(&mut self, grace: Duration) -> (Option<ExitStatus>, bool) {
        if let Some(status) = self.exited() {
            return (Some(status), true);
        }
        self.signal(Signal::SIGTERM);
        // A paused child only acts on SIGTERM once thawed.
        self.resume();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return (Some(status), true);
            }
            tokio::time::sleep(EXIT_POLL).await;
        }
        eprintln!("{} ignored SIGTERM for {grace:?}: killing it", self.name);
        let _ = self.child.kill();
        (self.child.wait().ok(), false)
    }

    /// Freezes the child (SIGSTOP): its sockets stay open but nothing is read.
    pub(crate) fn pause(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// Thaws a paused child (SIGCONT).
    pub(crate) fn resume(&self) {
        self.signal(Signal::SIGCONT);
    }

    fn signal(&self, signal: Signal) {
        // A pid that does not fit i32 cannot be ours; there is nothing to signal.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
