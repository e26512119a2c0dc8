//! Following a standalone file: polled once a second, re-read when its
//! identity changes, published only when the whole file is valid.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::LoadError;
use crate::keyring::Keyring;
use crate::state::ConfigState;
use crate::watch::{Source, SyncStatus, Watch};

/// How often the file is checked for a change.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What tells one version of the file from the next. `stat` follows
/// symlinks, so the swap of a Kubernetes ConfigMap's `..data` link shows as a
/// new inode even when size and time happen to match; an edit in place shows
/// in the size or the modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Fingerprint {
    fn of(path: &Path) -> std::io::Result<Fingerprint> {
        let meta = std::fs::metadata(path)?;
        Ok(Fingerprint {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        })
    }
}

/// Loads the file (on a blocking thread) and, once it is valid, follows it
/// on the current runtime. A file that cannot be loaded at start is an
/// error: there is nothing to serve.
pub async fn spawn(path: PathBuf, keyring: Keyring) -> Result<Watch, LoadError> {
    let seen = Fingerprint::of(&path).ok();
    let state = load_blocking(&path, &keyring, None, 1).await?;
    log_loaded(&path, &state);
    // Sent rather than the channel's initial value: a consumer waits for a
    // change, as it does with etcd.
    let (states_tx, states) = watch::channel(None);
    states_tx.send_replace(Some(Arc::new(state)));
    let (status_tx, status) = watch::channel(loaded_status(1));
    let follower = Follower {
        path,
        keyring,
        states: states_tx,
        status: status_tx,
        seen,
        stat_error: None,
    };
    tokio::spawn(follower.run());
    Ok(Watch { states, status })
}

struct Follower {
    path: PathBuf,
    keyring: Keyring,
    states: watch::Sender<Option<Arc<ConfigState>>>,
    status: watch::Sender<SyncStatus>,
    /// The version last read (valid or not).
    seen: Option<Fingerprint>,
    /// The last failure to stat the file, logged once.
    stat_error: Option<String>,
}

impl Follower {
    async fn run(mut self) {
        let mut generation = 1;
        while !self.states.is_closed() {
            tokio::time::sleep(POLL_INTERVAL).await;
            if !self.changed() {
                continue;
            }
            generation += 1;
            let previous = self.states.borrow().clone();
            match load_blocking(&self.path, &self.keyring, previous.as_deref(), generation).await {
                Ok(state) => {
                    log_loaded(&self.path, &state);
                    self.states.send_replace(Some(Arc::new(state)));
                    self.status.send_replace(loaded_status(generation));
                }
                Err(err) => self.refused(&err),
            }
        }
    }

    /// Whether the file is another version than the one last read.
    fn changed(&mut self) -> bool {
        match Fingerprint::of(&self.path) {
            Ok(now) => {
                self.stat_error = None;
                let changed = self.seen != Some(now);
                self.seen = Some(now);
                changed
            }
            Err(err) => {
                let reason = format!("cannot read {}: {err}", self.path.display());
                if self.stat_error.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(%reason, "standalone file unavailable; serving the last valid configuration");
                    self.status.send_modify(|s| {
                        s.connected = false;
                        s.last_error = Some(reason.clone());
                    });
                    self.stat_error = Some(reason);
                }
                // Whatever comes back at this path is read again.
                self.seen = None;
                false
            }
        }
    }

    /// The new version is refused whole; the previous one stays in force.
    fn refused(&self, err: &LoadError) {
        let reason = err.to_string();
        tracing::error!(%reason, "refusing the changed standalone file; the previous configuration stays in force");
        self.status.send_modify(|s| {
            s.connected = false;
            s.last_error = Some(reason);
        });
    }
}

async fn load_blocking(
    path: &Path,
    keyring: &Keyring,
    previous: Option<&ConfigState>,
    generation: i64,
) -> Result<ConfigState, LoadError> {
    let (path, keyring) = (path.to_owned(), keyring.clone());
    let previous = previous.cloned();
    tokio::task::spawn_blocking(move || super::load(&path, &keyring, previous.as_ref(), generation))
        .await
        .unwrap_or_else(|err| {
            Err(LoadError::Invalid {
                path: String::new(),
                problems: vec![super::Problem::new("", format!("the loader failed: {err}"))],
            })
        })
}

/// The file is followed and its content served: not stale.
fn loaded_status(generation: i64) -> SyncStatus {
    SyncStatus {
        connected: true,
        source: Some(Source::File),
        revision: generation,
        last_sync: Some(SystemTime::now()),
        ..SyncStatus::default()
    }
}

fn log_loaded(path: &Path, state: &ConfigState) {
    tracing::info!(
        path = %path.display(),
        revision = state.revision,
        ssls = state.ssls.len(),
        routes = state.routes.len(),
        upstreams = state.upstreams.len(),
        "loaded configuration from the standalone file"
    );
}
