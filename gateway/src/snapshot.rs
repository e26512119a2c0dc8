//! The immutable configuration snapshot every connection and request reads,
//! and the task that keeps it in step with the watched [`ConfigState`].
//!
//! Building happens on a blocking thread, never on the request path; the
//! result is swapped in whole with `ArcSwap`, so a request sees either the
//! old configuration or the new one, never a mix. After the first build,
//! each change is applied as a difference: the route table is updated, not
//! rebuilt (see [`RouteTable::update`]), and so is the SNI table when an SSL
//! object changed (see [`SniTable::update`]): both cost what changed, not
//! what the configuration holds. The routes verifying client certificates
//! themselves are tracked apart: when one of them changed, every SSL object
//! is checked for the CA names its handshakes ask for, and only those whose
//! names changed are built again.
//! Upstream TLS profiles that did not change keep their pooled connections.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use imbl::ordmap::DiffItem;
use imbl::OrdMap;
use shared::state::{ConfigState, Stored};
use shared::validate::{ValidRoute, ValidSsl, CLIENT_CERT_AUTH};
use tokio::sync::watch;

use crate::router::{Changes, RouteTable};
use crate::tls::{RouteCertRequests, SniTable};

/// Everything the data plane needs to serve, built from one etcd revision.
pub struct Snapshot {
    /// The etcd revision this snapshot reflects (0 before the first load).
    pub revision: i64,
    /// Shared with the previous snapshot when no SSL object changed, and
    /// sharing every unchanged part with it otherwise.
    pub tls: Arc<SniTable>,
    pub routes: RouteTable,
}

/// A stored object that cannot serve, and why (`/status`, metrics).
pub struct Unbuildable {
    /// `route`, `ssl` or `upstream`.
    pub object: &'static str,
    pub id: String,
    /// A short fixed name of the cause, usable as a label.
    pub kind: &'static str,
    pub reason: String,
}

impl Snapshot {
    /// The routes, SSL objects and upstreams that are stored but cannot
    /// serve, in that order, each by id.
    pub fn unbuildable(&self) -> Vec<Unbuildable> {
        let routes = self
            .routes
            .unbuildable()
            .map(|(object, id, error)| Unbuildable {
                object,
                id: id.to_owned(),
                kind: error.kind(),
                reason: error.to_string(),
            });
        let ssls = self.tls.unserved().map(|(id, why)| Unbuildable {
            object: "ssl",
            id: id.to_owned(),
            kind: why.kind,
            reason: why.reason.to_string(),
        });
        let mut all: Vec<Unbuildable> = routes.chain(ssls).collect();
        all.sort_by(|a, b| (a.object, &a.id).cmp(&(b.object, &b.id)));
        all
    }

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
        let requests = CertRoutes::of(state).requests;
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

/// The routes verifying client certificates themselves, and what the
/// handshakes ask for on their behalf.
#[derive(Clone)]
struct CertRoutes {
    /// By id: a route change updates them without a pass over every route.
    routes: OrdMap<String, Arc<ValidRoute>>,
    requests: Arc<RouteCertRequests>,
}

impl CertRoutes {
    fn of(state: &ConfigState) -> CertRoutes {
        let routes = state
            .routes
            .iter()
            .filter(|(_, s)| asks_for_certificates(&s.value))
            .map(|(id, s)| (id.clone(), Arc::clone(&s.value)))
            .collect();
        CertRoutes::from_routes(routes)
    }

    fn from_routes(routes: OrdMap<String, Arc<ValidRoute>>) -> CertRoutes {
        let listed: Vec<_> = routes.values().cloned().collect();
        CertRoutes {
            requests: Arc::new(crate::plugins::client_cert_requests(&listed)),
            routes,
        }
    }

