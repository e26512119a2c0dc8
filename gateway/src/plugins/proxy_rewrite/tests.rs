use std::sync::Arc;

use http::Request;
use rcgen::{CertificateParams, DnType, KeyPair};
use serde_json::{json, Value};
use shared::plugins::PluginSpec;
use shared::x509::CertSummary;

use super::*;
use crate::context::{ClientCert, ConnInfo, PeerCert};
use crate::plugins::testing::tls_conn;

/// Validates `config` as the admin API does, then builds the plugin.
fn build(config: &Value) -> Result<Box<dyn Plugin>, String> {
    let configs = std::collections::BTreeMap::from([(NAME.to_owned(), config.clone())]);
    shared::plugins::PluginConfigs::validate(&configs).map_err(|e| e.to_string())?;
    let config = config::ProxyRewrite::validate(config, &configs).map_err(|e| e.to_string())?;
    config.build().map_err(|e| e.to_string())
}

fn conn(client_cert: ClientCert) -> ConnInfo {
    tls_conn(client_cert, "192.0.2.10:50000").0
}

fn verified() -> ClientCert {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "CLIENT");
    let der = params
        .self_signed(&KeyPair::generate().unwrap())
        .unwrap()
        .der()
        .clone();
    let summary = CertSummary::from_der(&der).unwrap();
    ClientCert::Verified(Arc::new(PeerCert {
        der,
        summary,
        intermediates: Vec::new(),
    }))
}

