use http::Method;
use serde_json::{json, Value};
use shared::etcd_layout::KeyLayout;
use shared::keyring::Keyring;
use shared::store::RawEntry;

use super::*;

/// A configuration changed one object at a time, as the watcher does.
struct Config {
    layout: KeyLayout,
    state: ConfigState,
}

impl Config {
    fn new() -> Config {
        Config {
            layout: KeyLayout::new("/t"),
            state: ConfigState::default(),
        }
    }

    fn put(&mut self, kind: &str, id: &str, value: Value) -> Arc<ConfigState> {
        self.state.revision += 1;
        let raw = RawEntry {
            key: format!("/t/{kind}/{id}"),
            value: value.to_string().into_bytes(),
            mod_revision: self.state.revision,
        };
        self.state.put(&self.layout, &Keyring::default(), &raw);
        assert!(self.state.invalid.is_empty(), "{:?}", self.state.invalid);
        Arc::new(self.state.clone())
    }

    fn delete(&mut self, kind: &str, id: &str) -> Arc<ConfigState> {
        self.state.revision += 1;
        self.state.delete(&self.layout, &format!("/t/{kind}/{id}"));
        Arc::new(self.state.clone())
    }
}

fn ssl(sni: &str) -> Value {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![sni.to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    json!({"sni": sni, "cert": cert.pem(), "key": key.serialize_pem()})
}

fn upstream(port: u16) -> Value {
    json!({"type": "roundrobin", "nodes": {format!("127.0.0.1:{port}"): 1}})
}

/// What a snapshot answers: the route and upstream node per request, the
/// SSL object per SNI.
fn answers(snapshot: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for host in [None, Some("a.test"), Some("b.test")] {
        for path in ["/a", "/b", "/c/x", "/none"] {
            let found = snapshot.routes.find(host, path, &Method::GET).map(|route| {
                let node = route
                    .pipeline()
                    .map(|p| p.upstream.node(0).address().to_owned());
                format!("{} {node:?}", route.id)
            });
            out.push(format!("{host:?}{path} -> {found:?}"));
        }
    }
    for sni in ["a.test", "b.test", "x.c.test"] {
        out.push(format!("{sni} -> {:?}", snapshot.tls.ssl_id_for(sni)));
    }
    out
}

/// One change to a configuration.
type Step = Box<dyn Fn(&mut Config) -> Arc<ConfigState>>;

#[test]
fn each_change_is_applied_as_a_full_build_would() {
    let mut config = Config::new();
    let mut builder = Builder::new(None);
    let mut current = Snapshot::empty(None);
    let steps: Vec<Step> = vec![
        Box::new(|c| c.put("upstreams", "u1", upstream(8001))),
        Box::new(|c| c.put("routes", "a", json!({"uri": "/a", "upstream_id": "u1"}))),
        Box::new(|c| {
            c.put(
                "routes",
                "b",
                json!({"uri": "/b", "hosts": ["b.test"], "upstream": upstream(8002)}),
            )
        }),
        Box::new(|c| c.put("ssls", "s1", ssl("a.test"))),
        Box::new(|c| {
            c.put(
                "routes",
                "c",
                json!({"uri": "/c/*", "upstream_id": "u1", "priority": 2}),
            )
        }),
        Box::new(|c| c.put("upstreams", "u1", upstream(8003))),
        Box::new(|c| c.put("ssls", "s2", ssl("*.c.test"))),
        Box::new(|c| {
            c.put(
                "routes",
                "a",
                json!({"uri": "/a", "hosts": ["a.test"], "upstream_id": "u1"}),
            )
        }),
        Box::new(|c| c.delete("ssls", "s1")),
        Box::new(|c| {
            c.put(
                "routes",
                "c",
                json!({"uri": "/c/*", "upstream_id": "u1", "status": 0}),
            )
        }),
        Box::new(|c| c.delete("upstreams", "u1")),
        Box::new(|c| c.delete("routes", "b")),
        Box::new(|c| c.put("upstreams", "u1", upstream(8004))),
    ];
    for (step, change) in steps.iter().enumerate() {
        let state = change(&mut config);
        let next = builder.next(Arc::clone(&state), &current);
        let fresh = Snapshot::build(&state, None, None);
        assert_eq!(answers(&next), answers(&fresh), "step {step}");
        assert_eq!(next.revision, state.revision);
        current = next;
    }
}

#[test]
fn the_sni_table_is_rebuilt_only_when_it_must() {
    let mut config = Config::new();
    let mut builder = Builder::new(None);
    let first = builder.next(
        config.put("ssls", "s1", ssl("a.test")),
        &Snapshot::empty(None),
    );
    let route = builder.next(
        config.put(
            "routes",
            "a",
            json!({"uri": "/a", "upstream": upstream(8001)}),
        ),
        &first,
    );
    assert!(
        Arc::ptr_eq(&first.tls, &route.tls),
        "a route change keeps the SNI table"
    );

    let ca = rcgen::CertificateParams::new(Vec::new())
        .unwrap()
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap()
        .pem();
    let asking = builder.next(
        config.put(
            "routes",
            "b",
            json!({"uri": "/b", "upstream": upstream(8001), "plugins": {"client-cert-auth": {"ca": [ca]}}}),
        ),
        &route,
    );
    assert!(
        !Arc::ptr_eq(&route.tls, &asking.tls),
        "a route verifying client certificates changes what handshakes ask for"
    );

    let ssl_changed = builder.next(config.put("ssls", "s2", ssl("b.test")), &asking);
    assert!(!Arc::ptr_eq(&asking.tls, &ssl_changed.tls));
    assert_eq!(ssl_changed.tls.ssl_id_for("b.test"), Some("s2"));
}

#[test]
fn differences_are_found_by_identity() {
    let mut config = Config::new();
    let one = config.put("routes", "a", json!({"uri": "/a", "upstream": upstream(1)}));
    let two = config.put("routes", "b", json!({"uri": "/b", "upstream": upstream(1)}));
    let three = config.delete("routes", "a");
    let ids = |changes: Vec<(String, Option<Arc<ValidRoute>>)>| {
        changes
            .into_iter()
            .map(|(id, now)| format!("{id}:{}", now.is_some()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(changed(&one.routes, &two.routes)), ["b:true"]);
    assert_eq!(ids(changed(&two.routes, &three.routes)), ["a:false"]);
    assert_eq!(
        ids(changed(&three.routes, &three.routes)),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(changed(&three.routes, &one.routes)),
        ["a:true", "b:false"]
    );
}

/// The SSL object and the CA names asked for on behalf of routes, per SNI.
fn tls_answers(snapshot: &Snapshot) -> Vec<String> {
    [
        None,
        Some("a.test"),
        Some("b.test"),
        Some("x.c.test"),
        Some("other"),
    ]
    .into_iter()
    .map(|sni| {
        let entry = snapshot.tls.for_sni(sni);
        let names = entry.map(|e| e.route_names.as_ref().map(Vec::len));
        format!("{sni:?} -> {:?} {names:?}", entry.map(|e| &*e.id))
    })
    .collect()
}

#[test]
fn ssl_changes_are_applied_as_a_full_build_would() {
    let ca = rcgen::CertificateParams::new(Vec::new())
        .unwrap()
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap()
        .pem();
    let disabled = |sni: &str| {
        let mut ssl = ssl(sni);
        ssl["status"] = json!(0);
        ssl
    };
    let steps: Vec<Step> = vec![
        Box::new(|c| c.put("ssls", "s2", ssl("a.test"))),
        Box::new(|c| c.put("ssls", "s3", ssl("*"))),
        // A smaller id claiming the same name takes it over.
        Box::new(|c| c.put("ssls", "s1", ssl("a.test"))),
        Box::new(move |c| {
            c.put(
                "routes",
                "m",
                json!({"uri": "/m", "hosts": ["a.test"], "upstream": upstream(1),
                       "plugins": {"client-cert-auth": {"ca": [ca.clone()]}}}),
            )
        }),
        // Disabled: the name goes back to the next claimant.
        Box::new(move |c| c.put("ssls", "s1", disabled("a.test"))),
        Box::new(|c| c.put("ssls", "s2", ssl("*.c.test"))),
        Box::new(|c| c.delete("routes", "m")),
        Box::new(|c| c.delete("ssls", "s3")),
        Box::new(|c| c.put("ssls", "s1", ssl("a.test"))),
    ];
    for fallback in [None, Some("a.test")] {
        let mut config = Config::new();
        let mut builder = Builder::new(fallback.map(str::to_owned));
        let mut current = Snapshot::empty(fallback);
        for (step, change) in steps.iter().enumerate() {
            let state = change(&mut config);
            let next = builder.next(Arc::clone(&state), &current);
            let fresh = Snapshot::build(&state, fallback, None);
            assert_eq!(tls_answers(&next), tls_answers(&fresh), "step {step}");
            assert_eq!(next.tls.len(), fresh.tls.len(), "step {step}");
            current = next;
        }
        assert_eq!(current.tls.ssl_id_for("a.test"), Some("s1"));
        assert_eq!(current.tls.ssl_id_for("x.c.test"), Some("s2"));
    }
}
