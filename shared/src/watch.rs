//! List-then-watch: keeps a [`ConfigState`] in step with etcd.
//!
//! One range read of the prefix, then a watch from the next revision. Any
//! break in the stream (compaction, etcd restart, network) leads to a fresh
//! range read, so missed deletions are never missed. While etcd is
//! unreachable the last published state stays in force and the loop retries
//! with capped exponential backoff.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, WatchResponse, WatchStream};
use tokio::sync::watch;

use crate::state::ConfigState;
use crate::store::{RawEntry, Store};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Starts the watch loop on the current runtime. The receiver holds `None`
/// until the first listing succeeded; after that, the latest state. Slow
/// consumers see only the newest state, which coalesces bursts of changes.
pub fn spawn(store: Store) -> watch::Receiver<Option<Arc<ConfigState>>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(run(store, tx));
    rx
}

async fn run(store: Store, tx: watch::Sender<Option<Arc<ConfigState>>>) {
    let mut backoff = MIN_BACKOFF;
    while !tx.is_closed() {
        match sync_and_follow(&store, &tx).await {
            Ok(()) => backoff = MIN_BACKOFF,
            Err(reason) => {
                tracing::warn!(endpoints = store.endpoints(), %reason, "etcd sync interrupted; serving the last known config");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Lists everything, publishes it, then follows the watch until the stream
/// ends. `Ok` means "relist now" (e.g. after compaction), `Err` means "back off first".
async fn sync_and_follow(
    store: &Store,
    tx: &watch::Sender<Option<Arc<ConfigState>>>,
) -> Result<(), String> {
    let listing = store.load_all().await.map_err(|e| e.to_string())?;
    let previous = tx.borrow().clone();
    let mut state = ConfigState::from_listing(store.layout(), listing.revision, &listing.kvs, previous.as_deref());
    tracing::info!(
        revision = state.revision,
        ssls = state.ssls.len(),
        routes = state.routes.len(),
        upstreams = state.upstreams.len(),
        invalid = state.invalid.len(),
        "loaded configuration from etcd"
    );
    publish(tx, &state);

    let mut stream = store
        .watch_from(listing.revision + 1)
        .await
        .map_err(|e| e.to_string())?;
    follow(store, &mut stream, &mut state, tx).await
}

async fn follow(
    store: &Store,
    stream: &mut WatchStream,
    state: &mut ConfigState,
    tx: &watch::Sender<Option<Arc<ConfigState>>>,
) -> Result<(), String> {
    loop {
        let response = match stream.message().await {
            Ok(Some(response)) => response,
            Ok(None) => return Err("watch stream closed by etcd".into()),
            Err(err) => return Err(format!("watch stream broken: {err}")),
        };
        if response.compact_revision() > 0 {
            tracing::warn!(compact_revision = response.compact_revision(), "watch fell behind a compaction; relisting");
            return Ok(());
        }
        if response.canceled() {
            return Err(format!("watch canceled by etcd: {}", response.cancel_reason()));
        }
        if apply(store, state, &response) {
            publish(tx, state);
        }
    }
}

/// Applies a watch response's events; says whether anything changed.
fn apply(store: &Store, state: &mut ConfigState, response: &WatchResponse) -> bool {
    if let Some(header) = response.header() {
        state.revision = state.revision.max(header.revision());
    }
    let layout = store.layout();
    for event in response.events() {
        let Some(kv) = event.kv() else { continue };
        let raw = RawEntry::from(kv);
        match event.event_type() {
            EventType::Put => state.put(layout, &raw),
            EventType::Delete => state.delete(layout, &raw.key),
        }
    }
    !response.events().is_empty()
}

fn publish(tx: &watch::Sender<Option<Arc<ConfigState>>>, state: &ConfigState) {
    tx.send_replace(Some(Arc::new(state.clone())));
}
