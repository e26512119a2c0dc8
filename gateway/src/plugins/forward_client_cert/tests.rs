use rcgen::SanType;
use serde_json::{json, Value};

use super::*;

fn build(config: &serde_json::Value) -> Result<Box<dyn Plugin>, String> {
    crate::plugins::testing::build(NAME, config)
}
use crate::plugins::testing::{ctx_with, peer, request, route_verified, values, Pki, TestCert};

const SPOOFED: &str = "By=spiffe://evil;Hash=00;Subject=\"CN=admin\"";

fn workload(pki: &Pki) -> TestCert {
    pki.client_with(|p| {
        p.subject_alt_names = vec![
            SanType::URI("spiffe://example.org/ns/prod/sa/pay".try_into().unwrap()),
            SanType::DnsName("pay.example.org".try_into().unwrap()),
        ];
    })
}

/// The request headers the upstream gets with `config`, for a client
/// presenting `cert` (verified) and sending `headers`.
fn forwarded(config: Value, cert: Option<&TestCert>, headers: &[(&str, &str)]) -> Parts {
    let plugin = build(&config).unwrap();
    let conn = ctx_with(cert);
    let mut ctx = conn.ctx();
    let mut req = request(headers);
    assert!(plugin.request_filter(&mut ctx, &mut req).is_continue());
    req
}

fn hash(cert: &TestCert) -> String {
    peer(cert).summary.fingerprint_sha256
}

#[test]
fn sanitize_drops_whatever_the_client_sent() {
    let pki = Pki::new();
    let cert = workload(&pki);
    let spoofed = [
        ("X-Forwarded-Client-Cert", SPOOFED),
        ("Client-Cert", ":AAAA:"),
        ("Client-Cert-Chain", ":AAAA:"),
    ];
    for client in [None, Some(&cert)] {
        let req = forwarded(json!({}), client, &spoofed);
        for name in [
            "x-forwarded-client-cert",
            "client-cert",
            "client-cert-chain",
        ] {
            assert!(values(&req, name).is_empty(), "{name} reached the upstream");
        }
    }
}

#[test]
fn sanitize_set_replaces_with_the_verified_identity() {
    let pki = Pki::new();
    let cert = workload(&pki);
    let config = json!({
        "mode": "sanitize_set",
        "details": ["dns", "uri", "subject"],
        "by": "spiffe://example.org/gateway"
    });
    let req = forwarded(
        config.clone(),
        Some(&cert),
        &[("X-Forwarded-Client-Cert", SPOOFED)],
    );
    assert_eq!(
        values(&req, "x-forwarded-client-cert"),
        [format!(
            "By=spiffe://example.org/gateway;Hash={};Subject=\"CN=client1,O=Callista Enterprise AB,ST=Sweden,C=SE\";\
             URI=spiffe://example.org/ns/prod/sa/pay;DNS=pay.example.org",
            hash(&cert)
        )]
    );
    // Without a verified certificate: nothing, not even the client's.
    let req = forwarded(config, None, &[("X-Forwarded-Client-Cert", SPOOFED)]);
    assert!(values(&req, "x-forwarded-client-cert").is_empty());
}

#[test]
fn append_forward_keeps_the_chain_of_proxies() {
    let pki = Pki::new();
    let cert = pki.client("edge-proxy");
    let config = json!({"mode": "append_forward"});
    let earlier = "Hash=abc;URI=spiffe://example.org/client";
    let req = forwarded(
        config.clone(),
        Some(&cert),
        &[("X-Forwarded-Client-Cert", earlier)],
    );
    assert_eq!(
        values(&req, "x-forwarded-client-cert"),
        [format!("{earlier},Hash={}", hash(&cert))]
    );
    let req = forwarded(config.clone(), Some(&cert), &[]);
    assert_eq!(
        values(&req, "x-forwarded-client-cert"),
        [format!("Hash={}", hash(&cert))]
    );
    let req = forwarded(config, None, &[("X-Forwarded-Client-Cert", earlier)]);
    assert!(values(&req, "x-forwarded-client-cert").is_empty());
}

