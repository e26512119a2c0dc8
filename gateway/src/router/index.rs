//! The lookup structure of a [`super::RouteTable`]: host buckets, then URIs
//! (exact in a hash map, prefixes in a radix tree), then the routes
//! registered there, best first.
//!
//! Every level is persistent (`imbl` maps, [`PrefixTree`], shared slices):
//! cloning an index is O(1), and adding or removing one route copies only
//! the nodes on its own paths. So one configuration change is applied in
//! microseconds whatever the number of routes, while requests keep reading
//! the previous index.

use std::cmp::Reverse;
use std::sync::Arc;

use http::Method;
use shared::validate::{HostPattern, UriPattern, ValidRoute};

use super::prefix_tree::PrefixTree;
use super::RouteEntry;

/// Routes registered under the same host and URI, best first: higher
/// `priority`, then the smaller id. Never empty.
type Candidates = Arc<[Arc<RouteEntry>]>;

/// Host buckets, each indexing its routes by URI.
#[derive(Clone, Default)]
pub(super) struct Index {
    exact_hosts: imbl::HashMap<Arc<str>, Arc<UriIndex>>,
    /// Keyed by the suffix after `*.`.
    wildcard_hosts: imbl::HashMap<Arc<str>, Arc<UriIndex>>,
    /// Routes listing the host `*`.
    any_host: Arc<UriIndex>,
    /// Routes without `hosts`.
    no_host: Arc<UriIndex>,
}

/// Routes sharing one host bucket, by URI.
#[derive(Clone, Default)]
struct UriIndex {
    exact: imbl::HashMap<Arc<str>, Candidates>,
    prefixes: PrefixTree<Candidates>,
}

impl Index {
    /// See [`super::RouteTable::find`] for the precedence.
    pub(super) fn find(
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

    /// Registers `entry` under every host and URI of `route`.
    pub(super) fn insert(&mut self, route: &ValidRoute, entry: &Arc<RouteEntry>) {
        self.edit(route, |candidates| Some(with(candidates, entry)));
    }

    /// Unregisters the route `id`, registered for `route`'s hosts and URIs.
    pub(super) fn remove(&mut self, route: &ValidRoute, id: &str) {
        self.edit(route, |candidates| without(candidates, id));
    }

    /// Replaces the candidates under each of `route`'s host and URI pairs
    /// with `change(old)`, dropping what becomes empty.
    fn edit(
        &mut self,
        route: &ValidRoute,
        change: impl Fn(Option<Candidates>) -> Option<Candidates>,
    ) {
        let per_bucket = |bucket: &mut UriIndex| {
            for uri in &route.uris {
                bucket.edit(uri, &change);
            }
        };
        if route.hosts.is_empty() {
            per_bucket(Arc::make_mut(&mut self.no_host));
        }
        for host in &route.hosts {
            match host {
                HostPattern::Exact(name) => edit_bucket(&mut self.exact_hosts, name, per_bucket),
                HostPattern::Wildcard(suffix) => {
                    edit_bucket(&mut self.wildcard_hosts, suffix, per_bucket)
                }
                HostPattern::Any => per_bucket(Arc::make_mut(&mut self.any_host)),
            }
        }
    }
}

fn edit_bucket(
    buckets: &mut imbl::HashMap<Arc<str>, Arc<UriIndex>>,
    key: &str,
    change: impl FnOnce(&mut UriIndex),
) {
    let mut bucket = buckets
        .get(key)
        .map(|b| UriIndex::clone(b))
        .unwrap_or_default();
    change(&mut bucket);
    if bucket.is_empty() {
        buckets.remove(key);
    } else {
        buckets.insert(Arc::from(key), Arc::new(bucket));
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
    fn find(&self, path: &str, method: &Method) -> Option<&Arc<RouteEntry>> {
        self.exact
            .get(path)
            .and_then(|candidates| first_allowing(candidates, method))
            .or_else(|| {
                self.prefixes
                    .find_longest(path, &mut |c| first_allowing(c, method))
            })
    }

    fn edit(
        &mut self,
        uri: &UriPattern,
        change: impl Fn(Option<Candidates>) -> Option<Candidates>,
    ) {
        match uri {
            UriPattern::Exact(path) => match change(self.exact.get(path.as_str()).cloned()) {
                Some(candidates) => {
                    self.exact.insert(Arc::from(path.as_str()), candidates);
                }
                None => {
                    self.exact.remove(path.as_str());
                }
            },
            UriPattern::Prefix(prefix) => self.prefixes.update(prefix, change),
        }
    }

    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }
}

fn first_allowing<'a>(candidates: &'a Candidates, method: &Method) -> Option<&'a Arc<RouteEntry>> {
    candidates.iter().find(|route| route.allows(method))
}

/// `candidates` with `entry` in its place (a route listing the same URI
/// twice is one candidate).
fn with(candidates: Option<Candidates>, entry: &Arc<RouteEntry>) -> Candidates {
    let mut all: Vec<Arc<RouteEntry>> = candidates.iter().flat_map(|c| c.iter().cloned()).collect();
    if all.iter().any(|known| Arc::ptr_eq(known, entry)) {
        return all.into();
    }
    all.push(Arc::clone(entry));
    all.sort_by(|a, b| (Reverse(a.priority), &a.id).cmp(&(Reverse(b.priority), &b.id)));
    all.into()
}

/// `candidates` without the route `id`; `None` when none remain.
fn without(candidates: Option<Candidates>, id: &str) -> Option<Candidates> {
    let rest: Vec<Arc<RouteEntry>> = candidates?
        .iter()
        .filter(|route| route.id != id)
        .cloned()
        .collect();
    (!rest.is_empty()).then(|| rest.into())
}
