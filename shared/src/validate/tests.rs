//! The whole pipeline (schema, then semantic checks) on SSL objects, routes
//! and upstreams built with real certificates.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{PKCS_ECDSA_P256_SHA256, PKCS_ED25519};
use serde_json::{json, Value};

use super::*;
use crate::resource::{PassHost, Scheme, SslType};
use crate::x509::test_pki::{TestCa, WALKTHROUGH};

fn ssl(id: &str, value: Value) -> Result<Arc<ValidSsl>, ValidationError> {
    match validate(Kind::Ssls, id, &value)? {
        Valid::Ssl(ssl) => Ok(ssl),
        other => panic!("not an SSL object: {other:?}"),
    }
}

fn route(value: Value) -> Result<Arc<ValidRoute>, ValidationError> {
    match validate(Kind::Routes, "1", &value)? {
        Valid::Route(route) => Ok(route),
        other => panic!("not a route: {other:?}"),
    }
}

fn upstream(value: Value) -> Result<Arc<ValidUpstream>, ValidationError> {
    match validate(Kind::Upstreams, "1", &value)? {
        Valid::Upstream(upstream) => Ok(upstream),
        other => panic!("not an upstream: {other:?}"),
    }
}

/// The field a semantic check blamed.
fn blamed_field(result: Result<impl std::fmt::Debug, ValidationError>) -> String {
    match result {
        Err(ValidationError::Field { field, .. }) => field,
        other => panic!("expected a field error, got {other:?}"),
    }
}

fn schema_message(result: Result<impl std::fmt::Debug, ValidationError>) -> String {
    match result {
        Err(ValidationError::Schema(message)) => message,
        other => panic!("expected a schema error, got {other:?}"),
    }
}

/// The walkthrough's `PUT /apisix/admin/ssls/1` body.
fn walkthrough_ssl() -> Value {
    let pki = &*WALKTHROUGH;
    json!({
        "sni": "test.com",
        "cert": pki.server_cert,
        "key": pki.server_key,
        "client": {"ca": pki.ca_cert}
    })
}

fn with(mut base: Value, patch: Value) -> Value {
    if let (Value::Object(base), Value::Object(patch)) = (&mut base, patch) {
        base.extend(patch);
    }
    base
}

#[test]
fn walkthrough_ssl_with_v1_certificates_is_accepted_with_warnings() {
    let valid = ssl("1", walkthrough_ssl()).expect("walkthrough SSL object");
    assert_eq!(valid.id, "1");
    assert_eq!(valid.kind, SslType::Server);
    assert!(valid.enabled);
    assert_eq!(valid.snis, [HostPattern::Exact("test.com".into())]);
    assert_eq!(valid.pairs.len(), 1);
    assert_eq!(valid.pairs[0].leaf.subject, "CN=test.com");
    assert_eq!(valid.pairs[0].leaf.version, 1);
    let client = valid.client.as_ref().expect("client auth");
    assert_eq!(client.depth, 1, "nginx default depth");
    assert!(client.skip_mtls_uri_regex.is_none());
    assert_eq!(client.ca_summaries[0].subject, "CN=ROOTCA");
    assert!(valid.protocols.is_empty());
    let v1_warnings: Vec<_> = valid
        .warnings
        .iter()
        .filter(|w| w.contains("X.509 v1"))
        .collect();
    assert_eq!(v1_warnings.len(), 2, "{:?}", valid.warnings);
    assert!(v1_warnings[0].starts_with("cert:") && v1_warnings[0].contains("CN=test.com"));
    assert!(v1_warnings[1].starts_with("client.ca:") && v1_warnings[1].contains("CN=ROOTCA"));
}

#[test]
fn a_key_from_another_certificate_is_refused() {
    let body = with(walkthrough_ssl(), json!({"key": WALKTHROUGH.client_key}));
    let err = ssl("1", body).expect_err("mismatched key");
    assert_eq!(err.to_string(), "invalid key: key does not match cert");
}

