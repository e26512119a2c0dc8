use std::time::Instant;

use shared::resource::{PassHost, Scheme};
use shared::validate::{HostPattern, PluginConfigs, Timeouts, UpstreamNode, UriPattern};

use super::*;

fn upstream() -> Arc<ValidUpstream> {
    upstream_at(8080)
}

fn upstream_at(port: u16) -> Arc<ValidUpstream> {
    Arc::new(ValidUpstream {
        id: Some("u1".to_owned()),
        nodes: vec![UpstreamNode {
            host: "127.0.0.1".to_owned(),
            port,
            weight: 1,
        }],
        scheme: Scheme::Http,
        pass_host: PassHost::Pass,
        upstream_host: None,
        timeouts: Timeouts::default(),
        retries: 0,
        tls: None,
    })
}

fn upstreams() -> BTreeMap<String, Arc<ValidUpstream>> {
    BTreeMap::from([("u1".to_owned(), upstream())])
}

/// A route as validation would produce it: `uris` ending in `*` are
/// prefixes; `*` and `*.` hosts are wildcards.
struct Spec<'a> {
    id: &'a str,
    uris: &'a [&'a str],
    hosts: &'a [&'a str],
    methods: &'a [&'a str],
    priority: i64,
}

const BASE: Spec<'static> = Spec {
    id: "",
    uris: &[],
    hosts: &[],
    methods: &[],
    priority: 0,
};

fn route(spec: Spec<'_>) -> Arc<ValidRoute> {
    let uris = spec
        .uris
        .iter()
        .map(|uri| match uri.strip_suffix('*') {
            Some(prefix) => UriPattern::Prefix(prefix.to_owned()),
            None => UriPattern::Exact((*uri).to_owned()),
        })
        .collect();
    let hosts = spec
        .hosts
        .iter()
        .map(|host| match *host {
            "*" => HostPattern::Any,
            _ => match host.strip_prefix("*.") {
                Some(suffix) => HostPattern::Wildcard(suffix.to_owned()),
                None => HostPattern::Exact((*host).to_owned()),
            },
        })
        .collect();
    Arc::new(ValidRoute {
        id: spec.id.to_owned(),
        enabled: true,
        uris,
        hosts,
        methods: spec.methods.iter().map(|m| (*m).to_owned()).collect(),
        priority: spec.priority,
        enable_websocket: false,
        upstream: UpstreamRef::Id("u1".to_owned()),
        plugins: PluginConfigs::default(),
    })
}

fn table(routes: Vec<Arc<ValidRoute>>) -> RouteTable {
    RouteTable::build(&routes, &upstreams())
}

fn found(table: &RouteTable, host: Option<&str>, path: &str, method: Method) -> Option<String> {
    table
        .find(host, path, &method)
        .map(|route| route.id.clone())
}

fn get(table: &RouteTable, host: Option<&str>, path: &str) -> Option<String> {
    found(table, host, path, Method::GET)
}

#[test]
fn exact_uri_beats_prefix_and_longer_prefix_beats_shorter() {
    let table = table(vec![
        route(Spec {
            id: "root",
            uris: &["/*"],
            priority: 100,
            ..BASE
        }),
        route(Spec {
            id: "api",
            uris: &["/api/*"],
            priority: 50,
            ..BASE
        }),
        route(Spec {
            id: "v1",
            uris: &["/api/v1/*"],
            ..BASE
        }),
        route(Spec {
            id: "users",
            uris: &["/api/v1/users"],
            ..BASE
        }),
    ]);
    assert_eq!(get(&table, None, "/api/v1/users").as_deref(), Some("users"));
    assert_eq!(get(&table, None, "/api/v1/users/7").as_deref(), Some("v1"));
    assert_eq!(get(&table, None, "/api/v2").as_deref(), Some("api"));
    assert_eq!(
        get(&table, None, "/apis").as_deref(),
        Some("root"),
        "a prefix is byte-wise: /api/ is not a prefix of /apis"
    );
    assert_eq!(get(&table, None, "/").as_deref(), Some("root"));
}

