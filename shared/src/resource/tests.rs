//! The stored JSON survives a trip through the resource types unchanged:
//! the shared metadata stays at the top level of each object.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::{Metadata, Route, Ssl, Upstream};

/// `value` read as a `T` and written back.
fn round_trip<T: DeserializeOwned + Serialize>(value: &Value) -> Value {
    let typed: T = serde_json::from_value(value.clone()).expect("deserialises");
    serde_json::to_value(&typed).expect("serialises")
}

fn metadata(id: &str) -> Value {
    json!({
        "id": id,
        "desc": "a description",
        "labels": {"env": "prod", "team": "edge"},
        "create_time": 1_700_000_000,
        "update_time": 1_700_000_100
    })
}

/// `metadata(id)` with `fields` added.
fn object(id: &str, fields: Value) -> Value {
    let mut value = metadata(id);
    let (Value::Object(map), Value::Object(extra)) = (&mut value, fields) else {
        unreachable!("both are objects")
    };
    map.extend(extra);
    value
}

fn upstream_fields() -> Value {
    json!({
        "name": "backend",
        "nodes": [{"host": "10.0.0.1", "port": 8080, "weight": 2}],
        "type": "roundrobin",
        "scheme": "https",
        "pass_host": "rewrite",
        "upstream_host": "api.internal",
        "timeout": {"connect": 1.5, "send": 2.5, "read": 3.5},
        "retries": 2,
        "tls": {"client_cert_id": "9", "verify": true, "ca_id": "8", "sni": "api.internal"}
    })
}

#[test]
fn a_route_round_trips_unchanged() {
    let inline = object("u1", upstream_fields());
    let route = object(
        "r1",
        json!({
            "name": "orders",
            "uris": ["/orders", "/orders/*"],
            "hosts": ["api.example.com"],
            "methods": ["GET", "POST"],
            "priority": 3,
            "enable_websocket": true,
            "plugins": {"proxy-rewrite": {"uri": "/v2/orders", "headers": {"X-A": "1"}}},
            "upstream": inline,
            "status": 0
        }),
    );
    assert_eq!(round_trip::<Route>(&route), route);
}

#[test]
fn an_ssl_round_trips_unchanged() {
    let ssl = object(
        "s1",
        json!({
            "type": "server",
            "cert": "CERT",
            "key": "KEY",
            "certs": ["CERT2"],
            "keys": ["KEY2"],
            "snis": ["example.com", "*.example.com"],
            "client": {
                "ca": "CA",
                "depth": 2,
                "skip_mtls_uri_regex": ["^/public"],
                "crl": ["CRL"],
                "crl_mode": "leaf_only",
                "unknown_status": "allow",
                "revocation": {"mode": "hard_fail", "ocsp": true, "timeout_ms": 500}
            },
            "status": 1,
            "ssl_protocols": ["TLSv1.3"],
            "ocsp_stapling": {"enabled": true, "cache_ttl": 600}
        }),
    );
    assert_eq!(round_trip::<Ssl>(&ssl), ssl);
}

#[test]
fn an_upstream_round_trips_unchanged() {
    let upstream = object("u1", upstream_fields());
    assert_eq!(round_trip::<Upstream>(&upstream), upstream);
    let with_map = json!({"nodes": {"10.0.0.1:80": 1}, "scheme": "http", "pass_host": "pass"});
    assert_eq!(round_trip::<Upstream>(&with_map), with_map);
}

#[test]
fn metadata_is_read_at_the_top_level_and_ids_may_be_numbers() {
    let route: Route =
        serde_json::from_value(object("ignored", json!({"id": 7, "uri": "/"}))).unwrap();
    let expected_labels = [("env", "prod"), ("team", "edge")]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
    assert_eq!(
        route.metadata,
        Metadata {
            id: Some("7".into()),
            desc: Some("a description".into()),
            labels: Some(expected_labels),
            create_time: Some(1_700_000_000),
            update_time: Some(1_700_000_100),
        }
    );
    assert_eq!(
        round_trip::<Route>(&json!({"id": 7, "uri": "/", "status": 1}))["id"],
        "7"
    );
}

/// Unknown fields are the schema's to refuse: the types ignore them, except
/// inside the sections that deny them (`revocation`).
#[test]
fn unknown_fields_are_ignored_except_where_denied() {
    let route = json!({"uri": "/", "priority": 0, "status": 1, "name": "n", "bogus": 1});
    assert_eq!(
        round_trip::<Route>(&route),
        json!({"uri": "/", "priority": 0, "status": 1, "name": "n"})
    );
    // An SSL object has no `name`.
    let ssl = json!({"cert": "C", "key": "K", "status": 1, "name": "n", "bogus": true});
    assert_eq!(
        round_trip::<Ssl>(&ssl),
        json!({"type": "server", "cert": "C", "key": "K", "status": 1})
    );
    let upstream = json!({"nodes": [], "scheme": "http", "pass_host": "pass", "bogus": null});
    assert_eq!(
        round_trip::<Upstream>(&upstream),
        json!({"nodes": [], "scheme": "http", "pass_host": "pass"})
    );
    let denied =
        json!({"cert": "C", "key": "K", "client": {"ca": "A", "revocation": {"bogus": 1}}});
    let err = serde_json::from_value::<Ssl>(denied).unwrap_err();
    assert!(err.to_string().contains("unknown field `bogus`"), "{err}");
}
