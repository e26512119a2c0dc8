//! Which route serves a request, by host, path and method.
//!
//! Precedence (APISIX's `radixtree_host_uri`):
//! 1. routes with `hosts` before routes without: an exact host, then a
//!    `*.suffix` wildcard, then `*`, then the host-less routes;
//! 2. within one of those buckets an exact URI beats a prefix, and a longer
//!    prefix beats a shorter one;
//! 3. among routes with the same URI, a higher `priority` wins, then the
//!    smaller route id (so the outcome never depends on load order);
//! 4. a route whose `methods` exclude the request's method is passed over
//!    and the search continues.
//!
//! A lookup costs at most four hash lookups plus one radix-tree walk along
//! the path per bucket, whatever the number of routes.
//!
//! A table is updated, not rebuilt, when configuration changes
//! ([`RouteTable::update`]): only the changed routes, and those depending on
//! a changed upstream or SSL object, are built again, and the persistent
//! index shares everything else with the previous table (see `index`).
//!
//! Routes with `status: 0` are left out. A route that cannot serve (its
//! `upstream_id` is missing, a plugin fails to build) is *kept* and answers
//! 503: dropping it would let its requests fall through to a broader route
//! that lacks its plugins, which fails open.

mod index;
mod prefix_tree;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use http::Method;
use shared::validate::{ClientIdentity, Trust, UpstreamRef, ValidRoute, ValidSsl, ValidUpstream};

use index::Index;

use crate::build_error::BuildError;
use crate::json_text::JsonText;
use crate::metrics::RouteMetrics;
use crate::plugins::PluginChain;
use crate::upstream::{BuildContext, SslObjects, UpstreamPools, UpstreamTarget};

/// Every enabled route of one configuration, indexed for lookup. Cloning is
/// O(1): every part is persistent.
#[derive(Clone, Default)]
pub struct RouteTable {
    index: Index,
    /// Every enabled route, by id: what the next update starts from.
    routes: imbl::HashMap<Arc<str>, Arc<ValidRoute>>,
    /// The stored upstreams as built, by id: every route naming one shares
    /// its balancer.
    targets: imbl::HashMap<Arc<str>, BuiltTarget>,
    /// The routes to build again when an upstream or SSL object changes.
    dependents: imbl::HashMap<Dependency, imbl::HashSet<Arc<str>>>,
    /// The upstream clients this table's upstreams use, handed on to the
    /// next table so that unchanged TLS profiles keep their connections.
    pools: Arc<UpstreamPools>,
    /// Why each route that cannot serve cannot, by id (for `/status`).
    broken: imbl::HashMap<Arc<str>, BuildError>,
}

/// One matchable route, with what it runs once matched.
pub struct RouteEntry {
    pub id: String,
    pub priority: i64,
    /// HTTP/1.1 WebSocket upgrades are proxied ([`crate::proxy`]).
    pub enable_websocket: bool,
    /// Empty: every method.
    methods: Vec<Method>,
    pipeline: Result<Pipeline, BuildError>,
    /// Its metric handles, resolved once.
    pub(crate) metrics: RouteMetrics,
    /// `id` as the access log writes it.
    pub(crate) log_id: JsonText,
}

/// What a route that can serve runs: its plugins, then its upstream.
pub(crate) struct Pipeline {
    pub(crate) plugins: PluginChain,
    pub(crate) upstream: Arc<UpstreamTarget>,
}

/// A stored upstream as built from one version of its object.
#[derive(Clone)]
struct BuiltTarget {
    spec: Arc<ValidUpstream>,
    target: Result<Arc<UpstreamTarget>, BuildError>,
}

/// What a built route was built from, besides itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Dependency {
    /// `upstream_id`.
    Upstream(Arc<str>),
    /// An SSL object its inline upstream's `tls` names.
    Ssl(Arc<str>),
}