/// The request as the proxy hands it to `upstream_request_filter`.
fn upstream_request(path_and_query: &str, headers: &[(&str, &str)]) -> Parts {
    let mut builder = Request::builder().uri(format!("http://10.0.0.1:8080{path_and_query}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}

/// Runs the plugin configured with `config` on `req`.
fn rewrite(config: Value, conn: &ConnInfo, req: &mut Parts) {
    let plugin = build(&config).unwrap();
    let request_uri = req.uri.path_and_query().unwrap().as_str().to_owned();
    let uri = req.uri.path().to_owned();
    let ctx = RequestCtx {
        conn,
        route_id: "1",
        host: Some("test.com"),
        uri: &uri,
        request_uri: &request_uri,
        extensions: http::Extensions::new(),
    };
    assert!(plugin.upstream_request_filter(&ctx, req).is_continue());
}

fn values(req: &Parts, name: &str) -> Vec<String> {
    req.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_walkthrough_config_sets_identity_headers() {
    let config = json!({"headers": {
        "X-Ssl-Client-Fingerprint": "$ssl_client_fingerprint",
        "X-Ssl-Client-Serial": "$ssl_client_serial",
        "X-Ssl-Client-S-DN": "$ssl_client_s_dn"
    }});
    let cert = verified();
    let ClientCert::Verified(peer) = &cert else {
        unreachable!()
    };
    let summary = peer.summary.clone();
    let mut req = upstream_request("/anything", &[("x-ssl-client-s-dn", "CN=forged")]);
    rewrite(config, &conn(cert), &mut req);
    assert_eq!(
        values(&req, "x-ssl-client-fingerprint"),
        [summary.fingerprint_sha1]
    );
    assert_eq!(values(&req, "x-ssl-client-serial"), [summary.serial]);
    assert_eq!(
        values(&req, "x-ssl-client-s-dn"),
        ["CN=CLIENT"],
        "the client's value is replaced"
    );
}

#[test]
fn without_a_certificate_identity_headers_are_removed_not_forged() {
    let config = json!({"headers": {"set": {"X-Ssl-Client-S-DN": "$ssl_client_s_dn"}, "add": {"X-Seen": "$ssl_client_serial"}}});
    let mut req = upstream_request("/public", &[("x-ssl-client-s-dn", "CN=admin")]);
    rewrite(config, &conn(ClientCert::None), &mut req);
    assert!(values(&req, "x-ssl-client-s-dn").is_empty());
    assert!(
        values(&req, "x-seen").is_empty(),
        "an empty add adds nothing"
    );
}

#[test]
fn add_then_remove_then_set() {
    let config = json!({"headers": {
        "add": {"X-Add": "added", "X-Gone": "added", "X-Addr": "$remote_addr", "X-Num": 7},
        "remove": ["X-Gone", "X-Drop"],
        "set": {"X-Set": "set", "X-Add": "$http_x_add-$host"}
    }});
    let mut req = upstream_request(
        "/x",
        &[
            ("x-add", "client"),
            ("x-drop", "1"),
            ("x-set", "client"),
            ("x-keep", "1"),
        ],
    );
    rewrite(config, &conn(ClientCert::None), &mut req);
    assert_eq!(
        values(&req, "x-add"),
        ["client, added-test.com"],
        "set sees what add did"
    );
    assert!(values(&req, "x-gone").is_empty(), "remove runs after add");
    assert!(values(&req, "x-drop").is_empty());
    assert_eq!(values(&req, "x-set"), ["set"]);
    assert_eq!(values(&req, "x-addr"), ["192.0.2.10"]);
    assert_eq!(values(&req, "x-num"), ["7"]);
    assert_eq!(values(&req, "x-keep"), ["1"]);
}

#[test]
fn rewrites_uri_keeping_the_query_and_the_node() {
    let cases = [
        (
            "/v2$uri",
            "/anything?a=1",
            "http://10.0.0.1:8080/v2/anything?a=1",
        ),
        (
            "/fixed?b=2",
            "/anything?a=1",
            "http://10.0.0.1:8080/fixed?b=2&a=1",
        ),
        ("/fixed", "/anything", "http://10.0.0.1:8080/fixed"),
        ("/$http_x_missing", "/anything", "http://10.0.0.1:8080/"),
    ];
    for (template, original, expected) in cases {
        let mut req = upstream_request(original, &[]);
        rewrite(json!({"uri": template}), &conn(ClientCert::None), &mut req);
        assert_eq!(req.uri, expected, "{template}");
    }
}

#[test]
fn rewrites_method_and_host() {
    let mut req = upstream_request("/", &[("host", "test.com")]);
    rewrite(
        json!({"method": "POST", "host": "internal.svc:8080"}),
        &conn(ClientCert::None),
        &mut req,
    );
    assert_eq!(req.method, Method::POST);
    assert_eq!(values(&req, "host"), ["internal.svc:8080"]);
}

#[test]
fn invalid_configs_are_refused_by_validation() {
    let uri = "invalid plugins.proxy-rewrite.uri: contains characters not allowed in a URI";
    let cases = [
        (
            json!({"headers": {"Content-Length": "0"}}),
            "\"Content-Length\"",
        ),
        (
            json!({"headers": {"set": {"Transfer-Encoding": "chunked"}}}),
            "\"Transfer-Encoding\"",
        ),
        (
            json!({"headers": {"bad header": "x"}}),
            "plugins.proxy-rewrite.headers",
        ),
        (
            json!({"headers": {"X-A": "line\nbreak"}}),
            "plugins.proxy-rewrite.headers.X-A",
        ),
        (
            json!({"headers": {"X-A": {"nested": true}}}),
            "plugins.proxy-rewrite.headers.X-A",
        ),
        (
            json!({"headers": {"set": {"X-A": "1"}, "X-B": "2"}}),
            "'X-B'",
        ),
        (
            json!({"headers": {"remove": "X-A"}}),
            "plugins.proxy-rewrite.headers.remove",
        ),
        (json!({"method": "GET /"}), "plugins.proxy-rewrite.method"),
        (json!({"uri": "/a b"}), uri),
        (json!({"uri": "/a#frag"}), uri),
        (json!({"regex_uri": ["^/(.*)", "/$1"]}), "'regex_uri'"),
        (json!({"_meta": {"disable": false}, "uri": "/x"}), "'_meta'"),
    ];
    for (config, expected) in cases {
        let err = build(&config)
            .err()
            .unwrap_or_else(|| panic!("{config} was accepted"));
        assert!(err.contains(expected), "{config}: {err}");
    }
}

#[test]
fn values_without_variables_are_built_with_the_route_and_sent_alike() {
    let config = json!({"set": {"X-Version": " v2 ", "X-Blank": "  ", "X-Both": "$remote_addr"}});
    let validated = config::ProxyRewrite::validate(
        &json!({"headers": config}),
        &std::collections::BTreeMap::new(),
    )
    .unwrap();
    let ops = HeaderOps::new(&validated.headers);
    let kinds: Vec<(&str, Option<bool>)> = ops
        .set
        .iter()
        .map(|(name, value)| {
            let fixed = value
                .as_ref()
                .map(|value| matches!(value, HeaderTemplate::Fixed(_)));
            (name.as_str(), fixed)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("x-blank", None),
            ("x-both", Some(false)),
            ("x-version", Some(true))
        ]
    );

    let mut req = upstream_request("/x", &[("X-Blank", "from the client")]);
    rewrite(
        json!({"headers": config}),
        &conn(ClientCert::None),
        &mut req,
    );
    assert_eq!(values(&req, "x-version"), ["v2"]);
    assert!(
        !req.headers.contains_key("x-blank"),
        "set to nothing: removed"
    );
    assert_eq!(values(&req, "x-both"), ["192.0.2.10"]);
}

#[test]
fn a_rendered_uri_with_a_dot_segment_fails_closed() {
    let conn = conn(ClientCert::None);
    let cases = [
        ("/tenants/$http_x_tenant/data", "../../admin"),
        ("/tenants/$http_x_tenant/data", ".."),
        ("/tenants/$http_x_tenant/data", "."),
        ("/tenants/$http_x_tenant/data", "..;x"),
        ("/tenants/$http_x_tenant/data", "a/../../b"),
        ("/tenants/$http_x_tenant", ".."),
        // The route's own `%2e` completed by the client's `.`.
        ("/tenants/%2e$http_x_tenant/data", "."),
    ];
    for (template, tenant) in cases {
        let plugin = build(&json!({"uri": template})).unwrap();
        let mut req = upstream_request("/anything", &[("x-tenant", tenant)]);
        let ctx = RequestCtx {
            conn: &conn,
            route_id: "1",
            host: Some("test.com"),
            uri: "/anything",
            request_uri: "/anything",
            extensions: http::Extensions::new(),
        };
        let ControlFlow::Break(response) = plugin.upstream_request_filter(&ctx, &mut req) else {
            panic!("{template} with {tenant:?} was sent as {}", req.uri);
        };
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(req.uri, "http://10.0.0.1:8080/anything", "left unchanged");
    }
}

#[test]
fn dots_inside_a_segment_or_encoded_by_the_client_are_sent() {
    let cases = [
        (
            "/tenants/$http_x_tenant/data",
            "/anything",
            "/tenants/..a/data",
        ),
        ("/t/$arg_p", "/anything?p=%2e%2e", "/t/%252e%252e?p=%2e%2e"),
    ];
    for (template, original, expected) in cases {
        let mut req = upstream_request(original, &[("x-tenant", "..a")]);
        rewrite(json!({"uri": template}), &conn(ClientCert::None), &mut req);
        assert_eq!(
            req.uri.path_and_query().unwrap().as_str(),
            expected,
            "{template}"
        );
    }
}