#[test]
fn garbage_pem_is_refused_naming_the_field() {
    let pki = &*WALKTHROUGH;
    let garbage = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
    assert_eq!(
        blamed_field(ssl(
            "1",
            with(walkthrough_ssl(), json!({"cert": "garbage"}))
        )),
        "cert"
    );
    assert_eq!(
        blamed_field(ssl("1", with(walkthrough_ssl(), json!({"cert": garbage})))),
        "cert"
    );
    assert_eq!(
        blamed_field(ssl("1", with(walkthrough_ssl(), json!({"key": "garbage"})))),
        "key"
    );
    assert_eq!(
        blamed_field(ssl(
            "1",
            with(walkthrough_ssl(), json!({"client": {"ca": garbage}}))
        )),
        "client.ca"
    );
    let extra =
        json!({"certs": [pki.server_cert, "garbage"], "keys": [pki.server_key, pki.server_key]});
    assert_eq!(
        blamed_field(ssl("1", with(walkthrough_ssl(), extra))),
        "certs[1]"
    );
    let uneven = json!({"certs": [pki.server_cert], "keys": []});
    assert_eq!(
        blamed_field(ssl("1", with(walkthrough_ssl(), uneven))),
        "keys"
    );
}

#[test]
fn extra_pairs_are_validated_and_kept_in_order() {
    let ca = TestCa::new("CA", &PKCS_ECDSA_P256_SHA256);
    let ecdsa = ca.leaf(
        "test.com",
        &["test.com"],
        Vec::new(),
        &PKCS_ECDSA_P256_SHA256,
    );
    let ed25519 = ca.leaf("test.com", &["test.com"], Vec::new(), &PKCS_ED25519);
    let body = with(
        walkthrough_ssl(),
        json!({"certs": [ecdsa.cert, ed25519.cert], "keys": [ecdsa.key, ed25519.key]}),
    );
    let valid = ssl("1", body).expect("RSA + ECDSA + Ed25519");
    let versions: Vec<_> = valid.pairs.iter().map(|p| p.leaf.version).collect();
    assert_eq!(versions, [1, 3, 3]);
    let swapped = with(
        walkthrough_ssl(),
        json!({"certs": [ecdsa.cert, ed25519.cert], "keys": [ed25519.key, ecdsa.key]}),
    );
    let err = ssl("1", swapped).expect_err("swapped keys");
    assert_eq!(
        err.to_string(),
        "invalid keys[0]: keys[0] does not match certs[0]"
    );
}

#[test]
fn skip_mtls_regexes_compile_and_a_bad_one_is_named() {
    let client = |regexes: Value| {
        with(
            walkthrough_ssl(),
            json!({"client": {"ca": WALKTHROUGH.ca_cert, "depth": 10, "skip_mtls_uri_regex": regexes}}),
        )
    };
    let valid = ssl("1", client(json!(["/anything.*"]))).expect("valid regex");
    let auth = valid.client.as_ref().expect("client auth");
    assert_eq!(auth.depth, 10);
    let set = auth.skip_mtls_uri_regex.as_ref().expect("compiled set");
    assert!(set.is_match("/anything/foobar"));
    assert!(!set.is_match("/uuid"));
    assert_eq!(
        blamed_field(ssl("1", client(json!(["/ok.*", "(unclosed"])))),
        "client.skip_mtls_uri_regex[1]"
    );
    let valid = ssl("1", client(json!([]))).expect("empty list");
    assert!(valid
        .client
        .as_ref()
        .expect("client")
        .skip_mtls_uri_regex
        .is_none());
}

#[test]
fn sni_rules() {
    let base = || {
        let mut body = walkthrough_ssl();
        body.as_object_mut().expect("object").remove("sni");
        body
    };
    assert_eq!(blamed_field(ssl("1", base())), "sni");
    assert_eq!(
        blamed_field(ssl(
            "1",
            with(base(), json!({"sni": "a.test", "snis": ["b.test"]}))
        )),
        "sni"
    );
    assert_eq!(
        blamed_field(ssl("1", with(base(), json!({"snis": ["ok.test", "a..b"]})))),
        "snis[1]"
    );
    assert!(schema_message(ssl("1", with(base(), json!({"snis": []})))).contains("snis"));
    let valid = ssl(
        "1",
        with(base(), json!({"snis": ["*.Apisix.dev", "test.com."]})),
    )
    .expect("snis");
    assert_eq!(
        valid.snis,
        [
            HostPattern::Wildcard("apisix.dev".into()),
            HostPattern::Exact("test.com".into())
        ]
    );
    let client =
        ssl("1", with(base(), json!({"type": "client"}))).expect("client type needs no sni");
    assert_eq!(client.kind, SslType::Client);
    assert!(client.snis.is_empty());
}