    /// These after the route `changes`; `None` when none of the changed
    /// routes verifies certificates, before or after.
    fn after(&self, changes: &[(String, Option<Arc<ValidRoute>>)]) -> Option<CertRoutes> {
        let mut routes = self.routes.clone();
        let mut changed = false;
        for (id, now) in changes {
            match now.as_ref().filter(|route| asks_for_certificates(route)) {
                Some(route) => {
                    routes.insert(id.clone(), Arc::clone(route));
                    changed = true;
                }
                None => changed |= routes.remove(id).is_some(),
            }
        }
        changed.then(|| CertRoutes::from_routes(routes))
    }
}

fn asks_for_certificates(route: &ValidRoute) -> bool {
    route.plugins.contains(CLIENT_CERT_AUTH)
}

/// The SSL objects by id, for upstream `tls.client_cert_id` and `tls.ca_id`.
fn ssls_by_id(state: &ConfigState) -> BTreeMap<String, Arc<ValidSsl>> {
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
    /// The state the current snapshot reflects, and its routes verifying
    /// client certificates.
    last: Option<(Arc<ConfigState>, CertRoutes)>,
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
        let (snapshot, cert_routes) = match self.last.take() {
            None => {
                let cert_routes = CertRoutes::of(&state);
                let requests = &cert_routes.requests;
                let snapshot = Snapshot::build_with(&state, fallback, Some(current), requests);
                (snapshot, cert_routes)
            }
            Some((last, cert_routes)) => apply(&last, &state, current, fallback, cert_routes),
        };
        self.last = Some((state, cert_routes));
        snapshot
    }
}

/// The snapshot for `state`, from `current` (built from `last`, whose routes
/// verifying certificates are `cert_routes`), rebuilding only what the
/// differences require.
fn apply(
    last: &ConfigState,
    state: &ConfigState,
    current: &Snapshot,
    fallback_sni: Option<&str>,
    cert_routes: CertRoutes,
) -> (Snapshot, CertRoutes) {
    let ssls = changed(&last.ssls, &state.ssls);
    let changes = Changes {
        routes: changed(&last.routes, &state.routes),
        upstreams: changed(&last.upstreams, &state.upstreams),
        ssls: ssls.iter().map(|(id, _)| id.clone()).collect(),
    };
    let (cert_routes, tls) = match cert_routes.after(&changes.routes) {
        Some(now) => {
            let every_ssl = with_every_ssl(state, ssls);
            let tls = current.tls.update(&every_ssl, fallback_sni, &now.requests);
            (now, Arc::new(tls))
        }
        None if ssls.is_empty() => (cert_routes, Arc::clone(&current.tls)),
        None => {
            let tls = current
                .tls
                .update(&ssls, fallback_sni, &cert_routes.requests);
            (cert_routes, Arc::new(tls))
        }
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
    (snapshot, cert_routes)
}

/// The SSL object `changes` with every object of `state` added: what
/// [`SniTable::update`] must look at when the CA names asked for on behalf
/// of routes changed, which may concern any object. Objects whose entry
/// stays the same cost a comparison each.
fn with_every_ssl(
    state: &ConfigState,
    changes: Vec<(String, Option<Arc<ValidSsl>>)>,
) -> Vec<(String, Option<Arc<ValidSsl>>)> {
    let removed = changes.into_iter().filter(|(_, now)| now.is_none());
    let present = state
        .ssls
        .iter()
        .map(|(id, s)| (id.clone(), Some(Arc::clone(&s.value))));
    removed.chain(present).collect()
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
/// is applied. `tls_changed` is told whenever the SNI table changed, so
/// that open connections can check the policy they were judged under.
pub async fn follow(
    mut states: watch::Receiver<Option<Arc<ConfigState>>>,
    current: Arc<ArcSwap<Snapshot>>,
    fallback_sni: Option<String>,
    tls_changed: watch::Sender<()>,
) {
    let mut builder = Builder::new(fallback_sni);
    while states.changed().await.is_ok() {
        let Some(state) = states.borrow_and_update().clone() else {
            continue;
        };
        let previous = current.load_full();
        let previous_tls = Arc::clone(&previous.tls);
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
                let new_tls = !Arc::ptr_eq(&snapshot.tls, &previous_tls);
                current.store(Arc::new(snapshot));
                if new_tls {
                    tls_changed.send_replace(());
                }
                crate::metrics::observe_config_apply(started.elapsed());
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