/// How the objects a table was built from changed since; see
/// [`RouteTable::update`].
#[derive(Default)]
pub struct Changes {
    /// New versions of routes (`None`: deleted).
    pub routes: Vec<(String, Option<Arc<ValidRoute>>)>,
    /// New versions of stored upstreams (`None`: deleted).
    pub upstreams: Vec<(String, Option<Arc<ValidUpstream>>)>,
    /// SSL objects added, replaced or deleted.
    pub ssls: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.upstreams.is_empty() && self.ssls.is_empty()
    }
}

impl RouteTable {
    /// Indexes the enabled `routes`, resolving `upstream_id`s against
    /// `upstreams` and building every plugin once. Never fails: a route that
    /// cannot serve is logged and answers 503 (see the module docs).
    pub fn build(
        routes: &[Arc<ValidRoute>],
        upstreams: &BTreeMap<String, Arc<ValidUpstream>>,
    ) -> RouteTable {
        RouteTable::build_with(routes, upstreams, &BTreeMap::new(), Arc::default())
    }

    /// [`RouteTable::build`], resolving upstream `tls.client_cert_id` and
    /// `tls.ca_id` against `ssls`, and reusing the clients (with their warm
    /// connections) of `pools` for the TLS profiles still in use; pass the
    /// previous table's [`RouteTable::pools`].
    pub fn build_with(
        routes: &[Arc<ValidRoute>],
        upstreams: &BTreeMap<String, Arc<ValidUpstream>>,
        ssls: &BTreeMap<String, Arc<ValidSsl>>,
        pools: Arc<UpstreamPools>,
    ) -> RouteTable {
        let mut table = RouteTable {
            pools,
            ..RouteTable::default()
        };
        let ssl = |id: &str| ssls.get(id).cloned();
        for (id, spec) in upstreams {
            table.put_target(id, Arc::clone(spec), &ssl);
        }
        for route in routes {
            table.put_route(route, &ssl);
        }
        table
    }

    /// The table for the configuration that differs from this table's by
    /// `changes`; `ssl` finds the SSL objects of that configuration by id.
    /// Only the changed routes, and the routes whose upstream or upstream
    /// TLS objects changed, are built again; everything else is shared.
    pub fn update(
        &self,
        changes: &Changes,
        ssl: &dyn Fn(&str) -> Option<Arc<ValidSsl>>,
    ) -> RouteTable {
        let mut table = self.clone();
        let mut stale: HashSet<Arc<str>> = HashSet::new();
        let mut upstreams: Vec<(Arc<str>, Option<Arc<ValidUpstream>>)> = changes
            .upstreams
            .iter()
            .map(|(id, spec)| (Arc::from(id.as_str()), spec.clone()))
            .collect();
        for id in &changes.ssls {
            stale.extend(table.dependents_of(&Dependency::Ssl(Arc::from(id.as_str()))));
            // Stored upstreams whose `tls` names the object: built again too.
            for (upstream, built) in table.targets.iter() {
                if ssl_references(&built.spec).any(|r| r == id) {
                    upstreams.push((Arc::clone(upstream), Some(Arc::clone(&built.spec))));
                }
            }
        }
        for (id, spec) in upstreams {
            match spec {
                Some(spec) => table.put_target(&id, spec, ssl),
                None => drop(table.targets.remove(&id)),
            }
            stale.extend(table.dependents_of(&Dependency::Upstream(id)));
        }
        for (id, route) in &changes.routes {
            stale.remove(id.as_str());
            table.remove_route(id);
            if let Some(route) = route {
                table.put_route(route, ssl);
            }
        }
        for id in stale {
            if let Some(route) = table.routes.get(&id).cloned() {
                table.put_route(&route, ssl);
            }
        }
        table
    }

    /// The upstream clients of this table, to hand on to the next build.
    pub fn pools(&self) -> &Arc<UpstreamPools> {
        &self.pools
    }

