//! List-then-watch: keeps a [`ConfigState`] in step with etcd.
//!
//! One range read of the prefix, then a watch from the next revision. Any
//! break in the stream (compaction, etcd restart, network) leads to a fresh
//! range read, so missed deletions are never missed. A range read whose
//! revision is lower than one already seen means etcd was restored from a
//! snapshot: it is logged, and the read replaces the whole state (objects are
//! only reused when their stored bytes are identical).
//!
//! While etcd is unreachable the last published state stays in force and the
//! loop retries with capped exponential backoff. With a [`Cache`], every state
//! read from etcd is also written to disk (off this loop, at most a few times
//! a second), and a process that starts while etcd is unreachable serves the
//! cached state — validated again — until etcd answers.
//!
//! [`SyncStatus`] tells how the data plane stands with etcd, for the status
//! endpoints.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use etcd_client::{EventType, WatchResponse, WatchStream};
use tokio::sync::watch;

use crate::cache::Cache;
use crate::etcd_layout::KeyLayout;
use crate::keyring::Keyring;
use crate::state::ConfigState;
use crate::store::{RawEntry, StoreReader};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// At most one cache write per interval; changes in between coalesce.
const CACHE_WRITE_INTERVAL: Duration = Duration::from_millis(250);

/// The receiving ends of a running watch loop.
pub struct Watch {
    /// `None` until a configuration was loaded (from etcd or the cache);
    /// after that, the latest state. Slow consumers see only the newest
    /// state, which coalesces bursts of changes.
    pub states: watch::Receiver<Option<Arc<ConfigState>>>,
    /// How the served state stands with etcd.
    pub status: watch::Receiver<SyncStatus>,
}

/// Where the served state was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Etcd,
    /// The last-known-good cache file, read because etcd was unreachable at
    /// startup.
    Cache,
    /// A standalone file (`deployment.config_provider: yaml`).
    File,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Etcd => "etcd",
            Source::Cache => "cache",
            Source::File => "file",
        }
    }
}

/// How the data plane stands with etcd.
#[derive(Clone, Debug, Default)]
pub struct SyncStatus {
    /// Whether the served state follows etcd right now (listed, watching).
    pub connected: bool,
    /// Where the served state came from; `None` before anything was loaded.
    pub source: Option<Source>,
    /// The etcd revision of the served state.
    pub revision: i64,
    /// When etcd last confirmed the state (a full read or a watch message).
    pub last_sync: Option<SystemTime>,
    /// Why the last attempt to reach etcd failed, until one succeeds.
    pub last_error: Option<String>,
    /// The revision last written to the cache file.
    pub cache_revision: Option<i64>,
    /// Why the last cache write failed, until one succeeds.
    pub cache_error: Option<String>,
    /// The first attempt found nothing to serve: etcd was unreachable and
    /// there was no usable cache.
    pub initial_load_failed: bool,
}

impl SyncStatus {
    /// Whether a configuration is loaded (from etcd or the cache).
    pub fn loaded(&self) -> bool {
        self.source.is_some()
    }

    /// Whether the served configuration may lag behind etcd: it was loaded,
    /// but etcd is not followed right now.
    pub fn stale(&self) -> bool {
        self.loaded() && !self.connected
    }

    /// Whether the first attempt to load a configuration is over: one was
    /// loaded (from etcd or the cache), or there is none to load for now.
    pub fn first_load_over(&self) -> bool {
        self.loaded() || self.initial_load_failed
    }
}

/// Starts the watch loop (and, with a cache, its writer) on the current
/// runtime. `keyring` opens the private keys sealed in etcd (and in the
/// cache, which holds them as etcd does).
pub fn spawn(store: StoreReader, keyring: Keyring, cache: Option<Cache>) -> Watch {
    let (states_tx, states) = watch::channel(None);
    let (status_tx, status) = watch::channel(SyncStatus::default());
    let to_cache = cache.clone().map(|cache| {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(write_behind(
            cache,
            store.layout().clone(),
            rx,
            status_tx.clone(),
        ));
        tx
    });
    let follower = Follower {
        store,
        keyring,
        cache,
        states: states_tx,
        status: status_tx,
        to_cache,
    };
    tokio::spawn(follower.run());
    Watch { states, status }
}

