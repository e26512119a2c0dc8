//! The plugins' schemas and semantic checks, through the entry points the
//! route validation uses.

use serde_json::{json, Value};

use super::*;

/// The schema check alone.
fn check(name: &str, conf: Value) -> Result<(), ValidationError> {
    check_schemas(&BTreeMap::from([(name.to_owned(), conf)]))
}

fn refused(name: &str, conf: Value) -> String {
    match check(name, conf.clone()) {
        Err(ValidationError::Schema(message)) => message,
        other => panic!("{name} {conf}: expected a schema error, got {other:?}"),
    }
}

/// Schema, then semantic checks.
fn check_one(name: &str, config: Value) -> Result<(), ValidationError> {
    PluginConfigs::validate(&BTreeMap::from([(name.to_owned(), config)])).map(drop)
}

#[test]
fn every_plugin_schema_compiles() {
    assert_eq!(SCHEMAS.len(), PLUGINS.len());
    for name in PLUGINS {
        assert!(SCHEMAS.contains_key(name), "{name} has no schema");
    }
}

#[test]
fn accepts_the_documented_shapes() {
    let ok = [
        ("mtls-auth", json!({})),
        (
            "mtls-auth",
            json!({"upstream_cert_s_dn_header": "X-Client-Cert-Dn", "error_response_code": 403}),
        ),
        (
            "mtls-acl",
            json!({"certificate_header_name": "X-O", "allow": ["a"]}),
        ),
        (
            "mtls-acl",
            json!({"attribute": "san_uri", "deny": ["spiffe://x/y"]}),
        ),
        (
            "client-cert-auth",
            json!({"required": "optional", "ca": ["pem"], "crl": ["pem"], "crl_mode": "leaf_only",
                   "unknown_status": "allow",
                   "cert_header": {"name": "X-WSO2-CLIENT-CERTIFICATE", "encoding": "base64-der",
                                   "trusted_sources": ["10.0.0.0/8"]}}),
        ),
        ("forward-client-cert", json!({})),
        (
            "forward-client-cert",
            json!({"mode": "append_forward", "format": "both", "details": ["subject", "uri"],
                   "by": "spiffe://portcullis/gw"}),
        ),
    ];
    for (name, conf) in ok {
        assert_eq!(check(name, conf.clone()), Ok(()), "{name} {conf}");
    }
}

#[test]
fn refuses_typos_and_bad_values() {
    let bad = [
        (
            "mtls-auth",
            json!({"upstream_cert_dn_header": "X"}),
            "upstream_cert_dn_header",
        ),
        (
            "mtls-auth",
            json!({"upstream_cert_cn_header": "Bad Name"}),
            "upstream_cert_cn_header",
        ),
        (
            "mtls-acl",
            json!({"attribute": "subject_c", "allow": ["a"]}),
            "attribute",
        ),
        (
            "mtls-acl",
            json!({"attribute": "subject_o", "allow": []}),
            "allow",
        ),
        (
            "client-cert-auth",
            json!({"required": "always"}),
            "required",
        ),
        (
            "client-cert-auth",
            json!({"ca": ["x"], "crl_mode": "lax"}),
            "crl_mode",
        ),
        (
            "client-cert-auth",
            json!({"cert_header": {"encoding": "pem"}}),
            "name",
        ),
        ("forward-client-cert", json!({"mode": "set"}), "mode"),
        (
            "forward-client-cert",
            json!({"details": ["hash"]}),
            "details",
        ),
        ("forward-client-cert", json!({"by": "a;b c"}), "by"),
    ];
    for (name, conf, needle) in bad {
        let message = refused(name, conf.clone());
        assert!(message.contains(needle), "{name} {conf}: {message}");
    }
}

#[test]
fn mtls_acl_reads_a_header_only_mtls_auth_sets() {
    let acl = json!({"certificate_header_name": "X-Client-Cert-Organization",
                     "allow": ["Callista Enterprise AB"]});
    let auth = json!({"upstream_cert_org_header": "x-client-cert-organization"});
    let plugins = BTreeMap::from([
        ("mtls-acl".to_owned(), acl.clone()),
        ("mtls-auth".to_owned(), auth),
    ]);
    assert!(PluginConfigs::validate(&plugins).is_ok());
    let err = check_one("mtls-acl", acl).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid plugins.mtls-acl.certificate_header_name: no mtls-auth setting"),
        "{err}"
    );
}

