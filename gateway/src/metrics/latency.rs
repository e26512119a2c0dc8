//! `portcullis_http_latency`: per-thread histograms, summed at scrape time.
//!
//! Each thread observes into cells only it writes (a load and a store, no
//! atomic read-modify-write, no cache line shared with other workers); a
//! scrape adds up every thread's cells. A histogram of the `prometheus`
//! crate costs four atomic read-modify-writes per observation, and a request
//! makes three.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, Histogram, LabelPair, Metric, MetricFamily, MetricType};

/// APISIX's latency buckets, in milliseconds.
const BUCKETS_MS: [f64; 15] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 30000.0,
    60000.0,
];

/// The `type` label: what a latency measures.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// The whole request, to the response head.
    Request = 0,
    /// The upstream's share.
    Upstream = 1,
    /// The rest: the gateway's own.
    Portcullis = 2,
}

const KINDS: [(Kind, &str); 3] = [
    (Kind::Request, "request"),
    (Kind::Upstream, "upstream"),
    (Kind::Portcullis, "portcullis"),
];

/// One thread's observations of one kind.
#[derive(Default)]
struct Cells {
    /// Per bucket, not cumulative; the last one past the largest bound.
    counts: [AtomicU64; BUCKETS_MS.len() + 1],
    /// The bits of an `f64`.
    sum: AtomicU64,
}

impl Cells {
    /// Only the owning thread writes, so a load and a store do.
    fn observe(&self, ms: f64) {
        let bucket = BUCKETS_MS
            .iter()
            .position(|bound| ms <= *bound)
            .unwrap_or(BUCKETS_MS.len());
        let count = &self.counts[bucket];
        count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        let sum = f64::from_bits(self.sum.load(Ordering::Relaxed)) + ms;
        self.sum.store(sum.to_bits(), Ordering::Relaxed);
    }
}

type Shard = [Cells; 3];

/// Every thread's cells, and the metric's description; clones share them
/// (one is registered, one observed into).
#[derive(Clone)]
pub(crate) struct Latency(Arc<Inner>);

struct Inner {
    desc: Desc,
    shards: Mutex<Vec<Arc<Shard>>>,
}

thread_local! {
    static SHARD: OnceCell<Arc<Shard>> = const { OnceCell::new() };
}

impl Latency {
    pub(crate) fn new(name: &str, help: &str) -> Latency {
        Latency(Arc::new(Inner {
            desc: Desc::new(
                name.into(),
                help.into(),
                vec!["type".into()],
                HashMap::new(),
            )
            .expect("valid histogram"),
            shards: Mutex::default(),
        }))
    }

    /// Records `ms` milliseconds in this thread's cells.
    pub(crate) fn observe(&self, kind: Kind, ms: f64) {
        SHARD.with(|shard| {
            let shard = shard.get_or_init(|| {
                let shard = Arc::<Shard>::default();
                self.lock().push(shard.clone());
                shard
            });
            shard[kind as usize].observe(ms);
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Shard>>> {
        self.0.shards.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every thread's cells of `kind`, added up, as the text format shows a
    /// histogram: cumulative buckets, count and sum.
    fn histogram(&self, kind: Kind) -> Histogram {
        let mut counts = [0u64; BUCKETS_MS.len() + 1];
        let mut sum = 0.0;
        for shard in self.lock().iter() {
            let cells = &shard[kind as usize];
            for (total, count) in counts.iter_mut().zip(&cells.counts) {
                *total += count.load(Ordering::Relaxed);
            }
            sum += f64::from_bits(cells.sum.load(Ordering::Relaxed));
        }
        let mut cumulative = 0;
        let buckets = BUCKETS_MS
            .iter()
            .zip(counts)
            .map(|(bound, count)| {
                cumulative += count;
                let mut bucket = Bucket::default();
                bucket.set_upper_bound(*bound);
                bucket.set_cumulative_count(cumulative);
                bucket
            })
            .collect();
        let mut histogram = Histogram::default();
        histogram.set_bucket(buckets);
        histogram.set_sample_count(counts.iter().sum());
        histogram.set_sample_sum(sum);
        histogram
    }
}

impl Collector for Latency {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.0.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let metrics = KINDS
            .iter()
            .map(|(kind, label)| {
                let mut pair = LabelPair::default();
                pair.set_name("type".into());
                pair.set_value((*label).into());
                let mut metric = Metric::from_label(vec![pair]);
                metric.set_histogram(self.histogram(*kind));
                metric
            })
            .collect();
        let mut family = MetricFamily::default();
        family.set_name(self.0.desc.fq_name.clone());
        family.set_help(self.0.desc.help.clone());
        family.set_field_type(MetricType::HISTOGRAM);
        family.set_metric(metrics);
        vec![family]
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{HistogramOpts, HistogramVec, Registry, TextEncoder};

    use super::*;

    fn text(collector: Box<dyn Collector>) -> String {
        let registry = Registry::new();
        registry.register(collector).unwrap();
        TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap()
    }

    #[test]
    fn scrapes_as_a_prometheus_histogram_of_every_thread() {
        let (name, help) = ("test_latency", "help");
        let ours = Latency::new(name, help);
        let theirs = HistogramVec::new(
            HistogramOpts::new(name, help).buckets(BUCKETS_MS.to_vec()),
            &["type"],
        )
        .unwrap();
        let samples = [0.5, 1.0, 1.5, 7.0, 250.0, 60000.0, 99999.0];
        std::thread::scope(|scope| {
            for (thread, (kind, label)) in KINDS.iter().enumerate() {
                let (ours, theirs) = (&ours, &theirs);
                scope.spawn(move || {
                    for ms in &samples[thread..] {
                        ours.observe(*kind, *ms);
                        theirs.with_label_values(&[label]).observe(*ms);
                    }
                });
            }
        });
        ours.observe(Kind::Upstream, 3.0);
        theirs.with_label_values(&["upstream"]).observe(3.0);
        let expected = text(Box::new(theirs));
        assert!(expected.contains("test_latency_bucket{type=\"upstream\",le=\"2\"} 2"));
        assert_eq!(text(Box::new(ours)), expected);
    }
}
