//! Private keys at rest: sealed in etcd under the keyring's first key,
//! opened by any key of a gateway's keyring, refused (object by object) by a
//! gateway whose keyring does not fit.

use std::time::Duration;

use harness::fixtures::{curl_http, curl_https, eventually_status, plain_route, plain_ssl};
use harness::pki::Ca;
use harness::{wait_until, Etcd, Gateway, GatewayOptions, TlsEchoOptions, TlsEchoServer};
use serde_json::{json, Value};

/// 32-byte keys in base64 (as `openssl rand -base64 32` prints them), fixed
/// so that failures reproduce.
const OLD_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const NEW_KEY: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
const WRONG_KEY: &str = "d3Jvbmcgd3Jvbmcgd3Jvbmcgd3Jvbmcgd3JvbmchISE=";

fn options(role: &'static str, prefix: &str, keyring: &[&str]) -> GatewayOptions {
    GatewayOptions {
        role,
        prefix: prefix.to_owned(),
        keyring: keyring.iter().map(|k| (*k).to_owned()).collect(),
        ..GatewayOptions::default()
    }
}

#[tokio::test]
async fn private_keys_are_sealed_in_etcd_and_rotated_keyrings_still_open_them(
) -> harness::Result<()> {
    let etcd = Etcd::start().await?;
    let prefix = GatewayOptions::default().prefix;
    let writer = Gateway::start_with(&etcd, options("traditional", &prefix, &[OLD_KEY])).await?;
    let admin = writer.admin();

    let server_ca = Ca::new("Server CA");
    let server = server_ca.server("a.test", &["a.test"]);
    let upstream_ca = Ca::new("Upstream CA");
    let client_ca = Ca::new("Client CA");
    let identity = client_ca.client("sealed-gateway");
    let upstream = TlsEchoServer::start(TlsEchoOptions {
        server: upstream_ca.server("upstream", &["127.0.0.1"]),
        client_ca: Some(client_ca.cert_pem.clone()),
        h2: false,
    })
    .await?;

    let tls_upstream = json!({
        "nodes": {upstream.node(): 1},
        "scheme": "https",
        "tls": {"client_cert": identity.cert_pem, "client_key": identity.key_pem, "ca": upstream_ca.cert_pem}
    });
    admin
        .create_all([
            ("ssls/1", plain_ssl("a.test", &server)),
            ("upstreams/tls", tls_upstream),
            (
                "routes/sealed",
                json!({"uri": "/sealed", "upstream_id": "tls"}),
            ),
            ("routes/plain", plain_route("/plain", "127.0.0.1:1")),
        ])
        .await?;

    for key in ["ssls/1", "upstreams/tls"] {
        let raw = etcd.etcdctl(&["get", "--print-value-only", &format!("{prefix}/{key}")])?;
        assert!(
            !raw.contains("PRIVATE KEY"),
            "{key} is stored in clear: {raw}"
        );
        assert!(raw.contains("$enc:v1:"), "{key}: {raw}");
        assert!(
            raw.contains("BEGIN CERTIFICATE"),
            "only keys are sealed: {key}"
        );
    }
    let got = admin.get("/apisix/admin/ssls/1").await?;
    assert_eq!(
        got.body["value"]["info"]["cert"]["subject"], "CN=a.test",
        "{}",
        got.text
    );
    assert!(
        !got.text.contains("PRIVATE KEY") && !got.text.contains("$enc:"),
        "{}",
        got.text
    );

    // PATCH opens, merges, validates and seals again.
    let patched = admin
        .patch("/apisix/admin/ssls/1", json!({"desc": "patched"}))
        .await?;
    assert_eq!(patched.status, 200, "{}", patched.text);
    let raw = etcd.etcdctl(&["get", "--print-value-only", &format!("{prefix}/ssls/1")])?;
    assert!(raw.contains("$enc:v1:") && raw.contains("patched"), "{raw}");

    eventually_status("the sealed SSL object", 404, || {
        curl_https(&writer, "a.test", "/nothing", &[])
    })
    .await?;
    let out = eventually_status("the sealed client key", 200, || {
        curl_http(&writer, "/sealed", &[])
    })
    .await?;
    assert!(out.body.contains("CN=sealed-gateway"), "{out:?}");

    // Rotated: a new key first, the old one still there to open old values.
    let rotated =
        Gateway::start_with(&etcd, options("data_plane", &prefix, &[NEW_KEY, OLD_KEY])).await?;
    eventually_status("TLS with the old key", 404, || {
        curl_https(&rotated, "a.test", "/nothing", &[])
    })
    .await?;
    eventually_status("upstream mTLS with the old key", 200, || {
        curl_http(&rotated, "/sealed", &[])
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_gateway_with_the_wrong_key_refuses_only_the_sealed_objects() -> harness::Result<()> {
    let etcd = Etcd::start().await?;
    let prefix = GatewayOptions::default().prefix;
    let writer = Gateway::start_with(&etcd, options("traditional", &prefix, &[OLD_KEY])).await?;
    let admin = writer.admin();
    let server = Ca::new("Server CA").server("a.test", &["a.test"]);
    admin
        .create_all([
            ("ssls/1", plain_ssl("a.test", &server)),
            ("routes/plain", plain_route("/plain", "127.0.0.1:1")),
        ])
        .await?;
    eventually_status("the writer", 404, || {
        curl_https(&writer, "a.test", "/nothing", &[])
    })
    .await?;

    let wrong = Gateway::start_with(&etcd, options("data_plane", &prefix, &[WRONG_KEY])).await?;
    eventually_status("the plain route", 502, || curl_http(&wrong, "/plain", &[])).await?;
    let refused = curl_https(&wrong, "a.test", "/nothing", &[])?;
    assert_eq!(
        refused.status, 0,
        "no certificate to serve a.test: {refused:?}"
    );
    wait_until("the logged reason", Duration::from_secs(10), || {
        let logged = wrong.log().contains("cannot decrypt private key `key`");
        async move { logged }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}; log:\n{}", wrong.log()))?;
    Ok(())
}

#[tokio::test]
async fn without_a_keyring_keys_are_stored_as_given_and_the_start_warns() -> harness::Result<()> {
    let etcd = Etcd::start().await?;
    let gw = Gateway::start(&etcd).await?;
    let server = Ca::new("Server CA").server("a.test", &["a.test"]);
    gw.admin()
        .create("ssls/1", plain_ssl("a.test", &server))
        .await?;
    let key = format!("{}/ssls/1", gw.prefix());
    let stored: Value =
        serde_json::from_str(&etcd.etcdctl(&["get", "--print-value-only", &key])?)?;
    assert_eq!(stored["key"], server.key_pem.as_str(), "stored as given");
    assert!(
        gw.log().contains(
            "no deployment.data_encryption.keyring: private keys are stored in etcd as given"
        ),
        "the start warns about keys in clear:\n{}",
        gw.log()
    );
    Ok(())
}