#[test]
fn mtls_auth_refuses_two_settings_naming_one_header() {
    let distinct = json!({"upstream_cert_cn_header": "X-Client-CN",
                          "upstream_cert_org_header": "X-Client-O"});
    assert_eq!(check_one("mtls-auth", distinct), Ok(()));
    let same = json!({"upstream_cert_cn_header": "X-Client-Id",
                      "upstream_cert_org_header": "x-client-id"});
    assert_eq!(
        check_one("mtls-auth", same).unwrap_err().to_string(),
        "invalid plugins.mtls-auth.upstream_cert_org_header: names the same header as \
         `upstream_cert_cn_header` (\"X-Client-Id\"); give each its own header"
    );
}

#[test]
fn mtls_acl_needs_one_list_and_one_source() {
    let ok = json!({"attribute": "subject_o", "allow": ["Callista Enterprise AB"]});
    assert_eq!(check_one("mtls-acl", ok), Ok(()));
    let both = json!({"attribute": "subject_o", "allow": ["a"], "deny": ["b"]});
    assert_eq!(
        check_one("mtls-acl", both).unwrap_err().to_string(),
        "invalid plugins.mtls-acl.allow: give either `allow` or `deny`, not both"
    );
    let neither = json!({"attribute": "subject_o"});
    assert_eq!(
        check_one("mtls-acl", neither).unwrap_err().to_string(),
        "invalid plugins.mtls-acl.allow: one of `allow` or `deny` is required"
    );
    let two_sources =
        json!({"attribute": "subject_o", "certificate_header_name": "X-O", "allow": ["a"]});
    assert_eq!(
        check_one("mtls-acl", two_sources).unwrap_err().to_string(),
        "invalid plugins.mtls-acl.attribute: give either `certificate_header_name` or \
         `attribute`, not both"
    );
    let no_source = json!({"allow": ["a"]});
    assert_eq!(
        check_one("mtls-acl", no_source).unwrap_err().to_string(),
        "invalid plugins.mtls-acl.attribute: one of `certificate_header_name` or \
         `attribute` is required"
    );
}

#[test]
fn client_cert_auth_pems_are_parsed() {
    let err = check_one("client-cert-auth", json!({"ca": ["garbage"]})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid plugins.client-cert-auth.ca[0]: no PEM certificate found"
    );
    assert_eq!(check_one("proxy-rewrite", json!({"uri": "/"})), Ok(()));
}

#[test]
fn plugins_are_checked_by_name_and_schema() {
    assert_eq!(refused("nope", json!({})), "unknown plugin nope");
    let ok = [
        json!({"headers": {"X-Ssl-Client-S-DN": "$ssl_client_s_dn", "X-Num": 1}}),
        json!({"headers": {"set": {"X-A": "1"}, "add": {"X-B": "2"}, "remove": ["X-C"]}}),
        json!({"uri": "/new", "method": "POST", "host": "example.com"}),
    ];
    for conf in ok {
        assert_eq!(check("proxy-rewrite", conf.clone()), Ok(()), "{conf}");
    }
    let bad = [
        (json!({}), ""),
        (json!({"regex_uri": ["^/a", "/b"]}), "regex_uri"),
        (json!({"uri": "no-slash"}), "plugins.proxy-rewrite.uri"),
        (json!({"method": "get"}), "plugins.proxy-rewrite.method"),
        (
            json!({"headers": {"Bad Name": "x"}}),
            "plugins.proxy-rewrite.headers",
        ),
        (
            json!({"headers": {"X-A": "a\r\nInjected: 1"}}),
            "plugins.proxy-rewrite.headers.X-A",
        ),
        (
            json!({"headers": {"X-A": "a\u{1b}[31m"}}),
            "plugins.proxy-rewrite.headers.X-A",
        ),
        (
            json!({"headers": {"set": {"Content-Length": "1"}}}),
            "plugins.proxy-rewrite.headers.set",
        ),
        (
            json!({"headers": {"set": {"X-A": "1"}, "oops": {}}}),
            "oops",
        ),
        (
            json!({"headers": {"remove": []}}),
            "plugins.proxy-rewrite.headers.remove",
        ),
    ];
    for (conf, needle) in bad {
        let message = refused("proxy-rewrite", conf.clone());
        assert!(message.contains(needle), "{conf}: {message}");
    }
}
