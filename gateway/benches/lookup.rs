//! Route and SNI lookup cost at scale: 100,000 routes over 10,000 hosts, and
//! 10,000 SSL objects (plus one wildcard). Run with
//! `cargo bench -p portcullis-gateway --bench lookup`.
//!
//! Each iteration looks a different key up (cycling through 1,024), so the
//! figures include the cache misses a real mix of requests causes.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use gateway::router::RouteTable;
use gateway::tls::SniTable;
use http::Method;
use serde_json::json;
use shared::validate::{validate, Valid, ValidRoute, ValidSsl};
use shared::Kind;

const HOSTS: usize = 10_000;
const ROUTES: usize = 100_000;
const KEYS: usize = 1024;

/// Route `j` serves host `s<j mod HOSTS>.load.test`: `/r/<j>` (even j) or the
/// prefix `/p/<j>/*` (odd j), as `bench-load` stores them.
fn routes() -> Vec<Arc<ValidRoute>> {
    (0..ROUTES)
        .map(|j| {
            let uri = if j & 1 == 0 { format!("/r/{j}") } else { format!("/p/{j}/*") };
            let value = json!({
                "uri": uri,
                "hosts": [format!("s{}.load.test", j % HOSTS)],
                "plugins": {"proxy-rewrite": {"headers": {"X-Ssl-Client-S-DN": "$ssl_client_s_dn"}}},
                "upstream": {"type": "roundrobin", "nodes": {"127.0.0.1:18080": 1}},
            });
            match validate(Kind::Routes, &format!("load-{j}"), &value) {
                Ok(Valid::Route(route)) => route,
                other => panic!("route {j}: {:?}", other.err()),
            }
        })
        .collect()
}

/// SSL object `i` serves `s<i>.load.test`; one more serves `*.wild.test`.
/// They share one certificate: the table is keyed by SNI, not by SAN.
fn ssls() -> Vec<Arc<ValidSsl>> {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["load.test".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let (cert, key) = (cert.pem(), key.serialize_pem());
    let ssl = |id: String, sni: String| {
        let value = json!({"sni": sni, "cert": cert, "key": key});
        match validate(Kind::Ssls, &id, &value) {
            Ok(Valid::Ssl(ssl)) => ssl,
            other => panic!("ssl {id}: {:?}", other.err()),
        }
    };
    let mut ssls: Vec<_> = (0..HOSTS)
        .map(|i| ssl(format!("load-{i}"), format!("s{i}.load.test")))
        .collect();
    ssls.push(ssl("wild".to_owned(), "*.wild.test".to_owned()));
    ssls
}

fn route_lookup(c: &mut Criterion) {
    let table = RouteTable::build(&routes(), &BTreeMap::new());
    assert_eq!(table.len(), ROUTES);
    let get = Method::GET;
    // Spread the keys over the whole table.
    let picks: Vec<usize> = (0..KEYS).map(|k| (k * (ROUTES / KEYS)) | 1).collect();
    let exact: Vec<(String, String)> = picks
        .iter()
        .map(|&j| {
            (
                format!("s{}.load.test", (j - 1) % HOSTS),
                format!("/r/{}", j - 1),
            )
        })
        .collect();
    let prefix: Vec<(String, String)> = picks
        .iter()
        .map(|&j| {
            (
                format!("s{}.load.test", j % HOSTS),
                format!("/p/{j}/users/42"),
            )
        })
        .collect();
    let miss: Vec<(String, String)> = picks
        .iter()
        .map(|&j| {
            (
                format!("s{}.load.test", j % HOSTS),
                "/not/routed".to_owned(),
            )
        })
        .collect();
    for (name, keys, hit) in [
        ("route/exact_uri", &exact, true),
        ("route/prefix_uri", &prefix, true),
        ("route/miss_404", &miss, false),
    ] {
        for (host, path) in keys {
            assert_eq!(
                table.find(Some(host), path, &get).is_some(),
                hit,
                "{host}{path}"
            );
        }
        let mut i = 0;
        c.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % KEYS;
                let (host, path) = &keys[i];
                black_box(table.find(Some(black_box(host)), black_box(path), &get));
            })
        });
    }
}

fn sni_lookup(c: &mut Criterion) {
    let table = SniTable::build(&ssls(), None, None);
    assert_eq!(table.len(), HOSTS + 1);
    let exact: Vec<String> = (0..KEYS)
        .map(|k| format!("s{}.load.test", k * (HOSTS / KEYS)))
        .collect();
    let wildcard: Vec<String> = (0..KEYS).map(|k| format!("a{k}.wild.test")).collect();
    let miss: Vec<String> = (0..KEYS).map(|k| format!("s{k}.other.test")).collect();
    for (name, keys, hit) in [
        ("sni/exact", &exact, true),
        ("sni/wildcard", &wildcard, true),
        ("sni/miss", &miss, false),
    ] {
        for key in keys {
            assert_eq!(table.ssl_id_for(key).is_some(), hit, "{key}");
        }
        let mut i = 0;
        c.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % KEYS;
                black_box(table.ssl_id_for(black_box(&keys[i])));
            })
        });
    }
}

criterion_group!(lookup, route_lookup, sni_lookup);
criterion_main!(lookup);
