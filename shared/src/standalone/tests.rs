use std::sync::Arc;

use base64::Engine as _;
use rcgen::PKCS_ECDSA_P256_SHA256;
use serde_json::{json, Value};

use super::document::parse;
use super::*;
use crate::resource::Kind;
use crate::x509::test_pki::TestCa;

fn no_env(_: &str) -> Option<String> {
    None
}

/// Builds the state of a YAML text, as `load` does for a file.
fn build_yaml(
    text: &str,
    keyring: &Keyring,
    previous: Option<&ConfigState>,
) -> Result<ConfigState, Vec<Problem>> {
    let document = parse(text, false, &no_env)?;
    build::build(
        document,
        keyring,
        previous,
        previous.map_or(1, |p| p.revision + 1),
    )
}

fn yaml(value: &Value) -> String {
    format!("{}#END\n", serde_yaml::to_string(value).expect("yaml"))
}

fn site() -> (String, String) {
    let ca = TestCa::new("Standalone CA", &PKCS_ECDSA_P256_SHA256);
    let leaf = ca.leaf("a.test", &["a.test"], Vec::new(), &PKCS_ECDSA_P256_SHA256);
    (leaf.cert, leaf.key)
}

fn keyring(byte: u8) -> Keyring {
    let key = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
    Keyring::from_base64(&[key]).expect("valid key")
}

const UPSTREAM: &str = "{id: u1, type: roundrobin, nodes: {'127.0.0.1:80': 1}}";

#[test]
fn loads_routes_upstreams_and_ssls_with_numeric_ids() {
    let (cert, key) = site();
    let text = yaml(&json!({
        "upstreams": [{"id": "u1", "type": "roundrobin", "nodes": {"127.0.0.1:80": 1}}],
        "routes": [
            {"id": 1, "uri": "/a", "upstream_id": "u1"},
            {"id": "2", "uri": "/b", "upstream": {"type": "roundrobin", "nodes": {"127.0.0.1:81": 1}}}
        ],
        "ssls": [{"id": "s", "sni": "a.test", "cert": cert, "key": key}]
    }));
    let state = build_yaml(&text, &Keyring::default(), None).expect("valid");
    assert!(state.contains(Kind::Routes, "1") && state.contains(Kind::Routes, "2"));
    assert!(state.contains(Kind::Upstreams, "u1") && state.contains(Kind::Ssls, "s"));
    assert_eq!(state.revision, 1);
    assert!(state.invalid.is_empty());
}

#[test]
fn every_problem_is_listed_with_its_path() {
    let text = format!(
        "upstreams: [{UPSTREAM}]\nroutes:\n  - {{id: 1, uri: /a, upstream_id: u1}}\n  - {{id: 2, uri: /b, upstream_id: nope}}\n  - {{uri: /c, upstream_id: u1}}\n  - {{id: 1, uri: /d, upstream_id: u1}}\n  - {{id: 5, uri: /e, upstream: {{type: roundrobin, nodes: {{}}}}}}\n  - {{id: 6, uris: [/f, 'g'], upstream_id: u1}}\n#END\n"
    );
    let problems = build_yaml(&text, &Keyring::default(), None).expect_err("invalid");
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"routes[2].id"), "{problems:?}");
    assert!(paths.contains(&"routes[3].id"), "{problems:?}");
    assert!(paths.contains(&"routes[1].upstream_id"), "{problems:?}");
    assert!(
        problems
            .iter()
            .any(|p| p.path.starts_with("routes[4]") && p.to_string().contains("nodes")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.path.starts_with("routes[5]")),
        "{problems:?}"
    );
    assert_eq!(problems.len(), 5, "{problems:?}");
    let duplicate = problems
        .iter()
        .find(|p| p.path == "routes[3].id")
        .expect("dup");
    assert!(
        duplicate.reason.contains("routes[0] has it too"),
        "{duplicate}"
    );
}

