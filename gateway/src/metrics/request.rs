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
    route: Box<str>,
    /// The route's host patterns, each with its label (`*.example.com`).
    hosts: Box<[(HostPattern, Box<str>)]>,
    bytes_in: IntCounter,
    bytes_out: IntCounter,
}

impl RouteMetrics {
    pub fn new(route: &str, hosts: &[HostPattern]) -> RouteMetrics {
        let bandwidth = &metrics().bandwidth;
        RouteMetrics {
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

#[derive(Hash, PartialEq, Eq)]
struct StatusLabels<'a> {
    code: u16,
    route: &'a str,
    matched_host: &'a str,
    consumer: &'a str,
    node: &'a str,
}

/// Status counters by label set, per thread. Keyed by a hash of the labels
/// (so a lookup allocates nothing), each entry keeping its labels to tell
/// collisions apart.
#[derive(Default)]
struct StatusCache {
    entries: HashMap<u64, Vec<(OwnedLabels, IntCounter)>, BuildHasherDefault<LabelHasher>>,
    len: usize,
}

/// Labels kept by the cache.
struct OwnedLabels {
    code: u16,
    strings: [Box<str>; 4],
}

impl OwnedLabels {
    fn of(labels: &StatusLabels<'_>) -> OwnedLabels {
        OwnedLabels {
            code: labels.code,
            strings: [
                labels.route.into(),
                labels.matched_host.into(),
                labels.consumer.into(),
                labels.node.into(),
            ],
        }
    }

    fn is(&self, labels: &StatusLabels<'_>) -> bool {
        let [route, host, consumer, node] = &self.strings;
        self.code == labels.code
            && **route == *labels.route
            && **host == *labels.matched_host
            && **consumer == *labels.consumer
            && **node == *labels.node
    }
}

impl StatusCache {
    fn inc(&mut self, labels: &StatusLabels<'_>) {
        let mut hasher = LabelHasher::default();
        labels.hash(&mut hasher);
        let key = hasher.finish();
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
            .push((OwnedLabels::of(labels), counter.clone()));
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

    fn hash(labels: &StatusLabels<'_>) -> u64 {
        let mut hasher = LabelHasher::default();
        labels.hash(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn label_sets_that_differ_hash_apart() {
        let base = StatusLabels {
            code: 200,
            route: "r1",
            matched_host: "",
            consumer: "",
            node: "127.0.0.1:8080",
        };
        let others = [
            StatusLabels { code: 502, ..base },
            StatusLabels {
                route: "r2",
                ..base
            },
            StatusLabels {
                node: "127.0.0.1:8081",
                ..base
            },
            // The boundary between two strings is part of the hash.
            StatusLabels {
                route: "r",
                matched_host: "1",
                ..base
            },
        ];
        for other in &others {
            assert_ne!(hash(&base), hash(other));
        }
    }
}