    /// The route serving `path` with `method` on `host`. `host` must be
    /// normalised ([`shared::validate::normalize_host`]) and `path` decoded
    /// and normalised as the proxy does.
    pub fn find(
        &self,
        host: Option<&str>,
        path: &str,
        method: &Method,
    ) -> Option<&Arc<RouteEntry>> {
        self.index.find(host, path, method)
    }

    /// The number of enabled routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The routes, then the stored upstreams, that cannot serve (a route
    /// whose inline upstream has no TLS client included): `route` or
    /// `upstream`, the id and why, in no particular order.
    pub fn unbuildable(&self) -> impl Iterator<Item = (&'static str, &str, &BuildError)> {
        let routes = (self.broken.iter()).map(|(id, error)| ("route", &**id, error));
        let upstreams = (self.targets.iter()).filter_map(|(id, built)| match &built.target {
            Ok(target) => Some(("upstream", &**id, target.tls_error()?)),
            Err(error) => Some(("upstream", &**id, error)),
        });
        routes.chain(upstreams)
    }

    /// Builds `route` and registers it (replacing any route of the same id);
    /// a disabled route is only unregistered.
    fn put_route(&mut self, route: &Arc<ValidRoute>, ssl: &dyn Fn(&str) -> Option<Arc<ValidSsl>>) {
        self.remove_route(&route.id);
        if !route.enabled {
            return;
        }
        let entry = Arc::new(RouteEntry::build(route, &self.targets, &self.pools, ssl));
        self.index.insert(route, &entry);
        let id: Arc<str> = Arc::from(route.id.as_str());
        if let Some(error) = entry.problem(route) {
            self.broken.insert(Arc::clone(&id), error.clone());
        }
        for dependency in dependencies(route) {
            let mut users = self
                .dependents
                .get(&dependency)
                .cloned()
                .unwrap_or_default();
            users.insert(Arc::clone(&id));
            self.dependents.insert(dependency, users);
        }
        self.routes.insert(id, Arc::clone(route));
    }

    fn remove_route(&mut self, id: &str) {
        let Some(route) = self.routes.remove(id) else {
            return;
        };
        self.broken.remove(id);
        self.index.remove(&route, id);
        for dependency in dependencies(&route) {
            let Some(mut users) = self.dependents.get(&dependency).cloned() else {
                continue;
            };
            users.remove(id);
            if users.is_empty() {
                self.dependents.remove(&dependency);
            } else {
                self.dependents.insert(dependency, users);
            }
        }
    }

    fn put_target(
        &mut self,
        id: &str,
        spec: Arc<ValidUpstream>,
        ssl: &dyn Fn(&str) -> Option<Arc<ValidSsl>>,
    ) {
        let ssls = referenced_ssls(&spec, ssl);
        let ctx = build_context(&ssls, &self.pools);
        let target = UpstreamTarget::build(format!("upstream {id}"), &spec, &ctx).map(Arc::new);
        self.targets
            .insert(Arc::from(id), BuiltTarget { spec, target });
    }