#[test]
fn without_a_wildcard_the_uri_must_match_exactly() {
    let table = table(vec![route(Spec {
        id: "a",
        uris: &["/anything"],
        ..BASE
    })]);
    assert_eq!(get(&table, None, "/anything").as_deref(), Some("a"));
    assert_eq!(get(&table, None, "/anything/else"), None);
    assert_eq!(get(&table, None, "/anythin"), None);
}

#[test]
fn priority_then_id_breaks_ties_on_the_same_uri() {
    let table = table(vec![
        route(Spec {
            id: "low",
            uris: &["/x"],
            priority: 1,
            ..BASE
        }),
        route(Spec {
            id: "high",
            uris: &["/x"],
            priority: 5,
            ..BASE
        }),
        route(Spec {
            id: "b",
            uris: &["/y"],
            ..BASE
        }),
        route(Spec {
            id: "a",
            uris: &["/y"],
            ..BASE
        }),
    ]);
    assert_eq!(get(&table, None, "/x").as_deref(), Some("high"));
    assert_eq!(get(&table, None, "/y").as_deref(), Some("a"));
}

#[test]
fn host_routes_come_before_host_less_routes() {
    let table = table(vec![
        route(Spec {
            id: "host-prefix",
            uris: &["/*"],
            hosts: &["api.example.com"],
            ..BASE
        }),
        route(Spec {
            id: "exact",
            uris: &["/exact"],
            ..BASE
        }),
    ]);
    assert_eq!(
        get(&table, Some("api.example.com"), "/exact").as_deref(),
        Some("host-prefix")
    );
    assert_eq!(
        get(&table, Some("other.example.com"), "/exact").as_deref(),
        Some("exact")
    );
    assert_eq!(get(&table, None, "/exact").as_deref(), Some("exact"));
    assert_eq!(
        get(&table, None, "/other"),
        None,
        "a host route never serves other hosts"
    );
}

#[test]
fn exact_host_then_wildcard_then_any() {
    let table = table(vec![
        route(Spec {
            id: "exact",
            uris: &["/*"],
            hosts: &["a.example.com"],
            ..BASE
        }),
        route(Spec {
            id: "wild",
            uris: &["/*"],
            hosts: &["*.example.com"],
            ..BASE
        }),
        route(Spec {
            id: "any",
            uris: &["/*"],
            hosts: &["*"],
            ..BASE
        }),
        route(Spec {
            id: "none",
            uris: &["/*"],
            ..BASE
        }),
    ]);
    assert_eq!(
        get(&table, Some("a.example.com"), "/").as_deref(),
        Some("exact")
    );
    assert_eq!(
        get(&table, Some("b.example.com"), "/").as_deref(),
        Some("wild")
    );
    assert_eq!(
        get(&table, Some("x.b.example.com"), "/").as_deref(),
        Some("any"),
        "a wildcard covers one label"
    );
    assert_eq!(
        get(&table, Some("example.com"), "/").as_deref(),
        Some("any")
    );
    assert_eq!(get(&table, None, "/").as_deref(), Some("none"));
}

#[test]
fn a_route_lists_several_hosts_and_uris() {
    let table = table(vec![route(Spec {
        id: "multi",
        uris: &["/a", "/b/*"],
        hosts: &["one.test", "two.test"],
        ..BASE
    })]);
    for host in ["one.test", "two.test"] {
        assert_eq!(get(&table, Some(host), "/a").as_deref(), Some("multi"));
        assert_eq!(get(&table, Some(host), "/b/c").as_deref(), Some("multi"));
    }
    assert_eq!(get(&table, Some("three.test"), "/a"), None);
    assert_eq!(table.len(), 1);
}

#[test]
fn methods_filter_and_the_search_goes_on() {
    let table = table(vec![
        route(Spec {
            id: "post-only",
            uris: &["/x"],
            methods: &["POST"],
            priority: 10,
            ..BASE
        }),
        route(Spec {
            id: "any",
            uris: &["/x"],
            ..BASE
        }),
        route(Spec {
            id: "api-get",
            uris: &["/api/*"],
            methods: &["GET", "HEAD"],
            ..BASE
        }),
        route(Spec {
            id: "fallback",
            uris: &["/*"],
            ..BASE
        }),
        route(Spec {
            id: "host-get",
            uris: &["/*"],
            hosts: &["h.test"],
            methods: &["GET"],
            ..BASE
        }),
    ]);
    assert_eq!(
        found(&table, None, "/x", Method::POST).as_deref(),
        Some("post-only")
    );
    assert_eq!(
        found(&table, None, "/x", Method::GET).as_deref(),
        Some("any")
    );
    assert_eq!(
        found(&table, None, "/api/1", Method::HEAD).as_deref(),
        Some("api-get")
    );
    assert_eq!(
        found(&table, None, "/api/1", Method::DELETE).as_deref(),
        Some("fallback")
    );
    assert_eq!(
        found(&table, Some("h.test"), "/api/1", Method::PUT).as_deref(),
        Some("fallback")
    );
}