#[test]
fn expired_certificates_are_accepted_with_a_warning() {
    let ca = TestCa::new("CA", &PKCS_ECDSA_P256_SHA256);
    let mut params = rcgen::CertificateParams::new(vec!["old.test".to_owned()]).expect("params");
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca.issuer).expect("cert").pem();
    let body = json!({"sni": "old.test", "cert": cert, "key": key.serialize_pem()});
    let valid = ssl("1", body).expect("expired but accepted");
    assert!(
        valid
            .warnings
            .iter()
            .any(|w| w.contains("expired at 2001-01-01")),
        "{:?}",
        valid.warnings
    );
}

#[test]
fn status_protocols_and_ids() {
    let valid = ssl(
        "7",
        with(
            walkthrough_ssl(),
            json!({"status": 0, "ssl_protocols": ["TLSv1.3"], "id": 7}),
        ),
    )
    .expect("numeric id equal to the URL id");
    assert!(!valid.enabled);
    assert_eq!(valid.protocols, [TlsVersion::Tls13]);
    assert_eq!(valid.id, "7");
    let message = schema_message(ssl(
        "1",
        with(walkthrough_ssl(), json!({"ssl_protocols": ["SSLv3"]})),
    ));
    assert!(message.contains("ssl_protocols[0]"), "{message}");
    let err = ssl("1", with(walkthrough_ssl(), json!({"id": "2"}))).expect_err("id mismatch");
    assert_eq!(
        err.to_string(),
        "invalid id: the id in the body does not match the id in the URL"
    );
    assert_eq!(blamed_field(ssl("a/b", walkthrough_ssl())), "id");
}

/// The walkthrough's `PUT /apisix/admin/routes/1` body.
fn walkthrough_route() -> Value {
    json!({
        "uri": "/anything",
        "plugins": {
            "proxy-rewrite": {
                "headers": {
                    "X-Ssl-Client-Fingerprint": "$ssl_client_fingerprint",
                    "X-Ssl-Client-Serial": "$ssl_client_serial",
                    "X-Ssl-Client-S-DN": "$ssl_client_s_dn"
                }
            }
        },
        "upstream": {"nodes": {"httpbin.org": 1}, "type": "roundrobin"}
    })
}

#[test]
fn walkthrough_route_is_accepted() {
    let valid = route(walkthrough_route()).expect("walkthrough route");
    assert_eq!(valid.uris, [UriPattern::Exact("/anything".into())]);
    assert!(valid.hosts.is_empty());
    assert!(valid.methods.is_empty());
    assert!(valid.enabled);
    assert!(valid.plugins.contains("proxy-rewrite"));
    let UpstreamRef::Inline(upstream) = &valid.upstream else {
        panic!("inline upstream expected");
    };
    assert_eq!(upstream.id, None);
    assert_eq!(
        upstream.nodes,
        [UpstreamNode {
            host: "httpbin.org".into(),
            port: 80,
            weight: 1
        }]
    );
}

#[test]
fn an_inline_upstream_may_carry_a_numeric_id() {
    let body = with(
        walkthrough_route(),
        json!({"upstream": {"id": 5, "nodes": {"httpbin.org": 1}}}),
    );
    let valid = route(body).expect("numeric inline upstream id");
    assert!(matches!(valid.upstream, UpstreamRef::Inline(_)));
}

