//! [`SniTable::update`] against [`SniTable::build_for_routes`]: a table
//! updated change by change serves exactly what a table built from the whole
//! resulting set of objects serves, and keeps the entries of the objects
//! that did not change.
//!
//! Raise the case count for a longer run with `PROPTEST_CASES`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use proptest::prelude::*;
use rustls_pki_types::PrivateKeyDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::*;
use crate::tls::testing::{valid_ssl, Ca, Identity};

/// Ids in an order where byte order is not numeric order.
const IDS: &[&str] = &["1", "10", "9", "a", "b"];
/// Overlapping patterns of every kind.
const SNIS: &[&str] = &["x.test", "y.test", "*.test", "*", "*.y.test", "z.y.test"];
/// Names looked up after every step.
const PROBES: &[&str] = &[
    "x.test", "y.test", "q.test", "z.y.test", "w.y.test", "a.b.test", "test", "other",
];

struct Pki {
    /// One certificate for every object: the table is keyed by SNI, not SAN.
    server: Identity,
    /// A key that cannot be loaded: its object is skipped.
    broken: Identity,
    /// The DER subject of a CA, as routes verifying certificates name it.
    ca_name: Vec<u8>,
}

static PKI: LazyLock<Pki> = LazyLock::new(|| {
    let ca = Ca::new("SERVER CA");
    let server = ca.server(&["x.test"]);
    let mut broken = server.clone();
    broken.key = PrivateKeyDer::Pkcs8(vec![0x30, 0x03, 0x02, 0x01, 0x00].into());
    let cert = ca.cert();
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).unwrap();
    Pki {
        server,
        broken,
        ca_name: parsed.subject().as_raw().to_vec(),
    }
});

/// One version of an SSL object.
#[derive(Clone, Debug)]
struct Spec {
    snis: Vec<&'static str>,
    enabled: bool,
    client_type: bool,
    broken: bool,
}

impl Spec {
    fn server(snis: &[&'static str]) -> Spec {
        Spec {
            snis: snis.to_vec(),
            enabled: true,
            client_type: false,
            broken: false,
        }
    }

    fn object(&self, id: &str) -> Arc<ValidSsl> {
        let identity = if self.broken {
            &PKI.broken
        } else {
            &PKI.server
        };
        let mut ssl = valid_ssl(id, &self.snis, &[identity], None);
        ssl.enabled = self.enabled;
        if self.client_type {
            ssl.kind = SslType::Client;
        }
        Arc::new(ssl)
    }
}

/// One update: changed objects (`None`: deleted), or new route requests.
#[derive(Clone, Debug)]
enum Step {
    Objects(Vec<(&'static str, Option<Spec>)>),
    /// 0: none; 1: a route on `x.test`; 2: a route on every host.
    Requests(usize),
}

fn requests(which: usize) -> RouteCertRequests {
    let mut requests = RouteCertRequests::default();
    let hosts = [HostPattern::parse("x.test").unwrap()];
    match which {
        1 => requests.add(&hosts, vec![PKI.ca_name.clone()]),
        2 => requests.add(&[], vec![PKI.ca_name.clone()]),
        _ => {}
    }
    requests
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        proptest::sample::subsequence(SNIS, 1..=3),
        proptest::bool::weighted(0.85),
        proptest::bool::weighted(0.1),
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(snis, enabled, client_type, broken)| Spec {
            snis,
            enabled,
            client_type,
            broken,
        })
}

fn step() -> impl Strategy<Value = Step> {
    let change = (
        proptest::sample::select(IDS),
        proptest::option::weighted(0.75, spec()),
    );
    prop_oneof![
        6 => proptest::collection::vec(change, 1..=3).prop_map(Step::Objects),
        1 => (0..3usize).prop_map(Step::Requests),
    ]
}

/// The configuration as the watcher holds it, and the table kept in step
/// with it by updates.
struct Run {
    objects: BTreeMap<String, Arc<ValidSsl>>,
    requests: RouteCertRequests,
    fallback: Option<&'static str>,
    table: SniTable,
}

impl Run {
    fn new(fallback: Option<&'static str>) -> Run {
        Run {
            objects: BTreeMap::new(),
            requests: RouteCertRequests::default(),
            fallback,
            table: SniTable::default(),
        }
    }