#[test]
fn disabled_routes_are_left_out() {
    let mut disabled = route(Spec {
        id: "off",
        uris: &["/x"],
        ..BASE
    });
    Arc::get_mut(&mut disabled).unwrap().enabled = false;
    let table = table(vec![
        disabled,
        route(Spec {
            id: "on",
            uris: &["/y"],
            ..BASE
        }),
    ]);
    assert_eq!(get(&table, None, "/x"), None);
    assert_eq!(get(&table, None, "/y").as_deref(), Some("on"));
    assert_eq!(table.len(), 1);
}

#[test]
fn broken_routes_still_match_and_say_why() {
    let mut missing = route(Spec {
        id: "missing",
        uris: &["/admin/*"],
        ..BASE
    });
    Arc::get_mut(&mut missing).unwrap().upstream = UpstreamRef::Id("gone".to_owned());
    let mut bad_plugin = route(Spec {
        id: "bad-plugin",
        uris: &["/secure/*"],
        ..BASE
    });
    // Validated, yet no trust anchor for webpki: the route cannot be built.
    let auth = shared::validate::ClientCertAuth {
        required: Default::default(),
        certificates: Vec::new(),
        ca: vec![vec![0x30, 0x00].into()],
        depth: 1,
        revocation: None,
        online_revocation: None,
        cert_header: None,
    };
    Arc::get_mut(&mut bad_plugin).unwrap().plugins =
        PluginConfigs::from_configs([shared::validate::PluginConfig::ClientCertAuth(Box::new(
            auth,
        ))]);
    let table = table(vec![
        missing,
        bad_plugin,
        route(Spec {
            id: "root",
            uris: &["/*"],
            ..BASE
        }),
    ]);

    let admin = table.find(None, "/admin/x", &Method::GET).unwrap();
    assert_eq!(
        admin.id, "missing",
        "never falls through to the broader route"
    );
    let missing = admin.pipeline().err().unwrap();
    assert_eq!(missing.to_string(), "upstream_id \"gone\" does not exist");
    assert_eq!(missing.kind(), "upstream_missing");
    let secure = table.find(None, "/secure/x", &Method::GET).unwrap();
    let unusable = secure.pipeline().err().unwrap();
    assert_eq!(
        unusable.to_string(),
        "plugin \"client-cert-auth\": ca: CA certificate #0 is not a usable trust anchor: BadDer"
    );
    assert_eq!(unusable.kind(), "plugin");
    assert!(table
        .find(None, "/other", &Method::GET)
        .unwrap()
        .pipeline()
        .is_ok());

    let listed = |table: &RouteTable| -> Vec<(String, &'static str)> {
        let mut listed: Vec<_> = (table.unbuildable())
            .map(|(_, id, error)| (id.to_owned(), error.kind()))
            .collect();
        listed.sort();
        listed
    };
    assert_eq!(
        listed(&table),
        [
            ("bad-plugin".to_owned(), "plugin"),
            ("missing".to_owned(), "upstream_missing")
        ]
    );
    let fixed = route(Spec {
        id: "missing",
        uris: &["/admin/*"],
        ..BASE
    });
    let changes = Changes {
        routes: vec![
            ("missing".to_owned(), Some(fixed)),
            ("bad-plugin".to_owned(), None),
        ],
        ..Changes::default()
    };
    let table = table.update(&changes, &|_| None);
    assert_eq!(
        listed(&table),
        [],
        "fixed and deleted routes are no longer listed"
    );
}

