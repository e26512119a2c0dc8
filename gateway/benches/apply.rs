//! The cost of applying one change at scale (10,000 SSL objects + 100,000
//! routes by default; `APPLY_SSLS` / `APPLY_ROUTES` change it), step by
//! step: copying the watched state, validating the changed object, and
//! applying the change to the serving snapshot (and, to compare, building
//! the snapshot from scratch). The changes: one plain route, one SSL object,
//! and one route starting to verify client certificates (which changes what
//! the handshakes of the SSL objects it can be reached through ask for).
//! Run with `cargo bench -p portcullis-gateway --bench apply`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use gateway::snapshot::{Builder, Snapshot};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::json;
use shared::etcd_layout::KeyLayout;
use shared::keyring::Keyring;
use shared::state::ConfigState;
use shared::store::RawEntry;

/// Resident memory of this process (Linux), in MB.
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        });
    kb.unwrap_or(0.0) / 1024.0
}

fn scale(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Fixture {
    layout: KeyLayout,
    keyring: Keyring,
    state: Arc<ConfigState>,
    /// Built from `state`, and the builder that built it.
    snapshot: Snapshot,
    builder: Builder,
    /// A new version of one route, of one SSL object, and of one route now
    /// verifying client certificates.
    route_put: RawEntry,
    ssl_put: RawEntry,
    cert_route_put: RawEntry,
}

fn route(j: usize, ssls: usize, upstream_port: u16) -> serde_json::Value {
    let uri = if j & 1 == 0 {
        format!("/r/{j}")
    } else {
        format!("/p/{j}/*")
    };
    let mut route = json!({
        "id": format!("load-{j}"),
        "uri": uri,
        "plugins": {"proxy-rewrite": {"headers": {
            "X-Ssl-Client-Fingerprint": "$ssl_client_fingerprint",
            "X-Ssl-Client-Serial": "$ssl_client_serial",
            "X-Ssl-Client-S-DN": "$ssl_client_s_dn"
        }}},
        "upstream": {"type": "roundrobin", "nodes": {format!("127.0.0.1:{upstream_port}"): 1}},
    });
    if ssls > 0 {
        route["hosts"] = json!([format!("s{}.load.test", j % ssls)]);
    }
    route
}

fn fixture() -> Fixture {
    let (ssls, routes) = (scale("APPLY_SSLS", 10_000), scale("APPLY_ROUTES", 100_000));
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
    let issuer = Issuer::new(ca, ca_key);
    let ssl = |i: usize| {
        let key = KeyPair::generate().expect("key");
        let name = format!("s{i}.load.test");
        let cert = CertificateParams::new(vec![name.clone()])
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("certificate");
        json!({"id": format!("load-{i}"), "sni": name, "cert": cert.pem(), "key": key.serialize_pem(),
               "client": {"ca": ca_pem, "depth": 2}})
    };
    let layout = KeyLayout::new("/bench");
    let entry = |kind: &str, id: String, value: serde_json::Value, revision: i64| RawEntry {
        key: format!("/bench/{kind}/{id}"),
        value: value.to_string().into_bytes(),
        mod_revision: revision,
    };
    let mut kvs: Vec<RawEntry> = (0..ssls)
        .map(|i| entry("ssls", format!("load-{i}"), ssl(i), 2))
        .collect();
    kvs.extend((0..routes).map(|j| entry("routes", format!("load-{j}"), route(j, ssls, 18080), 2)));
    let keyring = Keyring::default();
    let before = rss_mb();
    let state = ConfigState::from_listing(&layout, &keyring, 2, &kvs, None);
    drop(kvs);
    let validated = rss_mb();
    assert_eq!(state.routes.len(), routes);
    assert_eq!(state.ssls.len(), ssls);
    let state = Arc::new(state);
    let mut builder = Builder::new(None);
    let snapshot = builder.next(Arc::clone(&state), &Snapshot::empty(None));
    eprintln!(
        "memory for {ssls} SSL objects + {routes} routes: validated state {:.1} MB, snapshot {:.1} MB",
        validated - before,
        rss_mb() - validated
    );
    let mut cert_route = route(7, ssls, 18080);
    cert_route["plugins"]["client-cert-auth"] = json!({"ca": [ca_pem]});
    Fixture {
        builder,
        route_put: entry("routes", "load-7".to_owned(), route(7, ssls, 18081), 3),
        cert_route_put: entry("routes", "load-7".to_owned(), cert_route, 3),
        ssl_put: entry("ssls", "load-3".to_owned(), ssl(3), 3),
        layout,
        keyring,
        state,
        snapshot,
    }
}

fn apply(c: &mut Criterion) {
    let f = fixture();
    let mut group = c.benchmark_group("apply");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    group.bench_function("state_clone", |b| {
        b.iter(|| black_box(ConfigState::clone(&f.state)))
    });
    group.bench_function("state_put_route", |b| {
        b.iter_batched(
            || ConfigState::clone(&f.state),
            |mut state| {
                state.put(&f.layout, &f.keyring, &f.route_put);
                state
            },
            BatchSize::LargeInput,
        )
    });
    for (name, put) in [
        ("snapshot_one_route_changed", &f.route_put),
        ("snapshot_one_ssl_changed", &f.ssl_put),
        ("snapshot_cert_route_changed", &f.cert_route_put),
    ] {
        let mut state = ConfigState::clone(&f.state);
        state.put(&f.layout, &f.keyring, put);
        assert!(state.invalid.is_empty(), "{name}: {:?}", state.invalid);
        state.revision += 1;
        let state = Arc::new(state);
        group.bench_function(name, |b| {
            b.iter(|| black_box(f.builder.clone().next(Arc::clone(&state), &f.snapshot)))
        });
    }
    let state = ConfigState::clone(&f.state);
    group.bench_function("snapshot_full_build", |b| {
        b.iter(|| black_box(Snapshot::build(&state, None, Some(&f.snapshot))))
    });
    group.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
