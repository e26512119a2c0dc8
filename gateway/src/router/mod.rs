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
//! Routes with `status: 0` are left out. A route that cannot serve (its
//! `upstream_id` is missing, a plugin fails to build) is *kept* and answers
//! 503: dropping it would let its requests fall through to a broader route
//! that lacks its plugins, which fails open.

mod path;
mod prefix_tree;

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use http::Method;
use shared::validate::{HostPattern, UpstreamRef, UriPattern, ValidRoute, ValidSsl, ValidUpstream};

pub(crate) use path::{normalize_path, PathError};
use prefix_tree::PrefixTree;

use crate::plugins::PluginChain;
use crate::upstream::{BuildContext, UpstreamPools, UpstreamTarget};

/// Every enabled route of one configuration, indexed for lookup.
#[derive(Default)]
pub struct RouteTable {
    exact_hosts: HashMap<String, UriIndex>,
    /// Keyed by the suffix after `*.`.
    wildcard_hosts: HashMap<String, UriIndex>,
    /// Routes listing the host `*`.
    any_host: UriIndex,
    /// Routes without `hosts`.
    no_host: UriIndex,
    len: usize,
    /// The upstream clients this table's upstreams use, handed on to the
    /// next table so that unchanged TLS profiles keep their connections.
    pools: Arc<UpstreamPools>,
}

/// One matchable route, with what it runs once matched.
pub struct RouteEntry {
    pub id: String,
    pub priority: i64,
    /// Empty: every method.
    methods: Vec<Method>,
    pipeline: Result<Pipeline, String>,
}

/// What a route that can serve runs: its plugins, then its upstream.
pub(crate) struct Pipeline {
    pub(crate) plugins: PluginChain,
    pub(crate) upstream: Arc<UpstreamTarget>,
}

/// Routes sharing one host bucket, by URI.
#[derive(Default)]
struct UriIndex {
    exact: HashMap<String, Candidates>,
    prefixes: PrefixTree<Candidates>,
}

/// Routes registered under the same host and URI, best first.
type Candidates = Vec<Arc<RouteEntry>>;

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
        let ctx = BuildContext {
            ssls,
            pools: &pools,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        };
        let mut targets = UpstreamTargets::new(upstreams, &ctx);
        let mut table = RouteTable::default();
        for route in routes.iter().filter(|route| route.enabled) {
            let entry = Arc::new(RouteEntry::build(route, &mut targets));
            table.insert(route, &entry);
            table.len += 1;
        }
        table.rank_candidates();
        table.pools = pools;
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
        let host_buckets = host.into_iter().flat_map(|host| {
            [
                self.exact_hosts.get(host),
                parent_domain(host).and_then(|parent| self.wildcard_hosts.get(parent)),
                Some(&self.any_host),
            ]
        });
        host_buckets
            .flatten()
            .chain([&self.no_host])
            .find_map(|bucket| bucket.find(path, method))
    }

    /// The number of enabled routes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn insert(&mut self, route: &ValidRoute, entry: &Arc<RouteEntry>) {
        if route.hosts.is_empty() {
            self.no_host.insert(&route.uris, entry);
        }
        for host in &route.hosts {
            let bucket = match host {
                HostPattern::Exact(name) => self.exact_hosts.entry(name.clone()).or_default(),
                HostPattern::Wildcard(suffix) => {
                    self.wildcard_hosts.entry(suffix.clone()).or_default()
                }
                HostPattern::Any => &mut self.any_host,
            };
            bucket.insert(&route.uris, entry);
        }
    }

    fn rank_candidates(&mut self) {
        let buckets = self
            .exact_hosts
            .values_mut()
            .chain(self.wildcard_hosts.values_mut());
        for bucket in buckets.chain([&mut self.any_host, &mut self.no_host]) {
            bucket.rank_candidates();
        }
    }
}

/// `a.example.com` -> `example.com`: the suffix a `*.example.com` pattern
/// stores (a wildcard covers exactly one label).
fn parent_domain(host: &str) -> Option<&str> {
    host.split_once('.')
        .filter(|(label, rest)| !label.is_empty() && !rest.is_empty())
        .map(|(_, rest)| rest)
}

impl UriIndex {
    fn insert(&mut self, uris: &[UriPattern], entry: &Arc<RouteEntry>) {
        for uri in uris {
            let candidates = match uri {
                UriPattern::Exact(path) => self.exact.entry(path.clone()).or_default(),
                UriPattern::Prefix(prefix) => self.prefixes.entry_or_insert_with(prefix, Vec::new),
            };
            candidates.push(Arc::clone(entry));
        }
    }

