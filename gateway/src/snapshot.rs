//! The immutable configuration snapshot every connection and request reads,
//! and the task that keeps it in step with the watched [`ConfigState`].
//!
//! Building happens on a blocking thread, never on the request path; the
//! result is swapped in whole with `ArcSwap`, so a request sees either the
//! old configuration or the new one, never a mix. After the first build,
//! each change is applied as a difference: the route table is updated, not
//! rebuilt (see [`RouteTable::update`]), and the SNI table is rebuilt only
//! when an SSL object (or a route asking for client certificates) changed,
//! reusing the built TLS configuration of every unchanged SSL object (see
//! [`SniTable::build`]). Upstream TLS profiles that did not change keep
//! their pooled connections.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use imbl::ordmap::DiffItem;
use imbl::OrdMap;
use shared::state::{ConfigState, Stored};
use shared::validate::{ValidRoute, CLIENT_CERT_AUTH};
use tokio::sync::watch;

use crate::router::{Changes, RouteTable};
use crate::tls::{RouteCertRequests, SniTable};

/// Everything the data plane needs to serve, built from one etcd revision.
pub struct Snapshot {
    /// The etcd revision this snapshot reflects (0 before the first load).
    pub revision: i64,
    /// Shared with the previous snapshot when no SSL object changed.
    pub tls: Arc<SniTable>,
    pub routes: RouteTable,
}

impl Snapshot {
    /// What is served before the first configuration arrives: nothing.
    pub fn empty(fallback_sni: Option<&str>) -> Snapshot {
        Snapshot {
            revision: 0,
            tls: Arc::new(SniTable::build(&[], fallback_sni, None)),
            routes: RouteTable::build(&[], &BTreeMap::new()),
        }
    }

    /// Builds the snapshot for `state` from scratch, reusing what `previous`
    /// already built for unchanged SSL objects.
    pub fn build(
        state: &ConfigState,
        fallback_sni: Option<&str>,
        previous: Option<&Snapshot>,
    ) -> Snapshot {
        let requests = cert_requests(state);
        Snapshot::build_with(state, fallback_sni, previous, &requests)
    }

    fn build_with(
        state: &ConfigState,
        fallback_sni: Option<&str>,
        previous: Option<&Snapshot>,
        requests: &RouteCertRequests,
    ) -> Snapshot {
        let routes: Vec<_> = state
            .routes
            .values()
            .map(|s| Arc::clone(&s.value))
            .collect();
        let upstreams: BTreeMap<_, _> = state
            .upstreams
            .iter()
            .map(|(id, s)| (id.clone(), Arc::clone(&s.value)))
            .collect();
        Snapshot {
            revision: state.revision,
            tls: Arc::new(sni_table(state, fallback_sni, previous, requests)),
            routes: RouteTable::build_with(
                &routes,
                &upstreams,
                &ssls_by_id(state),
                previous
                    .map(|p| Arc::clone(p.routes.pools()))
                    .unwrap_or_default(),
            ),
        }
    }
}

fn sni_table(
    state: &ConfigState,
    fallback_sni: Option<&str>,
    previous: Option<&Snapshot>,
    requests: &RouteCertRequests,
) -> SniTable {
    let ssls: Vec<_> = state.ssls.values().map(|s| Arc::clone(&s.value)).collect();
    SniTable::build_for_routes(&ssls, fallback_sni, previous.map(|p| &*p.tls), requests)
}

/// What the handshakes ask for on behalf of routes verifying client
/// certificates themselves.
fn cert_requests(state: &ConfigState) -> RouteCertRequests {
    let routes: Vec<_> = state
        .routes
        .values()
        .filter(|s| asks_for_certificates(&s.value))
        .map(|s| Arc::clone(&s.value))
        .collect();
    crate::plugins::client_cert_requests(&routes)
}

fn asks_for_certificates(route: &ValidRoute) -> bool {
    route.plugins.contains_key(CLIENT_CERT_AUTH)
}

/// The SSL objects by id, for upstream `tls.client_cert_id` and `tls.ca_id`.
fn ssls_by_id(state: &ConfigState) -> BTreeMap<String, Arc<shared::validate::ValidSsl>> {
    state
        .ssls
        .iter()
        .map(|(id, s)| (id.clone(), Arc::clone(&s.value)))
        .collect()
}

/// Builds each snapshot from the one before: remembers the state the
/// current snapshot was built from, to apply only what changed since.
#[derive(Clone)]
pub struct Builder {
    fallback_sni: Option<String>,
    /// The state the current snapshot reflects, and its certificate requests.
    last: Option<(Arc<ConfigState>, Arc<RouteCertRequests>)>,
}