#[test]
fn route_field_combinations() {
    let upstream_id = json!({"upstream_id": 1});
    let base = with(json!({"uri": "/*"}), upstream_id.clone());
    let valid = route(base.clone()).expect("prefix route with numeric upstream_id");
    assert_eq!(valid.uris, [UriPattern::Prefix("/".into())]);
    assert!(matches!(&valid.upstream, UpstreamRef::Id(id) if id == "1"));

    assert_eq!(
        blamed_field(route(with(base.clone(), json!({"uris": ["/a"]})))),
        "uri"
    );
    assert_eq!(blamed_field(route(upstream_id.clone())), "uri");
    assert_eq!(
        blamed_field(route(with(base.clone(), json!({"uri": "no-slash"})))),
        "uri"
    );
    assert_eq!(
        blamed_field(route(with(
            json!({"uris": ["/a", "/b*c"]}),
            upstream_id.clone()
        ))),
        "uris[1]"
    );
    assert_eq!(
        blamed_field(route(with(
            base.clone(),
            json!({"host": "a.test", "hosts": ["b.test"]})
        ))),
        "host"
    );
    assert_eq!(
        blamed_field(route(with(
            base.clone(),
            json!({"hosts": ["ok.test", "bad host"]})
        ))),
        "hosts[1]"
    );
    assert_eq!(
        route(json!({"uri": "/"})).unwrap_err().to_string(),
        "invalid upstream: one of `upstream` or `upstream_id` is required"
    );
    assert_eq!(
        route(with(walkthrough_route(), upstream_id))
            .unwrap_err()
            .to_string(),
        "invalid upstream: give either `upstream` or `upstream_id`, not both"
    );

    let valid = route(with(
        base.clone(),
        json!({"hosts": ["*.example.com"], "methods": ["GET", "POST"], "priority": -3}),
    ))
    .expect("hosts and methods");
    assert_eq!(valid.hosts, [HostPattern::Wildcard("example.com".into())]);
    assert_eq!(valid.methods, ["GET", "POST"]);
    assert_eq!(valid.priority, -3);
    assert!(!valid.enable_websocket, "off unless asked for");
    let valid =
        route(with(base.clone(), json!({"enable_websocket": true}))).expect("enable_websocket");
    assert!(valid.enable_websocket);
    assert!(schema_message(route(with(
        base.clone(),
        json!({"enable_websocket": "yes"})
    )))
    .contains("enable_websocket"));
    assert!(
        schema_message(route(with(base.clone(), json!({"methods": ["get"]}))))
            .contains("methods[0]")
    );
    assert!(schema_message(route(with(base, json!({"status": 2})))).contains("status"));
}

#[test]
fn inline_upstream_errors_are_named_under_upstream() {
    let body = with(
        walkthrough_route(),
        json!({"upstream": {"nodes": {"a..b:80": 1}}}),
    );
    assert_eq!(blamed_field(route(body)), "upstream.nodes[a..b:80]");
    let body = with(
        walkthrough_route(),
        json!({"upstream": {"nodes": {"a:80": 1}, "scheme": "ftp"}}),
    );
    assert!(schema_message(route(body)).contains("upstream.scheme"));
}

#[test]
fn upstream_nodes_are_parsed() {
    let valid = upstream(json!({
        "nodes": {"[::1]:8080": 2, "Example.com": 1, "10.0.0.1:9000": 0},
        "scheme": "https"
    }))
    .expect("map nodes");
    assert_eq!(valid.id.as_deref(), Some("1"));
    assert_eq!(valid.scheme, Scheme::Https);
    let nodes: Vec<_> = valid
        .nodes
        .iter()
        .map(|n| (n.host.as_str(), n.port, n.weight))
        .collect();
    // Map nodes come in key order; weight 0 is left out.
    assert_eq!(nodes, [("example.com", 443, 1), ("::1", 8080, 2)]);
    assert_eq!(valid.nodes[1].authority(), "[::1]:8080");
    assert_eq!(valid.retries, 1, "default: one try per other node");
    assert_eq!(valid.timeouts, Timeouts::default());

    let valid = upstream(json!({
        "nodes": [{"host": "a.test", "port": 81, "weight": 3}, {"host": "[::2]"}, {"host": "b.test", "weight": 0}],
        "timeout": {"connect": 0.5, "send": 2, "read": 30},
        "retries": 0
    }))
    .expect("list nodes");
    let nodes: Vec<_> = valid
        .nodes
        .iter()
        .map(|n| (n.host.as_str(), n.port, n.weight))
        .collect();
    assert_eq!(nodes, [("a.test", 81, 3), ("::2", 80, 1)]);
    assert_eq!(valid.timeouts.connect, Duration::from_millis(500));
    assert_eq!(valid.timeouts.read, Duration::from_secs(30));
    assert_eq!(valid.retries, 0);
}

