//! Request metrics: `portcullis_http_requests_total`, `portcullis_http_status`,
//! `portcullis_http_latency` and `portcullis_bandwidth`.
//!
//! A request costs a few atomic increments: the route's counters are
//! resolved when the route is built ([`RouteMetrics`]); the status counter,
//! whose labels only the request knows (code, node, consumer), is found in
//! a per-thread cache, so the shared label map is locked once per label set
//! and thread, not per request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use prometheus::IntCounter;
use shared::validate::HostPattern;

use super::{metrics, LatencyKind};

/// Distinct status label sets a worker thread remembers; past it the cache
/// starts over (the counters themselves stay registered).
const STATUS_CACHE_MAX: usize = 4096;

/// The metric handles and labels of one route, built with the route.
#[derive(Debug)]
pub struct RouteMetrics {
    /// This build of the route, unique for the life of the process: what
    /// the status counters are found by.
    build: u64,
    route: Box<str>,
    /// The route's host patterns, each with its label (`*.example.com`).
    hosts: Box<[(HostPattern, Box<str>)]>,
    bytes_in: IntCounter,
    bytes_out: IntCounter,
}

impl RouteMetrics {
    pub fn new(route: &str, hosts: &[HostPattern]) -> RouteMetrics {
        static BUILDS: AtomicU64 = AtomicU64::new(0);
        let bandwidth = &metrics().bandwidth;
        RouteMetrics {
            build: BUILDS.fetch_add(1, Ordering::Relaxed),
            route: route.into(),
            hosts: hosts
                .iter()
                .map(|pattern| (pattern.clone(), host_label(pattern).into()))
                .collect(),
            bytes_in: bandwidth.with_label_values(&["ingress", route]),
            bytes_out: bandwidth.with_label_values(&["egress", route]),
        }
    }

    /// For requests no route matched (route label empty).
    pub(crate) fn unrouted() -> &'static RouteMetrics {
        static UNROUTED: LazyLock<RouteMetrics> = LazyLock::new(|| RouteMetrics::new("", &[]));
        &UNROUTED
    }

    /// The pattern `host` matched (APISIX `matched_host`): bounded by the
    /// route's configuration, never the client's raw `Host`.
    pub(crate) fn matched_host(&self, host: Option<&str>) -> &str {
        host.and_then(|host| self.hosts.iter().find(|(pattern, _)| pattern.matches(host)))
            .map_or("", |(_, label)| label)
    }
}

fn host_label(pattern: &HostPattern) -> String {
    match pattern {
        HostPattern::Exact(name) => name.clone(),
        HostPattern::Wildcard(suffix) => format!("*.{suffix}"),
        HostPattern::Any => "*".to_owned(),
    }
}

/// What one finished request adds to the metrics.
pub(crate) struct RequestSample<'a> {
    pub(crate) route: &'a RouteMetrics,
    pub(crate) matched_host: &'a str,
    pub(crate) code: u16,
    pub(crate) node: &'a str,
    pub(crate) consumer: &'a str,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) total: Duration,
    /// `None` when no upstream answered.
    pub(crate) upstream: Option<Duration>,
}

impl RequestSample<'_> {
    pub(crate) fn record(&self) {
        let metrics = metrics();
        metrics.requests.inc();
        self.count_status();
        let latency = &metrics.latency;
        latency.observe(LatencyKind::Request, millis(self.total));
        if let Some(took) = self.upstream {
            latency.observe(LatencyKind::Upstream, millis(took));
            latency.observe(
                LatencyKind::Portcullis,
                millis(self.total.saturating_sub(took)),
            );
        } else {
            latency.observe(LatencyKind::Portcullis, millis(self.total));
        }
        self.route.bytes_in.inc_by(self.bytes_in);
        self.route.bytes_out.inc_by(self.bytes_out);
    }

    fn count_status(&self) {
        let labels = StatusLabels {
            build: self.route.build,
            code: self.code,
            route: &self.route.route,
            matched_host: self.matched_host,
            consumer: self.consumer,
            node: self.node,
        };
        STATUS.with(|cache| cache.borrow_mut().inc(&labels));
    }
}

fn millis(took: Duration) -> f64 {
    took.as_secs_f64() * 1000.0
}

thread_local! {
    static STATUS: RefCell<StatusCache> = RefCell::new(StatusCache::default());
}

/// A request's status labels. `matched_host` and `node` must be owned by
/// the route's build (see [`StatusCache`]).
struct StatusLabels<'a> {
    build: u64,
    code: u16,
    route: &'a str,
    matched_host: &'a str,
    consumer: &'a str,
    node: &'a str,
}