#[test]
fn routes_naming_one_upstream_share_its_balancer() {
    let table = table(vec![
        route(Spec {
            id: "a",
            uris: &["/a"],
            ..BASE
        }),
        route(Spec {
            id: "b",
            uris: &["/b"],
            ..BASE
        }),
    ]);
    let upstream_of = |path| {
        Arc::clone(
            &table
                .find(None, path, &Method::GET)
                .unwrap()
                .pipeline()
                .unwrap()
                .upstream,
        )
    };
    assert!(Arc::ptr_eq(&upstream_of("/a"), &upstream_of("/b")));
}

#[test]
fn lookups_stay_cheap_with_a_hundred_thousand_routes() {
    let mut routes = Vec::new();
    for i in 0..50_000 {
        let exact = format!("/svc{i}/exact");
        let prefix = format!("/svc{i}/*");
        routes.push(route(Spec {
            id: &format!("e{i}"),
            uris: &[&exact],
            ..BASE
        }));
        routes.push(route(Spec {
            id: &format!("p{i}"),
            uris: &[&prefix],
            hosts: &[&format!("h{}.test", i % 100)],
            ..BASE
        }));
    }
    let table = table(routes);
    assert_eq!(table.len(), 100_000);

    let started = Instant::now();
    for i in (0..50_000).step_by(7) {
        let host = format!("h{}.test", i % 100);
        assert_eq!(
            get(&table, None, &format!("/svc{i}/exact")),
            Some(format!("e{i}"))
        );
        assert_eq!(
            get(&table, Some(&host), &format!("/svc{i}/deep/path")),
            Some(format!("p{i}"))
        );
        assert_eq!(
            get(&table, Some("h-none.test"), &format!("/svc{i}/deep")),
            None
        );
    }
    // ~21,000 lookups: a linear scan of 100,000 routes per lookup would take
    // minutes; indexed lookups take milliseconds even unoptimised.
    assert!(
        started.elapsed().as_secs() < 5,
        "lookups took {:?}",
        started.elapsed()
    );
}

/// A deterministic stream of small numbers (no randomness in test runs).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

const HOSTS: [&str; 5] = ["a.test", "b.test", "*.test", "*", "x.a.test"];
const URIS: [&str; 6] = ["/", "/api", "/api/*", "/api/v1/*", "/*", "/other"];
const PROBES: [&str; 6] = ["/", "/api", "/api/v1/x", "/api/x", "/other", "/none/here"];

fn random_route(rng: &mut Lcg, id: &str) -> Arc<ValidRoute> {
    let host = HOSTS[rng.below(HOSTS.len() as u64) as usize];
    let uri = URIS[rng.below(URIS.len() as u64) as usize];
    let second_uri = URIS[rng.below(URIS.len() as u64) as usize];
    let hosts: &[&str] = match rng.below(3) {
        0 => &[],
        _ => std::slice::from_ref(&host),
    };
    let methods: &[&str] = if rng.below(4) == 0 { &["POST"] } else { &[] };
    let mut route = route(Spec {
        id,
        uris: &[uri, second_uri],
        hosts,
        methods,
        priority: rng.below(3) as i64,
    });
    if rng.below(5) == 0 {
        Arc::get_mut(&mut route).unwrap().enabled = false;
    }
    route
}

/// Which route every probe request finds.
fn answers(table: &RouteTable) -> Vec<Option<String>> {
    let hosts = [
        None,
        Some("a.test"),
        Some("b.test"),
        Some("x.a.test"),
        Some("c.other"),
    ];
    let mut out = Vec::new();
    for host in hosts {
        for path in PROBES {
            for method in [Method::GET, Method::POST] {
                out.push(found(table, host, path, method));
            }
        }
    }
    out
}

#[test]
fn updates_answer_exactly_as_a_fresh_build() {
    let mut rng = Lcg(7);
    let mut current: BTreeMap<String, Arc<ValidRoute>> = BTreeMap::new();
    let mut table = table(Vec::new());
    for step in 0..400 {
        let id = format!("r{}", rng.below(12));
        let change = if current.contains_key(&id) && rng.below(3) == 0 {
            current.remove(&id);
            None
        } else {
            let route = random_route(&mut rng, &id);
            current.insert(id.clone(), Arc::clone(&route));
            Some(route)
        };
        let previous = table.clone();
        let before = answers(&previous);
        let changes = Changes {
            routes: vec![(id, change)],
            ..Changes::default()
        };
        table = table.update(&changes, &|_| None);
        let fresh = RouteTable::build(&current.values().cloned().collect::<Vec<_>>(), &upstreams());
        assert_eq!(answers(&table), answers(&fresh), "step {step}");
        assert_eq!(table.len(), fresh.len(), "step {step}");
        assert_eq!(
            answers(&previous),
            before,
            "step {step}: the old table changed"
        );
    }
}

