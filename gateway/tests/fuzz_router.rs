//! Property tests for the route matcher: `RouteTable::find` never panics on
//! any host or path a client can send, and agrees with a plain reference
//! implementation of the documented precedence (host routes first: exact
//! host, then one-label wildcard, then `*`, then routes without hosts;
//! within those, an exact URI beats a prefix, a longer prefix beats a
//! shorter one, then higher `priority`, then the smaller id; a route whose
//! `methods` exclude the request's is skipped; `status: 0` routes never match).
//!
//! Raise the case count for a longer run with `PROPTEST_CASES`.

use std::collections::BTreeMap;
use std::sync::Arc;

use gateway::router::RouteTable;
use http::Method;
use proptest::prelude::*;
use serde_json::{json, Value};
use shared::validate::{validate, Valid, ValidRoute};
use shared::Kind;

const URIS: &[&str] = &[
    "/", "/*", "/a", "/a*", "/a/*", "/a/b", "/a/b*", "/ab", "/ab/*", "/b", "/b/*", "/a/b/c",
];
const PATHS: &[&str] = &[
    "/", "/a", "/a/", "/a/b", "/a/bc", "/a/b/c", "/ab", "/ab/x", "/abc", "/b", "/b/", "/c",
    "/a/b/c/d",
];
const HOST_PATTERNS: &[&str] = &["x.test", "y.x.test", "*.x.test", "*.test", "*"];
const HOSTS: &[&str] = &[
    "x.test",
    "y.x.test",
    "a.y.x.test",
    "z.test",
    "test",
    "other.example",
];
const METHODS: &[&str] = &["GET", "POST", "PUT"];

/// One generated route, as the reference matcher reads it.
#[derive(Clone, Debug)]
struct Spec {
    id: String,
    uris: Vec<&'static str>,
    hosts: Vec<&'static str>,
    methods: Vec<&'static str>,
    priority: i64,
    enabled: bool,
}

impl Spec {
    fn json(&self) -> Value {
        let mut route = json!({
            "uris": self.uris,
            "priority": self.priority,
            "status": i32::from(self.enabled),
            "upstream": { "type": "roundrobin", "nodes": { "127.0.0.1:1": 1 } }
        });
        if !self.hosts.is_empty() {
            route["hosts"] = json!(self.hosts);
        }
        if !self.methods.is_empty() {
            route["methods"] = json!(self.methods);
        }
        route
    }

    fn allows(&self, method: &Method) -> bool {
        self.methods.is_empty() || self.methods.contains(&method.as_str())
    }
}

fn spec(index: usize) -> impl Strategy<Value = Spec> {
    (
        proptest::sample::subsequence(URIS, 1..3),
        proptest::sample::subsequence(HOST_PATTERNS, 0..3),
        proptest::sample::subsequence(METHODS, 0..3),
        -1i64..3,
        proptest::bool::weighted(0.9),
    )
        .prop_map(move |(uris, hosts, methods, priority, enabled)| Spec {
            id: format!("r{index:02}"),
            uris,
            hosts,
            methods,
            priority,
            enabled,
        })
}

fn specs() -> impl Strategy<Value = Vec<Spec>> {
    (0usize..12).prop_flat_map(|n| (0..n).map(spec).collect::<Vec<_>>())
}

fn table(specs: &[Spec]) -> RouteTable {
    let routes: Vec<Arc<ValidRoute>> = specs
        .iter()
        .map(|s| match validate(Kind::Routes, &s.id, &s.json()) {
            Ok(Valid::Route(route)) => route,
            other => panic!("generated route {s:?} must be valid: {other:?}"),
        })
        .collect();
    RouteTable::build(&routes, &BTreeMap::new())
}

/// Which host bucket a route pattern puts a route in for `host`, in the
/// order buckets are tried; `None`: not for this host.
fn bucket_rank(pattern: &str, host: &str) -> Option<u8> {
    if pattern == host {
        Some(0)
    } else if pattern == "*" {
        Some(2)
    } else if let Some(suffix) = pattern.strip_prefix("*.") {
        let (label, rest) = host.split_once('.')?;
        (!label.is_empty() && rest == suffix).then_some(1)
    } else {
        None
    }
}

/// The documented precedence, written as plainly as possible.
fn reference(specs: &[Spec], host: Option<&str>, path: &str, method: &Method) -> Option<String> {
    let enabled: Vec<&Spec> = specs.iter().filter(|s| s.enabled).collect();
    for rank in 0..4u8 {
        let bucket: Vec<&Spec> = enabled
            .iter()
            .copied()
            .filter(|s| match (rank, host) {
                (3, _) => s.hosts.is_empty(),
                (_, Some(host)) => s.hosts.iter().any(|p| bucket_rank(p, host) == Some(rank)),
                (_, None) => false,
            })
            .collect();
        let best = |candidates: Vec<&Spec>| {
            candidates
                .into_iter()
                .filter(|s| s.allows(method))
                .min_by(|a, b| (-a.priority, &a.id).cmp(&(-b.priority, &b.id)))
                .map(|s| s.id.clone())
        };
        let exact: Vec<&Spec> = bucket
            .iter()
            .copied()
            .filter(|s| s.uris.iter().any(|u| !u.ends_with('*') && *u == path))
            .collect();
        if let Some(id) = best(exact) {
            return Some(id);
        }
        let mut prefixes: Vec<&str> = bucket
            .iter()
            .flat_map(|s| s.uris.iter())
            .filter_map(|u| u.strip_suffix('*'))
            .filter(|p| path.starts_with(p))
            .collect();
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
        prefixes.dedup();
        for prefix in prefixes {
            let holders: Vec<&Spec> = bucket
                .iter()
                .copied()
                .filter(|s| s.uris.iter().any(|u| u.strip_suffix('*') == Some(prefix)))
                .collect();
            if let Some(id) = best(holders) {
                return Some(id);
            }
        }
    }
    None
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        // A failure is turned into a named regression test instead.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn find_agrees_with_the_documented_precedence(
        specs in specs(),
        host in proptest::option::of(proptest::sample::select(HOSTS)),
        path in proptest::sample::select(PATHS),
        method in proptest::sample::select(METHODS),
    ) {
        let table = table(&specs);
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        let found = table.find(host, path, &method).map(|e| e.id.clone());
        prop_assert_eq!(found, reference(&specs, host, path, &method));
    }

    #[test]
    fn find_never_panics_on_arbitrary_hosts_and_paths(
        specs in specs(),
        host in proptest::option::of(any::<String>()),
        path in any::<String>(),
        method in "[A-Z]{1,8}",
    ) {
        let table = table(&specs);
        let method = Method::from_bytes(method.as_bytes()).expect("uppercase letters make a method");
        let _ = table.find(host.as_deref(), &path, &method);
    }
}