#[test]
fn forward_only_trusts_only_verified_clients() {
    let pki = Pki::new();
    let cert = pki.client("edge-proxy");
    let sent = [("X-Forwarded-Client-Cert", SPOOFED)];
    let req = forwarded(json!({"mode": "forward_only"}), Some(&cert), &sent);
    assert_eq!(values(&req, "x-forwarded-client-cert"), [SPOOFED]);
    let req = forwarded(json!({"mode": "forward_only"}), None, &sent);
    assert!(values(&req, "x-forwarded-client-cert").is_empty());
    let req = forwarded(json!({"mode": "always_forward_only"}), None, &sent);
    assert_eq!(values(&req, "x-forwarded-client-cert"), [SPOOFED]);
}

#[test]
fn rfc9440_headers_are_structured_field_byte_sequences() {
    let root = Pki::named("Root");
    let issuing = root.intermediate("Issuing");
    let cert = issuing.client("chained");
    let plugin = build(&json!({"mode": "sanitize_set", "format": "rfc9440"})).unwrap();
    let conn = ctx_with(None);
    let mut ctx = conn.ctx();
    let mut leaf = peer(&cert);
    leaf.intermediates = vec![issuing.ca.der.clone()];
    ctx.extensions
        .insert(crate::plugins::identity::RouteIdentity(
            std::sync::Arc::new(leaf),
        ));
    let mut req = request(&[
        ("X-Forwarded-Client-Cert", SPOOFED),
        ("Client-Cert", ":AAAA:"),
    ]);
    assert!(plugin.request_filter(&mut ctx, &mut req).is_continue());
    let b64 = |der: &[u8]| STANDARD.encode(der);
    assert_eq!(
        values(&req, "client-cert"),
        [format!(":{}:", b64(cert.der.as_ref()))]
    );
    assert_eq!(
        values(&req, "client-cert-chain"),
        [format!(":{}:", b64(issuing.ca.der.as_ref()))]
    );
    // XFCC is not this route's format: the client's is dropped.
    assert!(values(&req, "x-forwarded-client-cert").is_empty());
}

#[test]
fn cert_and_chain_are_url_encoded_pem() {
    let pki = Pki::new();
    let cert = pki.client("client1");
    let plugin = build(&json!({"mode": "sanitize_set", "details": ["chain", "cert"]})).unwrap();
    let conn = ctx_with(None);
    let mut ctx = conn.ctx();
    route_verified(&mut ctx, &cert);
    let mut req = request(&[]);
    assert!(plugin.request_filter(&mut ctx, &mut req).is_continue());
    let escaped = identity::escaped_pem(cert.der.as_ref());
    assert_eq!(
        values(&req, "x-forwarded-client-cert"),
        [format!(
            "Hash={};Cert=\"{escaped}\";Chain=\"{escaped}\"",
            hash(&cert)
        )]
    );
}

#[test]
fn values_with_separators_are_quoted() {
    assert_eq!(xfcc_value("spiffe://a/b"), "spiffe://a/b");
    assert_eq!(xfcc_value("a;b"), "\"a;b\"");
    assert_eq!(xfcc_value("say \"hi\""), "\"say \\\"hi\\\"\"");
}

#[test]
fn client_rfc9440_headers_are_never_forwarded() {
    let pki = Pki::new();
    let cert = workload(&pki);
    let sent = [
        ("X-Forwarded-Client-Cert", SPOOFED),
        ("Client-Cert", ":AAAA:"),
        ("Client-Cert-Chain", ":AAAA:"),
    ];
    for mode in [
        "sanitize",
        "forward_only",
        "append_forward",
        "sanitize_set",
        "always_forward_only",
    ] {
        for client in [None, Some(&cert)] {
            let config = json!({"mode": mode, "format": "both"});
            let req = forwarded(config, client, &sent);
            for name in ["client-cert", "client-cert-chain"] {
                let values = values(&req, name);
                assert!(
                    !values.iter().any(|value| value == ":AAAA:"),
                    "{mode}, certificate: {}: the client's {name} was forwarded",
                    client.is_some()
                );
            }
        }
    }
    // XFCC keeps Envoy's semantics meanwhile.
    let req = forwarded(
        json!({"mode": "forward_only", "format": "both"}),
        Some(&cert),
        &sent,
    );
    assert_eq!(values(&req, "x-forwarded-client-cert"), [SPOOFED]);
    assert!(values(&req, "client-cert").is_empty());
}