#[test]
fn unchanged_objects_keep_their_validated_value() {
    let first = yaml(&json!({
        "upstreams": [{"id": "u1", "type": "roundrobin", "nodes": {"127.0.0.1:80": 1}}],
        "routes": [{"id": 1, "uri": "/a", "upstream_id": "u1"}, {"id": 2, "uri": "/b", "upstream_id": "u1"}]
    }));
    let second = yaml(&json!({
        "upstreams": [{"id": "u1", "type": "roundrobin", "nodes": {"127.0.0.1:80": 1}}],
        "routes": [{"id": 1, "uri": "/a", "upstream_id": "u1"}, {"id": 2, "uri": "/changed", "upstream_id": "u1"}]
    }));
    let one = build_yaml(&first, &Keyring::default(), None).expect("valid");
    let two = build_yaml(&second, &Keyring::default(), Some(&one)).expect("valid");
    assert_eq!(two.revision, 2);
    assert!(Arc::ptr_eq(&one.routes["1"].value, &two.routes["1"].value));
    assert_eq!(one.routes["1"], two.routes["1"], "same version: no diff");
    assert!(Arc::ptr_eq(
        &one.upstreams["u1"].value,
        &two.upstreams["u1"].value
    ));
    assert_ne!(one.routes["2"], two.routes["2"]);
    assert_eq!(two.routes["2"].mod_revision, 2);
    let diff: Vec<_> = one.routes.diff(&two.routes).collect();
    assert_eq!(diff.len(), 1, "only the changed route differs");
}

#[test]
fn sealed_and_plain_keys_load_and_a_wrong_keyring_is_named() {
    let (cert, key) = site();
    let mut ssl = json!({"id": "s", "sni": "a.test", "cert": cert, "key": key});
    let plain = yaml(&json!({ "ssls": [ssl.clone()] }));
    build_yaml(&plain, &keyring(1), None).expect("a plain key loads");
    keyring(1)
        .seal_object(Kind::Ssls, &mut ssl)
        .expect("sealed");
    let sealed = yaml(&json!({ "ssls": [ssl] }));
    assert!(!sealed.contains("PRIVATE KEY"));
    build_yaml(&sealed, &keyring(1), None).expect("a sealed key loads");
    let problems = build_yaml(&sealed, &keyring(2), None).expect_err("wrong keyring");
    assert_eq!(problems[0].path, "ssls[0]");
    assert!(
        problems[0].reason.contains("cannot decrypt private key"),
        "{problems:?}"
    );
    assert!(!problems[0].reason.contains("PRIVATE KEY"));
}

#[test]
fn load_reads_a_file_with_its_environment() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("apisix.yaml");
    std::env::set_var("PORTCULLIS_TEST_UPSTREAM_PORT", "8123");
    std::fs::write(
        &path,
        "routes:\n  - id: 1\n    uri: /${{PORTCULLIS_TEST_PREFIX:=api}}\n    upstream: {type: roundrobin, nodes: {'127.0.0.1:${{PORTCULLIS_TEST_UPSTREAM_PORT}}': 1}}\n#END\n",
    )
    .expect("write");
    let state = load(&path, &Keyring::default(), None, 1).expect("valid");
    let route = &state.routes["1"];
    let raw = String::from_utf8(route.raw.to_vec()).expect("utf-8");
    assert!(
        raw.contains("\"/api\"") && raw.contains("127.0.0.1:8123"),
        "{raw}"
    );

    std::fs::write(&path, "routes: []\n").expect("write");
    let err = load(&path, &Keyring::default(), None, 2).expect_err("no end flag");
    assert!(err.to_string().contains("missing valid end flag"), "{err}");

    let json = dir.path().join("apisix.json");
    std::fs::write(
        &json,
        r#"{"upstreams": [{"id": 1, "nodes": {"127.0.0.1:80": 1}, "type": "roundrobin"}]}"#,
    )
    .expect("write");
    let state = load(&json, &Keyring::default(), None, 1).expect("json");
    assert!(state.contains(Kind::Upstreams, "1"));
}