#[test]
fn unchanged_routes_keep_their_built_entries() {
    let a = route(Spec {
        id: "a",
        uris: &["/a"],
        ..BASE
    });
    let b = route(Spec {
        id: "b",
        uris: &["/b"],
        ..BASE
    });
    let first = table(vec![a, Arc::clone(&b)]);
    let a2 = route(Spec {
        id: "a",
        uris: &["/a2"],
        ..BASE
    });
    let changes = Changes {
        routes: vec![("a".to_owned(), Some(a2))],
        ..Changes::default()
    };
    let second = first.update(&changes, &|_| None);
    let entry =
        |table: &RouteTable, path| Arc::clone(table.find(None, path, &Method::GET).unwrap());
    assert!(Arc::ptr_eq(&entry(&first, "/b"), &entry(&second, "/b")));
    assert_eq!(get(&second, None, "/a"), None);
    assert_eq!(get(&second, None, "/a2").as_deref(), Some("a"));
    assert_eq!(
        get(&first, None, "/a").as_deref(),
        Some("a"),
        "the old table is intact"
    );
}

#[test]
fn upstream_changes_rebuild_the_routes_naming_them() {
    let first = table(vec![route(Spec {
        id: "a",
        uris: &["/a"],
        ..BASE
    })]);
    fn target(table: &RouteTable) -> Result<String, String> {
        let route = table.find(None, "/a", &Method::GET).unwrap();
        route
            .pipeline()
            .map(|p| p.upstream.node(0).address().to_owned())
            .map_err(ToString::to_string)
    }
    assert_eq!(target(&first).as_deref(), Ok("127.0.0.1:8080"));

    let changes = Changes {
        upstreams: vec![("u1".to_owned(), Some(upstream_at(9090)))],
        ..Changes::default()
    };
    let second = first.update(&changes, &|_| None);
    assert_eq!(target(&second).as_deref(), Ok("127.0.0.1:9090"));

    let changes = Changes {
        upstreams: vec![("u1".to_owned(), None)],
        ..Changes::default()
    };
    let third = second.update(&changes, &|_| None);
    assert_eq!(
        target(&third),
        Err("upstream_id \"u1\" does not exist".to_owned())
    );
    assert_eq!(target(&first).as_deref(), Ok("127.0.0.1:8080"));
}

#[test]
fn a_route_is_listed_for_its_inline_upstream_tls_not_for_a_stored_one() {
    use serde_json::{json, Value};
    use shared::validate::{validate, Valid};
    use shared::Kind;

    let upstream = json!({
        "nodes": {"b.internal:443": 1},
        "scheme": "https",
        "tls": {"client_cert_id": "gone"},
    });
    let valid = |kind, id: &str, value: Value| match validate(kind, id, &value) {
        Ok(valid) => valid,
        Err(err) => panic!("{id}: {err}"),
    };
    let route = |id: &str, value: Value| match valid(Kind::Routes, id, value) {
        Valid::Route(route) => route,
        _ => panic!("not a route"),
    };
    let Valid::Upstream(stored) = valid(Kind::Upstreams, "u1", upstream.clone()) else {
        panic!("not an upstream")
    };
    let table = RouteTable::build(
        &[
            route("inline", json!({"uri": "/a", "upstream": upstream})),
            route("by-id", json!({"uri": "/b", "upstream_id": "u1"})),
        ],
        &BTreeMap::from([("u1".to_owned(), stored)]),
    );
    let mut listed: Vec<_> = (table.unbuildable())
        .map(|(object, id, error)| (object, id.to_owned(), error.kind()))
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            ("route", "inline".to_owned(), "upstream_tls"),
            ("upstream", "u1".to_owned(), "upstream_tls"),
        ],
        "the stored upstream is listed once, as itself"
    );
}