/// Why one pass of list-then-watch ended, which says what comes next.
#[derive(Debug)]
enum Break {
    /// The watch cannot go on but etcd is fine (it fell behind a
    /// compaction): list again at once.
    Relist,
    /// etcd failed, or ended the watch, for this reason: back off, then
    /// list again.
    BackOff(String),
}

/// The watch loop's state.
struct Follower {
    store: StoreReader,
    keyring: Keyring,
    cache: Option<Cache>,
    states: watch::Sender<Option<Arc<ConfigState>>>,
    status: watch::Sender<SyncStatus>,
    /// States read from etcd, for the cache writer.
    to_cache: Option<watch::Sender<Option<Arc<ConfigState>>>>,
}

impl Follower {
    async fn run(self) {
        let mut backoff = MIN_BACKOFF;
        let mut cache_tried = false;
        while !self.states.is_closed() {
            match self.sync_and_follow().await {
                Break::Relist => backoff = MIN_BACKOFF,
                Break::BackOff(reason) => {
                    self.disconnected(reason);
                    if !cache_tried && self.states.borrow().is_none() {
                        cache_tried = true;
                        self.load_cache().await;
                        if self.states.borrow().is_none() {
                            self.status.send_modify(|s| s.initial_load_failed = true);
                        }
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Lists everything, publishes it, then follows the watch until the
    /// stream ends; says what to do next.
    async fn sync_and_follow(&self) -> Break {
        let listing = match self.store.load_all().await {
            Ok(listing) => listing,
            Err(err) => return Break::BackOff(err.to_string()),
        };
        let previous = self.states.borrow().clone();
        warn_if_restored(previous.as_deref(), listing.revision);
        let mut state = ConfigState::from_listing(
            self.layout(),
            &self.keyring,
            listing.revision,
            &listing.kvs,
            previous.as_deref(),
        );
        tracing::info!(
            revision = state.revision,
            ssls = state.ssls.len(),
            routes = state.routes.len(),
            upstreams = state.upstreams.len(),
            invalid = state.invalid.len(),
            "loaded configuration from etcd"
        );
        self.publish(&state, Source::Etcd);

        match self.store.watch_from(listing.revision + 1).await {
            Ok(mut stream) => self.follow(&mut stream, &mut state).await,
            Err(err) => Break::BackOff(err.to_string()),
        }
    }

    async fn follow(&self, stream: &mut WatchStream, state: &mut ConfigState) -> Break {
        loop {
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => return Break::BackOff("watch stream closed by etcd".into()),
                Err(err) => return Break::BackOff(format!("watch stream broken: {err}")),
            };
            if response.compact_revision() > 0 {
                tracing::warn!(
                    compact_revision = response.compact_revision(),
                    "watch fell behind a compaction; relisting"
                );
                return Break::Relist;
            }
            if response.canceled() {
                return Break::BackOff(format!(
                    "watch canceled by etcd: {}",
                    response.cancel_reason()
                ));
            }
            if apply(self.layout(), &self.keyring, state, &response) {
                self.publish(state, Source::Etcd);
            } else {
                // A progress notification: etcd confirms nothing changed.
                self.status
                    .send_modify(|s| s.last_sync = Some(SystemTime::now()));
            }
        }
    }

    fn publish(&self, state: &ConfigState, source: Source) {
        let state = Arc::new(state.clone());
        let revision = state.revision;
        self.states.send_replace(Some(Arc::clone(&state)));
        if let (Source::Etcd, Some(to_cache)) = (source, &self.to_cache) {
            to_cache.send_replace(Some(state));
        }
        self.status.send_modify(|s| {
            s.source = Some(source);
            s.revision = revision;
            if source == Source::Etcd {
                s.connected = true;
                s.last_sync = Some(SystemTime::now());
                s.last_error = None;
            }
        });
    }

    fn disconnected(&self, reason: String) {
        if self.states.borrow().is_some() {
            tracing::warn!(endpoints = self.store.endpoints(), %reason, "etcd sync interrupted; serving the last known config");
        } else {
            tracing::warn!(endpoints = self.store.endpoints(), %reason, "cannot read the configuration from etcd; nothing to serve yet");
        }
        self.status.send_modify(|s| {
            s.connected = false;
            s.last_error = Some(reason);
        });
    }

    /// Serves the last-known-good cache, if there is a usable one. Reading
    /// and validating happen on a blocking thread.
    async fn load_cache(&self) {
        let Some(cache) = self.cache.clone() else {
            return;
        };
        let path = cache.path().display().to_string();
        let (layout, keyring) = (self.layout().clone(), self.keyring.clone());
        let loaded =
            tokio::task::spawn_blocking(move || {
                let listing = cache.load()?;
                Ok::<_, crate::cache::CacheError>(listing.map(|l| {
                    ConfigState::from_listing(&layout, &keyring, l.revision, &l.kvs, None)
                }))
            })
            .await;
        match loaded {
            Ok(Ok(Some(state))) => {
                tracing::warn!(
                    %path,
                    revision = state.revision,
                    ssls = state.ssls.len(),
                    routes = state.routes.len(),
                    upstreams = state.upstreams.len(),
                    invalid = state.invalid.len(),
                    "etcd is unreachable: serving the last-known-good configuration from the cache (stale until etcd answers)"
                );
                self.publish(&state, Source::Cache);
            }
            Ok(Ok(None)) => {
                tracing::info!(%path, "no last-known-good cache yet; nothing is served until etcd answers")
            }
            Ok(Err(err)) => {
                tracing::error!(%err, "ignoring the last-known-good cache; nothing is served until etcd answers")
            }
            Err(err) => tracing::error!(%path, %err, "loading the last-known-good cache failed"),
        }
    }

    fn layout(&self) -> &KeyLayout {
        self.store.layout()
    }
}

/// A full read at a lower revision than the state already served: etcd
/// lost history it had shown us, which only a restore does.
fn warn_if_restored(previous: Option<&ConfigState>, revision: i64) {
    if let Some(previous) = previous.filter(|p| revision < p.revision) {
        tracing::warn!(
            revision,
            previous_revision = previous.revision,
            "etcd revision went backwards: etcd was restored from a snapshot (or replaced); resyncing every object to the restored state"
        );
    }
}

/// Applies a watch response's events; says whether anything changed.
fn apply(
    layout: &KeyLayout,
    keyring: &Keyring,
    state: &mut ConfigState,
    response: &WatchResponse,
) -> bool {
    if let Some(header) = response.header() {
        state.revision = state.revision.max(header.revision());
    }
    for event in response.events() {
        let Some(kv) = event.kv() else { continue };
        let raw = RawEntry::from(kv);
        match event.event_type() {
            EventType::Put => state.put(layout, keyring, &raw),
            EventType::Delete => state.delete(layout, &raw.key),
        }
    }
    !response.events().is_empty()
}

/// Writes each state read from etcd to the cache file, on a blocking thread
/// and at most once per [`CACHE_WRITE_INTERVAL`]; a burst of changes ends in
/// one write of the newest state.
async fn write_behind(
    cache: Cache,
    layout: KeyLayout,
    mut states: watch::Receiver<Option<Arc<ConfigState>>>,
    status: watch::Sender<SyncStatus>,
) {
    while states.changed().await.is_ok() {
        let Some(state) = states.borrow_and_update().clone() else {
            continue;
        };
        let revision = state.revision;
        let (file, keys) = (cache.clone(), layout.clone());
        let saved =
            tokio::task::spawn_blocking(move || file.save(state.revision, &state.entries(&keys)))
                .await;
        let outcome = match saved {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(err) => Err(format!("the cache writer failed: {err}")),
        };
        record_cache_write(&status, revision, outcome);
        tokio::time::sleep(CACHE_WRITE_INTERVAL).await;
    }
}

fn record_cache_write(
    status: &watch::Sender<SyncStatus>,
    revision: i64,
    outcome: Result<(), String>,
) {
    status.send_modify(|s| match outcome {
        Ok(()) => {
            tracing::debug!(revision, "last-known-good cache written");
            s.cache_revision = Some(revision);
            s.cache_error = None;
        }
        Err(reason) => {
            // Once per distinct failure: a full disk must not flood the log.
            if s.cache_error.as_deref() != Some(reason.as_str()) {
                tracing::warn!(%reason, "cannot write the last-known-good cache; serving goes on");
            }
            s.cache_error = Some(reason);
        }
    });
}
