//! Property tests for the parsers of untrusted input in `shared`: the admin
//! JSON validators (bodies from the admin API, values hand-written into
//! etcd) and the PEM / X.509 parsing behind them. Whatever the bytes, they
//! answer `Ok` or `Err` and never panic.
//!
//! Case counts are bounded so the suite stays fast; raise them for a longer
//! run with `PROPTEST_CASES=100000 cargo test -p portcullis-shared --test fuzz`.

use std::sync::OnceLock;

use proptest::prelude::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use serde_json::{json, Map, Value};
use shared::validate::validate;
use shared::x509::{
    describe_certs, key_matches_cert, parse_certs, parse_crls, parse_key, CertSummary, CrlSummary,
};
use shared::Kind;

/// Field names the validators look at, so that generated objects reach the
/// semantic checks instead of stopping at the schema's first unknown key.
const FIELDS: &[&str] = &[
    "id",
    "uri",
    "uris",
    "host",
    "hosts",
    "methods",
    "priority",
    "status",
    "name",
    "desc",
    "labels",
    "plugins",
    "upstream",
    "upstream_id",
    "nodes",
    "type",
    "scheme",
    "pass_host",
    "upstream_host",
    "timeout",
    "connect",
    "send",
    "read",
    "retries",
    "tls",
    "client_cert",
    "client_key",
    "ca",
    "ca_id",
    "client_cert_id",
    "verify",
    "sni",
    "snis",
    "cert",
    "key",
    "certs",
    "keys",
    "client",
    "depth",
    "skip_mtls_uri_regex",
    "ssl_protocols",
    "proxy-rewrite",
    "headers",
    "set",
    "add",
    "remove",
    "regex_uri",
    "mtls-auth",
    "mtls-acl",
    "client-cert-auth",
    "forward-client-cert",
    "crl",
    "allow",
    "deny",
    "create_time",
    "update_time",
];

/// Strings that mean something to one validator or another.
const WORDS: &[&str] = &[
    "",
    "*",
    "*.example.com",
    "example.com",
    "EXAMPLE.com.",
    "/",
    "/a/*",
    "/anything",
    "(",
    "^/api/(.*)",
    "$ssl_client_s_dn",
    "${host ?? none}",
    "127.0.0.1:8080",
    "[::1]:80",
    "roundrobin",
    "chash",
    "https",
    "http",
    "grpc",
    "node",
    "pass",
    "rewrite",
    "GET",
    "PURGE",
    "TLSv1.2",
    "TLSv1.3",
    "server",
    "client",
    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
    "é\u{0}\u{7f}",
    "9999999999999999999",
];

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Ssls), Just(Kind::Routes), Just(Kind::Upstreams)]
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(WORDS).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(FIELDS).prop_map(str::to_owned),
        1 => "[a-z_-]{0,12}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-3i64..70_000).prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        word().prop_map(Value::from),
    ]
}

/// Any JSON, nested a few levels, with keys the validators know.
fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec((field(), inner), 0..7)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// One real PKI, made once: a CA, and a server certificate with its key.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    cert_der: Vec<u8>,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let mut ca = CertificateParams::new(Vec::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key"))
            .expect("self-signed CA");
        let key = KeyPair::generate().expect("server key");
        let cert = CertificateParams::new(vec!["fuzz.test".to_owned()])
            .expect("server params")
            .signed_by(&key, &ca)
            .expect("server certificate");
        Pki {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        }
    })
}

/// Valid objects of each kind, exercising most fields: mutations of these
/// reach deep into the semantic checks.
fn valid_objects() -> Vec<(Kind, Value)> {
    let pki = pki();
    vec![
        (
            Kind::Ssls,
            json!({
                "sni": "fuzz.test", "cert": pki.cert_pem, "key": pki.key_pem,
                "client": { "ca": pki.ca_pem, "depth": 2, "skip_mtls_uri_regex": ["^/public/.*"] },
                "ssl_protocols": ["TLSv1.2", "TLSv1.3"], "labels": { "env": "fuzz" }
            }),
        ),
        (
            Kind::Routes,
            json!({
                "uris": ["/a/*", "/b"], "hosts": ["*.fuzz.test", "fuzz.test"], "methods": ["GET", "POST"],
                "priority": 3,
                "plugins": { "proxy-rewrite": {
                    "uri": "/rewritten", "host": "upstream.fuzz.test",
                    "headers": { "set": { "X-Dn": "$ssl_client_s_dn", "X-Host": "${host ?? none}" }, "remove": ["X-Drop"] }
                } },
                "upstream": {
                    "type": "roundrobin", "nodes": { "127.0.0.1:8080": 1, "[::1]:8081": 2 },
                    "pass_host": "rewrite", "upstream_host": "fuzz.test",
                    "timeout": { "connect": 1, "send": 2, "read": 3 }, "retries": 1
                }
            }),
        ),
        (
            Kind::Upstreams,
            json!({
                "type": "roundrobin", "scheme": "https",
                "nodes": [{ "host": "127.0.0.1", "port": 8443, "weight": 1 }],
                "tls": { "client_cert": pki.cert_pem, "client_key": pki.key_pem, "ca": pki.ca_pem }
            }),
        ),
    ]
}