/// Status counters by label set, per thread. A lookup hashes and compares
/// identities, not label text: the route's build ([`RouteMetrics::build`],
/// never reused) and the addresses of the node and matched-host labels,
/// which that build owns and keeps in place for its whole life. Once a
/// build is gone its entries can no longer match; they go when the cache
/// starts over. The consumer is compared by text: it is not the route's.
#[derive(Default)]
struct StatusCache {
    entries: HashMap<u64, Vec<(StatusKey, IntCounter)>, BuildHasherDefault<LabelHasher>>,
    len: usize,
}

/// The identity of a label set.
struct StatusKey {
    build: u64,
    code: u16,
    matched_host: (usize, usize),
    node: (usize, usize),
    consumer: Box<str>,
}

/// Where a label's text is, and how long it is.
fn place(label: &str) -> (usize, usize) {
    (label.as_ptr() as usize, label.len())
}

impl StatusKey {
    fn is(&self, labels: &StatusLabels<'_>) -> bool {
        self.build == labels.build
            && self.code == labels.code
            && self.matched_host == place(labels.matched_host)
            && self.node == place(labels.node)
            && *self.consumer == *labels.consumer
    }

    fn of(labels: &StatusLabels<'_>) -> StatusKey {
        StatusKey {
            build: labels.build,
            code: labels.code,
            matched_host: place(labels.matched_host),
            node: place(labels.node),
            consumer: labels.consumer.into(),
        }
    }
}

impl StatusLabels<'_> {
    /// Hashes what [`StatusKey::is`] compares.
    fn key_hash(&self) -> u64 {
        let mut hasher = LabelHasher::default();
        hasher.add(self.build);
        hasher.add(self.code.into());
        for label in [self.matched_host, self.node] {
            let (at, len) = place(label);
            hasher.add(at as u64);
            hasher.add(len as u64);
        }
        self.consumer.hash(&mut hasher);
        hasher.finish()
    }
}

impl StatusCache {
    fn inc(&mut self, labels: &StatusLabels<'_>) {
        let key = labels.key_hash();
        if let Some((_, counter)) = self
            .entries
            .get(&key)
            .and_then(|bucket| bucket.iter().find(|(owned, _)| owned.is(labels)))
        {
            return counter.inc();
        }
        if self.len >= STATUS_CACHE_MAX {
            self.entries.clear();
            self.len = 0;
        }
        let code = labels.code.to_string();
        let counter = metrics().status.with_label_values(&[
            code.as_str(),
            labels.route,
            labels.matched_host,
            "",
            labels.consumer,
            labels.node,
        ]);
        self.entries
            .entry(key)
            .or_default()
            .push((StatusKey::of(labels), counter.clone()));
        self.len += 1;
        counter.inc();
    }
}

/// FxHash (rustc's): one multiply per word. SipHash cost more than the rest
/// of a request's metrics; its resistance to chosen keys is not needed here,
/// as every label comes from the configuration or is a status code, and
/// entries are compared in full.
#[derive(Default)]
struct LabelHasher(u64);

impl LabelHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for LabelHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.add(u64::from_le_bytes(tail));
    }

    fn write_u8(&mut self, n: u8) {
        self.add(n.into());
    }

    fn write_u16(&mut self, n: u16) {
        self.add(n.into());
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_that_differ_hash_apart() {
        let (node, other_node) = ("127.0.0.1:8080".to_owned(), "127.0.0.1:8080".to_owned());
        let base = StatusLabels {
            build: 7,
            code: 200,
            route: "r1",
            matched_host: "",
            consumer: "",
            node: &node,
        };
        let others = [
            StatusLabels { code: 502, ..base },
            StatusLabels { build: 8, ..base },
            // The same text elsewhere is another label.
            StatusLabels {
                node: &other_node,
                ..base
            },
            StatusLabels {
                consumer: "c",
                ..base
            },
        ];
        let key = StatusKey::of(&base);
        assert!(key.is(&base));
        for other in &others {
            assert_ne!(base.key_hash(), other.key_hash());
            assert!(!key.is(other));
        }
    }

    #[test]
    fn each_build_of_a_route_counts_into_the_same_series() {
        let hosts = [HostPattern::Exact("a.test".into())];
        let (first, second) = (
            RouteMetrics::new("rm1", &hosts),
            RouteMetrics::new("rm1", &hosts),
        );
        assert_ne!(first.build, second.build);
        let node = "127.0.0.1:1";
        for route in [&first, &second, &first] {
            RequestSample {
                route,
                matched_host: route.matched_host(Some("a.test")),
                code: 201,
                node,
                consumer: "",
                bytes_in: 0,
                bytes_out: 0,
                total: Duration::ZERO,
                upstream: None,
            }
            .record();
        }
        let count = metrics()
            .status
            .with_label_values(&["201", "rm1", "a.test", "", "", node])
            .get();
        assert_eq!(count, 3);
    }
}