    /// Applies `step` as `snapshot::apply` does, then checks the table
    /// against a full build.
    fn apply(&mut self, step: &Step) {
        let changed: Vec<(String, Option<Arc<ValidSsl>>)> = match step {
            Step::Objects(changes) => changes
                .iter()
                .map(|(id, spec)| {
                    let now = spec.as_ref().map(|spec| spec.object(id));
                    match &now {
                        Some(ssl) => self.objects.insert(id.to_string(), Arc::clone(ssl)),
                        None => self.objects.remove(*id),
                    };
                    (id.to_string(), now)
                })
                .collect(),
            Step::Requests(which) => {
                self.requests = requests(*which);
                self.objects
                    .iter()
                    .map(|(id, ssl)| (id.clone(), Some(Arc::clone(ssl))))
                    .collect()
            }
        };
        self.table = self.table.update(&changed, self.fallback, &self.requests);
        self.check(&format!("{step:?}"));
    }

    fn check(&self, step: &str) {
        let objects: Vec<_> = self.objects.values().cloned().collect();
        let fresh = SniTable::build_for_routes(&objects, self.fallback, None, &self.requests);
        assert_eq!(served(&self.table), served(&fresh), "after {step}");
        assert_eq!(self.table.len(), fresh.len(), "after {step}");
        for sni in PROBES.iter().copied().map(Some).chain([None]) {
            let what = |table: &SniTable| {
                table
                    .for_sni(sni)
                    .map(|entry| (entry.id.to_string(), entry.route_names.clone()))
            };
            assert_eq!(what(&self.table), what(&fresh), "{sni:?} after {step}");
        }
    }
}

/// Every claimed pattern (`=name`, `*.suffix`, `*`) with the ids claiming
/// it, the serving one first; then every serving id, under `ids`.
fn served(table: &SniTable) -> BTreeMap<String, Vec<String>> {
    let ids = |claims: &Claims| {
        assert!(Arc::ptr_eq(&claims.serving, &claims.all[0]));
        claims.all.iter().map(|e| e.id.to_string()).collect()
    };
    let exact = table.exact.iter().map(|(n, c)| (format!("={n}"), ids(c)));
    let wildcard = table
        .wildcard
        .iter()
        .map(|(s, c)| (format!("*.{s}"), ids(c)));
    let any = table.any.iter().map(|c| ("*".to_owned(), ids(c)));
    let mut all: BTreeMap<_, _> = exact.chain(wildcard).chain(any).collect();
    let mut serving: Vec<String> = table.by_id.keys().cloned().collect();
    serving.sort();
    all.insert("ids".to_owned(), serving);
    let unserved = table
        .unserved()
        .map(|(id, why)| format!("{id}: {}", why.kind));
    all.insert("unserved".to_owned(), unserved.collect());
    all
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn updates_serve_what_a_full_build_serves(
        fallback in proptest::sample::select(&[None, Some("x.test"), Some("a.y.test")][..]),
        steps in proptest::collection::vec(step(), 1..20),
    ) {
        let mut run = Run::new(fallback);
        for step in &steps {
            run.apply(step);
        }
    }
}

fn put(id: &'static str, snis: &[&'static str]) -> Step {
    Step::Objects(vec![(id, Some(Spec::server(snis)))])
}

#[test]
fn a_released_name_goes_to_the_next_smallest_claimant() {
    let mut run = Run::new(Some("x.test"));
    run.apply(&put("b", &["x.test", "*"]));
    run.apply(&put("a", &["x.test", "*"]));
    run.apply(&put("c", &["x.test"]));
    assert_eq!(run.table.ssl_id_for("x.test"), Some("a"));
    assert_eq!(run.table.ssl_id_for("other"), Some("a"));
    assert_eq!(run.table.for_sni(None).map(|e| &*e.id), Some("a"));

    run.apply(&Step::Objects(vec![("a", None)]));
    assert_eq!(run.table.ssl_id_for("x.test"), Some("b"));
    assert_eq!(run.table.for_sni(None).map(|e| &*e.id), Some("b"));
    // `b` gives up `x.test` but keeps `*`.
    run.apply(&put("b", &["*"]));
    assert_eq!(run.table.ssl_id_for("x.test"), Some("c"));
    assert_eq!(run.table.ssl_id_for("other"), Some("b"));

    let mut disabled = Spec::server(&["*"]);
    disabled.enabled = false;
    run.apply(&Step::Objects(vec![("b", Some(disabled))]));
    assert_eq!(run.table.ssl_id_for("other"), None);
    assert_eq!(run.table.len(), 1);
}

#[test]
fn objects_that_cannot_serve_are_listed_until_fixed_or_deleted() {
    let unserved = |run: &Run| -> Vec<(String, &'static str)> {
        let list = run.table.unserved();
        list.map(|(id, why)| (id.to_owned(), why.kind)).collect()
    };
    let broken = Spec {
        broken: true,
        ..Spec::server(&["a.test"])
    };
    let mut run = Run::new(None);
    run.apply(&Step::Objects(vec![
        ("a", Some(broken.clone())),
        ("b", Some(broken)),
    ]));
    assert_eq!(
        unserved(&run),
        [
            ("a".to_owned(), "certificate"),
            ("b".to_owned(), "certificate")
        ]
    );
    let reason = run.table.unserved().next().unwrap().1.reason.to_string();
    assert!(
        reason.starts_with("certificate pair 0 cannot be loaded"),
        "{reason}"
    );

    run.apply(&put("a", &["a.test"]));
    run.apply(&Step::Objects(vec![("b", None)]));
    assert_eq!(unserved(&run), []);
    assert_eq!(run.table.ssl_id_for("a.test"), Some("a"));
}

#[test]
fn an_update_keeps_the_entries_of_unchanged_objects() {
    let mut run = Run::new(None);
    run.apply(&Step::Objects(vec![
        ("a", Some(Spec::server(&["a.test"]))),
        ("b", Some(Spec::server(&["*.test"]))),
    ]));
    let before = run.table.clone();
    let entry = |table: &SniTable, sni| Arc::clone(table.for_sni(Some(sni)).unwrap());

    run.apply(&put("b", &["*.test"]));
    assert!(Arc::ptr_eq(
        &entry(&before, "a.test"),
        &entry(&run.table, "a.test")
    ));
    assert!(!Arc::ptr_eq(
        &entry(&before, "b.test"),
        &entry(&run.table, "b.test")
    ));
    // The table updated from is left as it was.
    assert_eq!(served(&before)["*.test"], ["b"]);
    assert!(Arc::ptr_eq(
        &before.by_id.get("b").unwrap().ssl,
        &entry(&before, "b.test").ssl
    ));

    // New route requests rebuild only the entries whose CA names they change:
    // `b` serves `x.test`, `a` does not.
    let (a, b) = (entry(&run.table, "a.test"), entry(&run.table, "b.test"));
    run.apply(&Step::Requests(1));
    assert!(Arc::ptr_eq(&a, &entry(&run.table, "a.test")));
    let b_now = entry(&run.table, "b.test");
    assert!(!Arc::ptr_eq(&b, &b_now));
    assert_eq!(b_now.route_names, Some(vec![PKI.ca_name.clone()]));
    run.apply(&Step::Requests(1));
    assert!(Arc::ptr_eq(&b_now, &entry(&run.table, "b.test")));
}