    fn rank_candidates(&mut self) {
        let all = self.exact.values_mut().chain(self.prefixes.values_mut());
        for candidates in all {
            candidates
                .sort_by(|a, b| (Reverse(a.priority), &a.id).cmp(&(Reverse(b.priority), &b.id)));
            // A route listing the same URI twice is one candidate.
            candidates.dedup_by(|a, b| Arc::ptr_eq(a, b));
        }
    }

    fn find(&self, path: &str, method: &Method) -> Option<&Arc<RouteEntry>> {
        self.exact
            .get(path)
            .and_then(|candidates| first_allowing(candidates, method))
            .or_else(|| {
                self.prefixes
                    .find_longest(path, &mut |c| first_allowing(c, method))
            })
    }
}

fn first_allowing<'a>(candidates: &'a Candidates, method: &Method) -> Option<&'a Arc<RouteEntry>> {
    candidates.iter().find(|route| route.allows(method))
}

impl RouteEntry {
    fn build(route: &ValidRoute, targets: &mut UpstreamTargets<'_>) -> RouteEntry {
        let methods: Result<Vec<Method>, _> = route
            .methods
            .iter()
            .map(|m| Method::from_bytes(m.as_bytes()))
            .collect();
        let pipeline = match methods {
            Ok(_) => Pipeline::build(route, targets),
            Err(_) => Err(format!(
                "methods {:?} include an invalid method",
                route.methods
            )),
        };
        if let Err(reason) = &pipeline {
            tracing::warn!(route = %route.id, %reason, "route cannot serve; it answers 503 until fixed");
        }
        RouteEntry {
            id: route.id.clone(),
            priority: route.priority,
            methods: methods.unwrap_or_default(),
            pipeline,
        }
    }

    /// Whether this route serves `method`.
    pub fn allows(&self, method: &Method) -> bool {
        self.methods.is_empty() || self.methods.contains(method)
    }

    /// The plugins and upstream, or why this route cannot serve.
    pub(crate) fn pipeline(&self) -> Result<&Pipeline, &str> {
        self.pipeline.as_ref().map_err(String::as_str)
    }
}

impl fmt::Debug for RouteEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteEntry")
            .field("id", &self.id)
            .field("priority", &self.priority)
            .field("methods", &self.methods)
            .field("broken", &self.pipeline.as_ref().err())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    fn build(route: &ValidRoute, targets: &mut UpstreamTargets<'_>) -> Result<Pipeline, String> {
        let plugins = PluginChain::build(&route.plugins).map_err(|err| err.to_string())?;
        let upstream = targets.resolve(&route.id, &route.upstream)?;
        Ok(Pipeline { plugins, upstream })
    }
}

/// Builds each stored upstream once per table, so that every route naming it
/// shares one balancer.
struct UpstreamTargets<'a> {
    stored: &'a BTreeMap<String, Arc<ValidUpstream>>,
    ctx: &'a BuildContext<'a>,
    built: HashMap<String, Result<Arc<UpstreamTarget>, String>>,
}

impl<'a> UpstreamTargets<'a> {
    fn new(stored: &'a BTreeMap<String, Arc<ValidUpstream>>, ctx: &'a BuildContext<'a>) -> Self {
        UpstreamTargets {
            stored,
            ctx,
            built: HashMap::new(),
        }
    }

    fn resolve(
        &mut self,
        route_id: &str,
        upstream: &UpstreamRef,
    ) -> Result<Arc<UpstreamTarget>, String> {
        match upstream {
            UpstreamRef::Inline(spec) => UpstreamTarget::build(
                format!("inline upstream of route {route_id}"),
                spec,
                self.ctx,
            )
            .map(Arc::new),
            UpstreamRef::Id(id) => {
                let (stored, ctx) = (self.stored, self.ctx);
                self.built
                    .entry(id.clone())
                    .or_insert_with(|| match stored.get(id) {
                        Some(spec) => {
                            UpstreamTarget::build(format!("upstream {id}"), spec, ctx).map(Arc::new)
                        }
                        None => Err(format!("upstream_id {id:?} does not exist")),
                    })
                    .clone()
            }
        }
    }
}

#[cfg(test)]
mod tests;
