//! Prometheus metrics, served by [`crate::status`] at `GET /metrics` (and
//! APISIX's `/apisix/prometheus/metrics`).
//!
//! Two kinds, by cost:
//! * counted as things happen, with atomic counters whose label sets are
//!   resolved once (per route when it is built, per worker thread for the
//!   labels only a request knows, see [`request`]): requests, statuses,
//!   latencies, bytes, handshakes and their failures, client-certificate
//!   verdicts, configuration builds;
//! * read at scrape time from what the data plane already keeps ([`scrape`]):
//!   connections, etcd, the applied revision, and the seconds left on every
//!   certificate ([`expiry`]), so a gauge of time never goes stale.
//!
//! `proxy.metrics.enabled: false` stops the counting (see [`set_enabled`]).

pub mod expiry;
mod latency;
pub mod request;
pub mod scrape;
pub mod tls;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    exponential_buckets, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub(crate) use latency::{Kind as LatencyKind, Latency};

pub use request::RouteMetrics;
pub use tls::HandshakeFailure;

/// The `Content-Type` of a scrape.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the counting of requests and handshakes on or off (at startup,
/// from `proxy.metrics.enabled`).
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// Whether requests and handshakes are counted.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Every metric of the process, registered once.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) requests: IntCounter,
    pub(crate) status: IntCounterVec,
    /// `type` = request, upstream, portcullis.
    pub(crate) latency: Latency,
    pub(crate) bandwidth: IntCounterVec,
    pub(crate) handshakes: IntCounterVec,
    pub(crate) handshake_failures: IntCounterVec,
    pub(crate) client_cert_verdicts: IntCounterVec,
    pub(crate) config_apply: Histogram,
    pub(crate) access_log_dropped: IntCounter,
    pub(crate) access_log_errors: IntCounter,
    pub(crate) connections: IntGaugeVec,
    pub(crate) etcd_reachable: IntGauge,
    pub(crate) etcd_modify_indexes: IntGaugeVec,
    pub(crate) node_info: IntGaugeVec,
    pub(crate) config_revision: IntGaugeVec,
    pub(crate) config_source_error: IntGaugeVec,
    pub(crate) config_unbuildable: IntGaugeVec,
    pub(crate) cert_expiry: GaugeVec,
    pub(crate) earliest_expiry: Gauge,
}

/// The process's metrics.
pub(crate) fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let metrics = Metrics {
            requests: IntCounter::new(
                "portcullis_http_requests_total",
                "The total number of client requests",
            )
            .expect("valid counter"),
            status: counter_vec(
                "portcullis_http_status",
                "HTTP status codes per route",
                &[
                    "code",
                    "route",
                    "matched_host",
                    "service",
                    "consumer",
                    "node",
                ],
            ),
            latency: Latency::new(
                "portcullis_http_latency",
                "HTTP request latency in milliseconds: request (whole request, to the response \
                 head), upstream (the upstream's share), portcullis (the rest)",
            ),
            bandwidth: counter_vec(
                "portcullis_bandwidth",
                "Total bandwidth in bytes per route",
                &["type", "route"],
            ),
            handshakes: counter_vec(
                "portcullis_tls_handshakes_total",
                "Completed TLS handshakes by SSL object, protocol and kind (full, resumed)",
                &["ssl_id", "protocol", "kind"],
            ),
            handshake_failures: counter_vec(
                "portcullis_tls_handshake_failures_total",
                "Refused or failed TLS handshakes by reason",
                &["reason", "ssl_id"],
            ),
            client_cert_verdicts: counter_vec(
                "portcullis_client_cert_verdicts_total",
                "Client-certificate verdicts of route plugins",
                &["plugin", "route", "verdict", "reason"],
            ),
            config_apply: Histogram::with_opts(
                HistogramOpts::new(
                    "portcullis_config_apply_seconds",
                    "Time to build and apply a new configuration",
                )
                .buckets(exponential_buckets(0.0001, 4.0, 10).expect("valid buckets")),
            )
            .expect("valid histogram"),
            access_log_dropped: IntCounter::new(
                "portcullis_access_log_dropped_total",
                "Access-log lines dropped because the writer was behind",
            )
            .expect("valid counter"),
            access_log_errors: IntCounter::new(
                "portcullis_access_log_write_errors_total",
                "Access-log lines that could not be written",
            )
            .expect("valid counter"),
            connections: gauge_vec(
                "portcullis_http_current_connections",
                "Client connections by state",
                &["state"],
            ),
            etcd_reachable: IntGauge::new(
                "portcullis_etcd_reachable",
                "Whether etcd is reachable by this data plane (1) or not (0)",
            )
            .expect("valid gauge"),
            etcd_modify_indexes: gauge_vec(
                "portcullis_etcd_modify_indexes",
                "The highest etcd modify revision per kind of object",
                &["key"],
            ),
            node_info: gauge_vec(
                "portcullis_node_info",
                "Information about this node",
                &["hostname", "version"],
            ),
            config_revision: gauge_vec(
                "portcullis_config_revision",
                "The etcd revision seen (synced) and served (applied)",
                &["state"],
            ),
            config_source_error: gauge_vec(
                "portcullis_config_source_error",
                "1 while the last attempt to read the configuration failed (etcd unreachable, \
                 or a standalone file refused): the previous configuration is served",
                &["source"],
            ),
            config_unbuildable: gauge_vec(
                "portcullis_config_unbuildable",
                "Routes, SSL objects and upstreams that are stored but cannot serve, by kind \
                 of error (listed with their ids in /status, config.unbuildable)",
                &["object", "kind"],
            ),
            cert_expiry: GaugeVec::new(
                Opts::new(
                    "portcullis_certificate_expiry_seconds",
                    "Seconds until the certificate's notAfter (negative once expired)",
                ),
                &["kind", "id", "subject"],
            )
            .expect("valid gauge"),
            earliest_expiry: Gauge::new(
                "portcullis_certificate_earliest_expiry_seconds",
                "Seconds until the first certificate in use expires",
            )
            .expect("valid gauge"),
            registry,
        };
        metrics.register();
        metrics
    }

    fn register(&self) {
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.requests.clone()),
            Box::new(self.status.clone()),
            Box::new(self.latency.clone()),
            Box::new(self.bandwidth.clone()),
            Box::new(self.handshakes.clone()),
            Box::new(self.handshake_failures.clone()),
            Box::new(self.client_cert_verdicts.clone()),
            Box::new(self.config_apply.clone()),
            Box::new(self.access_log_dropped.clone()),
            Box::new(self.access_log_errors.clone()),
            Box::new(self.connections.clone()),
            Box::new(self.etcd_reachable.clone()),
            Box::new(self.etcd_modify_indexes.clone()),
            Box::new(self.node_info.clone()),
            Box::new(self.config_revision.clone()),
            Box::new(self.config_source_error.clone()),
            Box::new(self.config_unbuildable.clone()),
            Box::new(self.cert_expiry.clone()),
            Box::new(self.earliest_expiry.clone()),
        ];
        for collector in collectors {
            self.registry
                .register(collector)
                .expect("metric names are unique");
        }
    }

    /// Every metric in the Prometheus text format.
    pub(crate) fn encode(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|err| format!("# cannot encode the metrics: {err}\n"))
    }
}

/// Records how long building and swapping in one configuration took.
pub fn observe_config_apply(took: Duration) {
    metrics().config_apply.observe(took.as_secs_f64());
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter")
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge")
}
