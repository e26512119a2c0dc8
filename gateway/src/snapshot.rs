//! The immutable configuration snapshot every connection and request reads,
//! and the task that rebuilds it whenever the watched [`ConfigState`]
//! changes.
//!
//! Building happens on a blocking thread, never on the request path; the
//! result is swapped in whole with `ArcSwap`, so a request sees either the
//! old configuration or the new one, never a mix. Unchanged SSL objects keep
//! their built TLS configuration (see [`SniTable::build`]), and upstream TLS
//! profiles that did not change keep their pooled connections (see
//! [`RouteTable::build_with`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use shared::state::ConfigState;
use tokio::sync::watch;

use crate::router::RouteTable;
use crate::tls::SniTable;

/// Everything the data plane needs to serve, built from one etcd revision.
pub struct Snapshot {
    /// The etcd revision this snapshot reflects (0 before the first load).
    pub revision: i64,
    pub tls: SniTable,
    pub routes: RouteTable,
}

impl Snapshot {
    /// What is served before the first configuration arrives: nothing.
    pub fn empty(fallback_sni: Option<&str>) -> Snapshot {
        Snapshot {
            revision: 0,
            tls: SniTable::build(&[], fallback_sni, None),
            routes: RouteTable::build(&[], &BTreeMap::new()),
        }
    }

    /// Builds the snapshot for `state`, reusing what `previous` already built
    /// for unchanged SSL objects.
    pub fn build(state: &ConfigState, fallback_sni: Option<&str>, previous: Option<&Snapshot>) -> Snapshot {
        let ssls: Vec<_> = state.ssls.values().map(|s| Arc::clone(&s.value)).collect();
        let routes: Vec<_> = state.routes.values().map(|s| Arc::clone(&s.value)).collect();
        let upstreams: BTreeMap<_, _> = state
            .upstreams
            .iter()
            .map(|(id, s)| (id.clone(), Arc::clone(&s.value)))
            .collect();
        Snapshot {
            revision: state.revision,
            tls: SniTable::build_for_routes(
                &ssls,
                fallback_sni,
                previous.map(|p| &p.tls),
                &crate::plugins::client_cert_requests(&routes),
            ),
            routes: RouteTable::build_with(
                &routes,
                &upstreams,
                &ssls_by_id(state),
                previous.map(|p| Arc::clone(p.routes.pools())).unwrap_or_default(),
            ),
        }
    }
}

/// The SSL objects by id, for upstream `tls.client_cert_id` and `tls.ca_id`.
fn ssls_by_id(state: &ConfigState) -> BTreeMap<String, Arc<shared::validate::ValidSsl>> {
    state
        .ssls
        .iter()
        .map(|(id, s)| (id.clone(), Arc::clone(&s.value)))
        .collect()
}

/// Rebuilds and swaps the snapshot each time the watched state changes,
/// until the state channel closes. Bursts of changes coalesce: only the
/// newest state is built.
pub async fn follow(
    mut states: watch::Receiver<Option<Arc<ConfigState>>>,
    current: Arc<ArcSwap<Snapshot>>,
    fallback_sni: Option<String>,
) {
    while states.changed().await.is_ok() {
        let Some(state) = states.borrow_and_update().clone() else { continue };
        let previous = current.load_full();
        let fallback = fallback_sni.clone();
        let started = Instant::now();
        let built = tokio::task::spawn_blocking(move || Snapshot::build(&state, fallback.as_deref(), Some(&previous))).await;
        match built {
            Ok(snapshot) => {
                tracing::info!(
                    revision = snapshot.revision,
                    snis = snapshot.tls.len(),
                    routes = snapshot.routes.len(),
                    build_ms = started.elapsed().as_secs_f64() * 1e3,
                    "configuration applied"
                );
                current.store(Arc::new(snapshot));
            }
            Err(err) => tracing::error!(%err, "building the configuration snapshot failed; keeping the previous one"),
        }
    }
}