/// A real PEM of the test PKI with a few characters changed or cut short:
/// still PEM-shaped, so it reaches the DER parsers and the key checks.
fn damaged_pem() -> impl Strategy<Value = String> {
    (
        0usize..3,
        proptest::collection::vec((any::<usize>(), proptest::char::range('+', 'z')), 0..4),
        any::<usize>(),
    )
        .prop_map(|(which, edits, cut)| {
            let pki = pki();
            let pem = [&pki.cert_pem, &pki.key_pem, &pki.ca_pem][which];
            let mut chars: Vec<char> = pem.chars().collect();
            // Past the BEGIN line, before the END line: the base64 body.
            let body = 30..chars.len().saturating_sub(30).max(31);
            for (at, c) in edits {
                let i = body.start + at % (body.end - body.start);
                chars[i] = c;
            }
            if cut % 4 == 0 {
                chars.truncate(body.start + cut % (body.end - body.start));
            }
            chars.into_iter().collect()
        })
}

/// What a mutation puts in place: mostly values of the right shape (strings
/// that mean something, damaged PEMs, small numbers), so that objects get
/// past the schema into the semantic checks; sometimes any JSON.
fn replacement() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => word().prop_map(Value::from),
        2 => damaged_pem().prop_map(Value::from),
        1 => (-3i64..70_000).prop_map(Value::from),
        2 => json_value(),
    ]
}

/// Walks `value` following `steps` (each picks a key or an element by
/// index, modulo the length) and replaces what it reaches with `with`, or
/// removes it when `with` is `None`.
fn mutate(value: &mut Value, steps: &[usize], with: Option<Value>) {
    let Some((&step, rest)) = steps.split_first() else {
        *value = with.unwrap_or(Value::Null);
        return;
    };
    match value {
        Value::Object(map) if !map.is_empty() => {
            let key = map
                .keys()
                .nth(step % map.len())
                .cloned()
                .unwrap_or_default();
            if rest.is_empty() && with.is_none() {
                map.remove(&key);
            } else if let Some(child) = map.get_mut(&key) {
                mutate(child, rest, with);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let len = items.len();
            mutate(&mut items[step % len], rest, with);
        }
        _ => *value = with.unwrap_or(Value::Null),
    }
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
    fn validate_never_panics_on_arbitrary_json(kind in kind(), id in word(), value in json_value()) {
        let _ = validate(kind, &id, &value);
    }

    #[test]
    fn validate_never_panics_on_mutated_valid_objects(
        which in 0..valid_objects().len(),
        mutations in proptest::collection::vec(
            (proptest::collection::vec(any::<usize>(), 1..5), proptest::option::weighted(0.9, replacement())),
            1..4,
        ),
    ) {
        let (kind, mut value) = valid_objects().swap_remove(which);
        for (steps, with) in mutations {
            mutate(&mut value, &steps, with);
        }
        if let Err(err) = validate(kind, "1", &value) {
            prop_assert!(!err.to_string().is_empty(), "a refusal says why");
        }
    }

    #[test]
    fn pem_parsers_never_panic_on_arbitrary_text(text in any::<String>()) {
        let _ = parse_certs(&text);
        let _ = parse_key(&text);
        let _ = parse_crls(&text);
        let _ = describe_certs(&text);
    }

    #[test]
    fn pem_parsers_never_panic_on_armored_garbage(
        label in proptest::sample::select(&["CERTIFICATE", "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY", "X509 CRL"][..]),
        body in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&body);
        let pem = format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n");
        prop_assert!(parse_certs(&pem).is_err() || label == "CERTIFICATE");
        let _ = parse_key(&pem);
        let _ = parse_crls(&pem);
        if let Ok(key) = parse_key(&pem) {
            let cert = CertificateDer::from(pki().cert_der.clone());
            let _ = key_matches_cert(&key, &cert);
        }
    }

    #[test]
    fn der_parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = CertSummary::from_der(&CertificateDer::from(bytes.clone()));
        let _ = CrlSummary::from_der(&CertificateRevocationListDer::from(bytes));
    }

    #[test]
    fn certificate_parsing_never_panics_on_a_damaged_certificate(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut der = pki().cert_der.clone();
        for (at, xor) in flips {
            let len = der.len();
            der[at % len] ^= xor;
        }
        let keep = cut % (der.len() + 1);
        for candidate in [der.clone(), der[..keep].to_vec()] {
            let cert = CertificateDer::from(candidate);
            let _ = CertSummary::from_der(&cert);
            if let Ok(key) = parse_key(&pki().key_pem) {
                let _ = key_matches_cert(&key, &cert);
            }
        }
    }
}

#[test]
fn the_valid_objects_the_mutations_start_from_are_valid() {
    for (kind, value) in valid_objects() {
        if let Err(err) = validate(kind, "1", &value) {
            panic!("{kind:?} {value:#}: {err}");
        }
    }
}
