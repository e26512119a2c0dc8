//! TLS profiles and their pools, from validated objects with real
//! certificates.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::{json, Value};
use shared::validate::{validate, Valid, ValidSsl, ValidUpstream};
use shared::Kind;

use super::profile::{ProfileKey, TlsProfile};
use super::*;
use crate::tls::provider;

struct Pem {
    cert: String,
    key: String,
}

/// A CA and a client certificate it issued for `cn`.
fn issue(cn: &str) -> (Pem, Pem) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.distinguished_name
        .push(DnType::CommonName, format!("{cn} CA"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = Pem {
        cert: ca.self_signed(&ca_key).expect("CA").pem(),
        key: ca_key.serialize_pem(),
    };
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("leaf key");
    let mut leaf = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
    leaf.distinguished_name.push(DnType::CommonName, cn);
    let leaf = Pem {
        cert: leaf.signed_by(&key, &issuer).expect("leaf").pem(),
        key: key.serialize_pem(),
    };
    (ca_pem, leaf)
}

fn upstream(tls: Value) -> Arc<ValidUpstream> {
    let value = json!({"nodes": {"backend.internal:8443": 1}, "scheme": "https", "tls": tls});
    match validate(Kind::Upstreams, "u", &value) {
        Ok(Valid::Upstream(upstream)) => upstream,
        other => panic!("not a valid upstream: {other:?}"),
    }
}

fn ssl(id: &str, value: Value) -> Arc<ValidSsl> {
    match validate(Kind::Ssls, id, &value) {
        Ok(Valid::Ssl(ssl)) => ssl,
        other => panic!("not a valid SSL object: {other:?}"),
    }
}

fn client_ssl(id: &str, pair: &Pem, ca: Option<&Pem>) -> (String, Arc<ValidSsl>) {
    let mut value = json!({"type": "client", "cert": pair.cert, "key": pair.key});
    if let Some(ca) = ca {
        value["client"] = json!({"ca": ca.cert});
    }
    (id.to_owned(), ssl(id, value))
}

fn profile(upstream: &ValidUpstream, ssls: &SslObjects) -> Result<TlsProfile, String> {
    TlsProfile::resolve(upstream.tls.as_ref().expect("https"), ssls).map_err(|e| e.to_string())
}

#[test]
fn keys_differ_by_identity_trust_and_server_name() {
    let (ca, alice) = issue("alice");
    let (_, bob) = issue("bob");
    let ssls = SslObjects::new();
    let key = |tls: Value| profile(&upstream(tls), &ssls).expect("resolves").key();
    let as_alice = key(json!({"client_cert": alice.cert, "client_key": alice.key}));
    let as_bob = key(json!({"client_cert": bob.cert, "client_key": bob.key}));
    assert_ne!(
        as_alice, as_bob,
        "different client identities never share a pool"
    );
    assert_eq!(
        as_alice,
        key(json!({"client_cert": alice.cert, "client_key": alice.key})),
        "equal profiles share"
    );
    let anonymous = key(json!({}));
    for other in [
        key(json!({"verify": false})),
        key(json!({"ca": ca.cert})),
        key(json!({"sni": "other.internal"})),
    ] {
        assert_ne!(anonymous, other);
    }
    assert_ne!(anonymous, ProfileKey::Plain);
}

#[test]
fn an_identity_by_reference_is_the_ssl_objects_and_follows_its_changes() {
    let (_, alice) = issue("alice");
    let (_, bob) = issue("bob");
    let by_ref = upstream(json!({"client_cert_id": "id"}));
    let inline = upstream(json!({"client_cert": alice.cert, "client_key": alice.key}));
    let ssls = SslObjects::from([client_ssl("id", &alice, None)]);
    let alice_key = profile(&by_ref, &ssls).expect("resolves").key();
    assert_eq!(alice_key, profile(&inline, &ssls).expect("resolves").key());
    let renewed = SslObjects::from([client_ssl("id", &bob, None)]);
    assert_ne!(
        alice_key,
        profile(&by_ref, &renewed).expect("resolves").key()
    );
}

#[test]
fn broken_references_say_what_is_wrong() {
    let (ca, alice) = issue("alice");
    let by_ref = upstream(json!({"client_cert_id": "id", "ca_id": "ca"}));
    let missing = profile(&by_ref, &SslObjects::new()).err().expect("missing");
    assert!(
        missing.contains("SSL object id, which does not exist"),
        "{missing}"
    );

    let server = ssl(
        "id",
        json!({"sni": "a.test", "cert": alice.cert, "key": alice.key}),
    );
    let ssls = SslObjects::from([("id".to_owned(), server)]);
    let wrong_type = profile(&by_ref, &ssls).err().expect("server type");
    assert!(
        wrong_type.contains("not of type \"client\""),
        "{wrong_type}"
    );

    let ssls = SslObjects::from([
        client_ssl("id", &alice, None),
        client_ssl("ca", &alice, None),
    ]);
    let no_ca = profile(&by_ref, &ssls).err().expect("no client.ca");
    assert!(
        no_ca.contains("tls.ca_id") && no_ca.contains("client.ca"),
        "{no_ca}"
    );

    let ssls = SslObjects::from([
        client_ssl("id", &alice, None),
        client_ssl("ca", &alice, Some(&ca)),
    ]);
    let resolved = profile(&by_ref, &ssls).expect("resolves");
    resolved.client_config(&provider()).expect("builds");
}

#[test]
fn pools_are_shared_per_profile_and_dropped_when_unused() {
    let (_, alice) = issue("alice");
    let (_, bob) = issue("bob");
    let ssls = SslObjects::new();
    let pools = UpstreamPools::default();
    let provider = provider();
    let client = |tls: Value| {
        let profile = profile(&upstream(tls), &ssls).expect("resolves");
        pools.tls(&profile, &provider).expect("client")
    };
    let alice_tls = json!({"client_cert": alice.cert, "client_key": alice.key});
    let first = client(alice_tls.clone());
    let again = client(alice_tls.clone());
    let other = client(json!({"client_cert": bob.cert, "client_key": bob.key}));
    assert!(Arc::ptr_eq(&first, &again), "one pool per profile");
    assert!(
        !Arc::ptr_eq(&first, &other),
        "never shared across identities"
    );
    assert_eq!(pools.len(), 2);
    drop((first, again, other));
    assert_eq!(
        pools.len(),
        0,
        "unused profiles are dropped with their connections"
    );
    let _fresh = client(alice_tls);
    assert_eq!(pools.len(), 1);
}

#[test]
fn a_target_with_a_broken_profile_still_builds_and_answers_502() {
    let by_ref = upstream(json!({"client_cert_id": "gone"}));
    let ssls = SslObjects::new();
    let pools = UpstreamPools::default();
    let ctx = BuildContext {
        ssls: &ssls,
        pools: &pools,
        provider: provider(),
    };
    let target = UpstreamTarget::build("upstream u".into(), &by_ref, &ctx).expect("builds");
    let reason = target.client.as_ref().err().expect("no client");
    assert!(reason.to_string().contains("gone"), "{reason}");
    assert_eq!(reason.kind(), "upstream_tls");
    let error = SendError::TlsUnavailable(Arc::clone(reason));
    assert!(
        !error.is_connect() && !error.is_timeout(),
        "502, not retried"
    );
}