impl Builder {
    /// A builder whose first snapshot is a full build.
    pub fn new(fallback_sni: Option<String>) -> Builder {
        Builder {
            fallback_sni,
            last: None,
        }
    }

    /// The snapshot for `state`, given `current`: the snapshot this builder
    /// made last (or any snapshot, for the first call).
    pub fn next(&mut self, state: Arc<ConfigState>, current: &Snapshot) -> Snapshot {
        let fallback = self.fallback_sni.as_deref();
        let (snapshot, requests) = match self.last.take() {
            None => {
                let requests = Arc::new(cert_requests(&state));
                (
                    Snapshot::build_with(&state, fallback, Some(current), &requests),
                    requests,
                )
            }
            Some((last, requests)) => apply(&last, &state, current, fallback, requests),
        };
        self.last = Some((state, requests));
        snapshot
    }
}

/// The snapshot for `state`, from `current` (built from `last` with
/// `requests`), rebuilding only what the differences require.
fn apply(
    last: &ConfigState,
    state: &ConfigState,
    current: &Snapshot,
    fallback_sni: Option<&str>,
    requests: Arc<RouteCertRequests>,
) -> (Snapshot, Arc<RouteCertRequests>) {
    let changes = Changes {
        routes: changed(&last.routes, &state.routes),
        upstreams: changed(&last.upstreams, &state.upstreams),
        ssls: changed(&last.ssls, &state.ssls)
            .into_iter()
            .map(|(id, _)| id)
            .collect(),
    };
    let asked_before = |id: &str| {
        last.routes
            .get(id)
            .is_some_and(|s| asks_for_certificates(&s.value))
    };
    let requests_changed = changes
        .routes
        .iter()
        .any(|(id, now)| asked_before(id) || now.as_deref().is_some_and(asks_for_certificates));
    let requests = if requests_changed {
        Arc::new(cert_requests(state))
    } else {
        requests
    };
    let tls = if requests_changed || !changes.ssls.is_empty() {
        Arc::new(sni_table(state, fallback_sni, Some(current), &requests))
    } else {
        Arc::clone(&current.tls)
    };
    let ssl = |id: &str| state.ssls.get(id).map(|s| Arc::clone(&s.value));
    let routes = if changes.is_empty() {
        current.routes.clone()
    } else {
        current.routes.update(&changes, &ssl)
    };
    let snapshot = Snapshot {
        revision: state.revision,
        tls,
        routes,
    };
    (snapshot, requests)
}

/// The ids whose object differs between `before` and `after` (added,
/// replaced or removed), with the new version. The maps are persistent and
/// share what did not change, which the diff skips: the cost follows the
/// number of changes, not of objects.
fn changed<T>(
    before: &OrdMap<String, Stored<T>>,
    after: &OrdMap<String, Stored<T>>,
) -> Vec<(String, Option<Arc<T>>)> {
    before
        .diff(after)
        .map(|item| match item {
            DiffItem::Add(id, now) | DiffItem::Update { new: (id, now), .. } => {
                (id.clone(), Some(Arc::clone(&now.value)))
            }
            DiffItem::Remove(id, _) => (id.clone(), None),
        })
        .collect()
}

/// Keeps the served snapshot in step with the watched state, until the
/// state channel closes. Bursts of changes coalesce: only the newest state
/// is applied.
pub async fn follow(
    mut states: watch::Receiver<Option<Arc<ConfigState>>>,
    current: Arc<ArcSwap<Snapshot>>,
    fallback_sni: Option<String>,
) {
    let mut builder = Builder::new(fallback_sni);
    while states.changed().await.is_ok() {
        let Some(state) = states.borrow_and_update().clone() else {
            continue;
        };
        let previous = current.load_full();
        let fallback_sni = builder.fallback_sni.clone();
        let started = Instant::now();
        let built = tokio::task::spawn_blocking(move || {
            let snapshot = builder.next(state, &previous);
            (snapshot, builder)
        })
        .await;
        match built {
            Ok((snapshot, returned)) => {
                builder = returned;
                let revision = snapshot.revision;
                let (snis, routes) = (snapshot.tls.len(), snapshot.routes.len());
                current.store(Arc::new(snapshot));
                tracing::info!(
                    revision,
                    snis,
                    routes,
                    build_ms = started.elapsed().as_secs_f64() * 1e3,
                    "configuration applied"
                );
            }
            Err(err) => {
                // The builder went down with the failed build: start afresh
                // from the next state.
                tracing::error!(%err, "building the configuration snapshot failed; keeping the previous one");
                builder = Builder::new(fallback_sni);
            }
        }
    }
}

#[cfg(test)]
mod tests;