    fn dependents_of(&self, dependency: &Dependency) -> Vec<Arc<str>> {
        self.dependents
            .get(dependency)
            .map(|users| users.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Besides its own object, what a route's build reads.
fn dependencies(route: &ValidRoute) -> Vec<Dependency> {
    match &route.upstream {
        UpstreamRef::Id(id) => vec![Dependency::Upstream(Arc::from(id.as_str()))],
        UpstreamRef::Inline(spec) => ssl_references(spec)
            .map(|id| Dependency::Ssl(Arc::from(id)))
            .collect(),
    }
}

/// The SSL objects an upstream's `tls` names (`client_cert_id`, `ca_id`).
fn ssl_references(spec: &ValidUpstream) -> impl Iterator<Item = &str> {
    let tls = spec.tls.as_ref();
    let identity = tls.and_then(|tls| match &tls.identity {
        Some(ClientIdentity::SslObject(id)) => Some(id.as_str()),
        _ => None,
    });
    let trust = tls.and_then(|tls| match &tls.trust {
        Trust::SslObject(id) => Some(id.as_str()),
        _ => None,
    });
    identity.into_iter().chain(trust)
}

/// Just the SSL objects `spec` names, for building it.
fn referenced_ssls(
    spec: &ValidUpstream,
    ssl: &dyn Fn(&str) -> Option<Arc<ValidSsl>>,
) -> SslObjects {
    ssl_references(spec)
        .filter_map(|id| Some((id.to_owned(), ssl(id)?)))
        .collect()
}

fn build_context<'a>(ssls: &'a SslObjects, pools: &'a UpstreamPools) -> BuildContext<'a> {
    BuildContext {
        ssls,
        pools,
        provider: crate::tls::provider(),
    }
}

impl RouteEntry {
    fn build(
        route: &ValidRoute,
        targets: &imbl::HashMap<Arc<str>, BuiltTarget>,
        pools: &UpstreamPools,
        ssl: &dyn Fn(&str) -> Option<Arc<ValidSsl>>,
    ) -> RouteEntry {
        let methods: Result<Vec<Method>, _> = route
            .methods
            .iter()
            .map(|m| Method::from_bytes(m.as_bytes()))
            .collect();
        let pipeline = match methods {
            Ok(_) => Pipeline::build(route, targets, pools, ssl),
            Err(_) => Err(BuildError::Methods {
                methods: route.methods.clone(),
            }),
        };
        if let Err(reason) = &pipeline {
            tracing::warn!(route = %route.id, %reason, "route cannot serve; it answers 503 until fixed");
        }
        RouteEntry {
            id: route.id.clone(),
            priority: route.priority,
            enable_websocket: route.enable_websocket,
            methods: methods.unwrap_or_default(),
            pipeline,
            metrics: RouteMetrics::new(&route.id, &route.hosts),
            log_id: JsonText::new(&route.id),
        }
    }

    /// Whether this route serves `method`.
    pub fn allows(&self, method: &Method) -> bool {
        self.methods.is_empty() || self.methods.contains(method)
    }

    /// Why this route cannot serve, or why its inline upstream has no TLS
    /// client; `route` is what it was built from.
    fn problem(&self, route: &ValidRoute) -> Option<&BuildError> {
        match (&self.pipeline, &route.upstream) {
            (Err(error), _) => Some(error),
            (Ok(pipeline), UpstreamRef::Inline(_)) => pipeline.upstream.tls_error(),
            (Ok(_), UpstreamRef::Id(_)) => None,
        }
    }

    /// The plugins and upstream, or why this route cannot serve.
    pub(crate) fn pipeline(&self) -> Result<&Pipeline, &BuildError> {
        self.pipeline.as_ref()
    }
}

impl fmt::Debug for RouteEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteEntry")
            .field("id", &self.id)
            .field("priority", &self.priority)
            .field("enable_websocket", &self.enable_websocket)
            .field("methods", &self.methods)
            .field("broken", &self.pipeline.as_ref().err())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    fn build(
        route: &ValidRoute,
        targets: &imbl::HashMap<Arc<str>, BuiltTarget>,
        pools: &UpstreamPools,
        ssl: &dyn Fn(&str) -> Option<Arc<ValidSsl>>,
    ) -> Result<Pipeline, BuildError> {
        let plugins = PluginChain::build(&route.plugins)?;
        let upstream = match &route.upstream {
            UpstreamRef::Inline(spec) => {
                let ssls = referenced_ssls(spec, ssl);
                let ctx = build_context(&ssls, pools);
                let name = format!("inline upstream of route {}", route.id);
                Arc::new(UpstreamTarget::build(name, spec, &ctx)?)
            }
            UpstreamRef::Id(id) => match targets.get(id.as_str()) {
                Some(built) => built.target.clone()?,
                None => return Err(BuildError::UpstreamMissing { id: id.clone() }),
            },
        };
        Ok(Pipeline { plugins, upstream })
    }
}

#[cfg(test)]
mod tests;