#[test]
fn bad_upstreams_are_refused() {
    assert_eq!(
        blamed_field(upstream(json!({"nodes": {"a.test:80": 0}}))),
        "nodes"
    );
    assert_eq!(
        blamed_field(upstream(json!({"nodes": {"a.test:99999": 1}}))),
        "nodes[a.test:99999]"
    );
    assert_eq!(
        blamed_field(upstream(json!({"nodes": {"a.test:0": 1}}))),
        "nodes[a.test:0]"
    );
    assert_eq!(
        blamed_field(upstream(json!({"nodes": {"a.test:": 1}}))),
        "nodes[a.test:]"
    );
    assert_eq!(
        blamed_field(upstream(json!({"nodes": {"::1:80": 1}}))),
        "nodes[::1:80]"
    );
    assert_eq!(
        blamed_field(upstream(json!({"nodes": {"[::1:80": 1}}))),
        "nodes[[::1:80]"
    );
    assert_eq!(
        blamed_field(upstream(json!({"nodes": [{"host": "a b"}]}))),
        "nodes[0].host"
    );
    assert!(schema_message(upstream(json!({"nodes": {}}))).contains("nodes"));
    assert!(
        schema_message(upstream(json!({"nodes": {"a:1": 1}, "type": "chash"}))).contains("type")
    );
    assert!(schema_message(upstream(
        json!({"nodes": {"a:1": 1}, "timeout": {"connect": 0, "send": 1, "read": 1}})
    ))
    .contains("timeout.connect"));
    assert!(schema_message(upstream(
        json!({"nodes": {"a:1": 1}, "timeout": {"connect": 1, "send": 1}})
    ))
    .contains("read"));
    let message = schema_message(upstream(
        json!({"nodes": {"a:1": 1}, "pass_host": "rewrite"}),
    ));
    assert!(message.contains("upstream_host"), "{message}");
    assert_eq!(
        blamed_field(upstream(
            json!({"nodes": {"a:1": 1}, "pass_host": "rewrite", "upstream_host": "a b"})
        )),
        "upstream_host"
    );
    let valid = upstream(
        json!({"nodes": {"a:1": 1}, "pass_host": "rewrite", "upstream_host": "backend.test:8080"}),
    )
    .expect("rewrite");
    assert_eq!(valid.pass_host, PassHost::Rewrite);
    assert_eq!(valid.upstream_host.as_deref(), Some("backend.test:8080"));
}

#[test]
fn a_private_key_pasted_into_a_certificate_field_is_refused_naming_the_field() {
    let pki = &*WALKTHROUGH;
    let cert_and_key = format!("{}{}", pki.server_cert, pki.server_key);
    let ca_and_key = format!("{}{}", pki.ca_cert, pki.server_key);
    let refused = |result: Result<(), ValidationError>| {
        let message = result
            .expect_err("a private key in a certificate field")
            .to_string();
        assert!(!message.contains("PRIVATE KEY"), "{message}");
        assert!(!message.contains(&pki.server_key[40..80]), "{message}");
        message
    };
    let ssl_with = |patch: Value| ssl("1", with(walkthrough_ssl(), patch)).map(drop);
    assert_eq!(
        refused(ssl_with(json!({"cert": cert_and_key}))),
        "invalid cert: holds a private key; give it in `key`"
    );
    let extra = json!({"certs": [cert_and_key], "keys": [pki.server_key]});
    assert_eq!(
        refused(ssl_with(extra)),
        "invalid certs[0]: holds a private key; give it in `keys[0]`"
    );
    assert_eq!(
        refused(ssl_with(json!({"client": {"ca": ca_and_key}}))),
        "invalid client.ca: holds a private key; give only certificates here"
    );
    let crl = json!({"client": {"ca": pki.ca_cert, "crl": [pki.server_key]}});
    assert_eq!(
        refused(ssl_with(crl)),
        "invalid client.crl[0]: holds a private key; give only CRLs here"
    );
    let client_tls = json!({"client_cert": cert_and_key, "client_key": pki.server_key});
    let upstream_with = |tls: Value| {
        upstream(json!({"nodes": {"a:443": 1}, "scheme": "https", "tls": tls})).map(drop)
    };
    assert_eq!(
        refused(upstream_with(client_tls)),
        "invalid tls.client_cert: holds a private key; give it in `tls.client_key`"
    );
    assert_eq!(
        refused(upstream_with(json!({"ca": ca_and_key}))),
        "invalid tls.ca: holds a private key; give only certificates here"
    );
    let route_with = |config: Value| {
        let plugins = json!({"plugins": {"client-cert-auth": config}});
        route(with(walkthrough_route(), plugins)).map(drop)
    };
    for (config, field) in [
        (json!({"ca": [ca_and_key]}), "ca[0]"),
        (json!({"certificates": [cert_and_key]}), "certificates[0]"),
        (
            json!({"ca": [pki.ca_cert], "cert_header": {
                "name": "X-Client-Cert", "trusted_certificates": [cert_and_key]
            }}),
            "cert_header.trusted_certificates[0]",
        ),
    ] {
        assert_eq!(
            refused(route_with(config)),
            format!(
                "invalid plugins.client-cert-auth.{field}: holds a private key; \
                 give only certificates here"
            )
        );
    }
}
