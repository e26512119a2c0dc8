//! Gateway ↔ upstream TLS: the upstream's certificate verified by default,
//! the gateway's client certificate (inline or an SSL object of `type:
//! client`), one connection pool per TLS profile, h2 by ALPN.

use harness::fixtures::{curl_http, eventually_status, plain_route, PROPAGATION_TIMEOUT};
use harness::pki::{Ca, Leaf};
use harness::{wait_until, Etcd, Gateway, GatewayOptions, TlsEchoOptions, TlsEchoServer};
use serde_json::{json, Value};

/// The upstream's CA, and the CA the upstream trusts for client certificates.
struct Pki {
    upstream_ca: Ca,
    client_ca: Ca,
}

impl Pki {
    fn new() -> Pki {
        Pki {
            upstream_ca: Ca::new("Upstream CA"),
            client_ca: Ca::new("Gateway client CA"),
        }
    }

    /// An HTTPS upstream requiring a client certificate from `client_ca`.
    async fn upstream(&self, h2: bool) -> harness::Result<TlsEchoServer> {
        TlsEchoServer::start(TlsEchoOptions {
            server: self
                .upstream_ca
                .server("upstream", &["127.0.0.1", "upstream.internal"]),
            client_ca: Some(self.client_ca.cert_pem.clone()),
            h2,
        })
        .await
    }
}

fn inline_identity(leaf: &Leaf) -> Value {
    json!({"client_cert": leaf.cert_pem, "client_key": leaf.key_pem})
}

fn https_route(uri: &str, node: &str, tls: Value) -> Value {
    json!({
        "uri": uri,
        "upstream": {"nodes": {node: 1}, "type": "roundrobin", "scheme": "https", "tls": tls}
    })
}

fn merged(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    base
}

fn echoed(out: &harness::CurlOutput) -> Value {
    serde_json::from_str(&out.body).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"))
}

#[tokio::test]
async fn upstream_certificates_are_verified_and_client_certificates_presented(
) -> harness::Result<()> {
    let pki = Pki::new();
    let etcd = Etcd::start().await?;
    let gw = Gateway::start(&etcd).await?;
    let upstream = pki.upstream(false).await?;
    let node = upstream.node();
    let identity = inline_identity(&pki.client_ca.client("gateway-a"));
    let trusted = json!({"ca": pki.upstream_ca.cert_pem});
    let admin = gw.admin();
    for (id, route) in [
        (
            "mtls",
            https_route("/mtls", &node, merged(identity.clone(), trusted.clone())),
        ),
        ("no-cert", https_route("/no-cert", &node, trusted.clone())),
        // Default trust: the public webpki roots, which do not know our CA.
        (
            "untrusted",
            https_route("/untrusted", &node, identity.clone()),
        ),
        (
            "unverified",
            https_route(
                "/unverified",
                &node,
                merged(identity.clone(), json!({"verify": false})),
            ),
        ),
        (
            "wrong-sni",
            https_route(
                "/wrong-sni",
                &node,
                merged(
                    identity.clone(),
                    json!({"ca": pki.upstream_ca.cert_pem, "sni": "other.internal"}),
                ),
            ),
        ),
        (
            "sni",
            https_route(
                "/sni",
                &node,
                merged(
                    identity.clone(),
                    json!({"ca": pki.upstream_ca.cert_pem, "sni": "upstream.internal"}),
                ),
            ),
        ),
    ] {
        let put = admin
            .put(&format!("/apisix/admin/routes/{id}"), route)
            .await?;
        assert_eq!(put.status, 201, "{id}: {}", put.text);
        assert!(
            !put.text.contains("PRIVATE KEY"),
            "PUT echoes no private key: {}",
            put.text
        );
    }

    let out = eventually_status("the mTLS upstream", 200, || curl_http(&gw, "/mtls", &[])).await?;
    assert_eq!(echoed(&out)["client_subject"], "CN=gateway-a", "{out:?}");
    for path in ["/no-cert", "/untrusted", "/wrong-sni"] {
        let out = curl_http(&gw, path, &[])?;
        assert_eq!(out.status, 502, "{path}: {out:?}");
    }
    let out = curl_http(&gw, "/unverified", &[])?;
    assert_eq!(
        out.status, 200,
        "verify: false accepts the unknown CA: {out:?}"
    );
    assert_eq!(echoed(&out)["client_subject"], "CN=gateway-a");
    let out = curl_http(&gw, "/sni", &[])?;
    assert_eq!(out.status, 200, "tls.sni is the name verified: {out:?}");

    let got = admin.get("/apisix/admin/routes/mtls").await?;
    assert_eq!(got.status, 200);
    assert!(!got.text.contains("PRIVATE KEY"), "{}", got.text);
    assert!(got.body["value"]["upstream"]["tls"]["client_cert"].is_string());
    assert!(gw.log().contains("no deployment.data_encryption.keyring"));
    Ok(())
}

#[tokio::test]
async fn each_client_identity_has_its_own_pool_and_changes_apply_without_restart(
) -> harness::Result<()> {
    let pki = Pki::new();
    let etcd = Etcd::start().await?;
    // Pools are per worker thread: with one worker, per gateway.
    let one_worker = GatewayOptions {
        worker_threads: 1,
        ..GatewayOptions::default()
    };
    let gw = Gateway::start_with(&etcd, one_worker).await?;
    let upstream = pki.upstream(true).await?;
    let node = upstream.node();
    let admin = gw.admin();
    let alice = pki.client_ca.client("alice");
    let alice_ssl = json!({
        "type": "client",
        "cert": alice.cert_pem,
        "key": alice.key_pem,
        // `tls.ca_id` trusts this object's `client.ca`.
        "client": {"ca": pki.upstream_ca.cert_pem},
    });
    assert_eq!(
        admin
            .put("/apisix/admin/ssls/alice", alice_ssl)
            .await?
            .status,
        201
    );
    let by_ref = json!({"client_cert_id": "alice", "ca_id": "alice"});
    let bob = merged(
        inline_identity(&pki.client_ca.client("bob")),
        json!({"ca": pki.upstream_ca.cert_pem}),
    );
    admin
        .create_all([
            ("routes/alice", https_route("/alice", &node, by_ref)),
            ("routes/bob", https_route("/bob", &node, bob)),
        ])
        .await?;
    eventually_status("/alice", 200, || curl_http(&gw, "/alice", &[])).await?;
    eventually_status("/bob", 200, || curl_http(&gw, "/bob", &[])).await?;
    for _ in 0..3 {
        for (path, subject) in [("/alice", "CN=alice"), ("/bob", "CN=bob")] {
            let out = curl_http(&gw, path, &[])?;
            assert_eq!(out.status, 200, "{path}: {out:?}");
            let body = echoed(&out);
            assert_eq!(body["client_subject"], subject, "{path} arrives as itself");
            assert_eq!(body["version"], "HTTP/2.0", "h2 by ALPN: {body}");
            let client_host = gw.http_addr().to_string();
            assert_eq!(
                body["host"],
                client_host.as_str(),
                "pass_host over h2: {body}"
            );
        }
    }
    assert_eq!(
        upstream.handshakes(),
        2,
        "one pooled h2 connection per identity"
    );

    // An unrelated change: the warm pools stay.
    admin
        .create("routes/other", plain_route("/other", "127.0.0.1:1"))
        .await?;
    eventually_status("the unrelated route", 502, || curl_http(&gw, "/other", &[])).await?;
    for path in ["/alice", "/bob"] {
        assert_eq!(curl_http(&gw, path, &[])?.status, 200);
    }
    assert_eq!(
        upstream.handshakes(),
        2,
        "config reloads keep unchanged profiles' connections"
    );

    // A renewed identity is used by new connections, without a restart.
    let renewed = pki.client_ca.client("alice-renewed");
    let patch = json!({"cert": renewed.cert_pem, "key": renewed.key_pem});
    let patched = admin.patch("/apisix/admin/ssls/alice", patch).await?;
    assert_eq!(patched.status, 200, "{}", patched.text);
    let mut last = None;
    wait_until("the renewed identity", PROPAGATION_TIMEOUT, || {
        let out = curl_http(&gw, "/alice", &[]);
        let done = matches!(&out, Ok(o) if o.status == 200 && echoed(o)["client_subject"] == "CN=alice-renewed");
        last = Some(out);
        async move { done }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}; last: {last:?}"))?;

    // The SSL object disappears: 502, with the reason in the log.
    assert_eq!(admin.delete("/apisix/admin/ssls/alice").await?.status, 200);
    eventually_status("/alice without its identity", 502, || {
        curl_http(&gw, "/alice", &[])
    })
    .await?;
    assert_eq!(
        curl_http(&gw, "/bob", &[])?.status,
        200,
        "others keep working"
    );
    let log = gw.log();
    assert!(
        log.contains("tls.client_cert_id names SSL object alice, which does not exist"),
        "{log}"
    );
    Ok(())
}

#[tokio::test]
async fn the_admin_api_refuses_unusable_tls_references() -> harness::Result<()> {
    let pki = Pki::new();
    let etcd = Etcd::start().await?;
    let gw = Gateway::start(&etcd).await?;
    let admin = gw.admin();
    let server = pki.upstream_ca.server("a.test", &["a.test"]);
    let server_ssl = json!({"sni": "a.test", "cert": server.cert_pem, "key": server.key_pem});
    assert_eq!(
        admin
            .put("/apisix/admin/ssls/server", server_ssl)
            .await?
            .status,
        201
    );
    let leaf = pki.client_ca.client("gw");
    let node = "127.0.0.1:9";
    for (tls, expected) in [
        (
            json!({"client_cert_id": "missing"}),
            "tls.client_cert_id: SSL object missing does not exist",
        ),
        (
            json!({"client_cert_id": "server"}),
            "is not of type \"client\"",
        ),
        (json!({"ca_id": "server"}), "has no client.ca"),
        (json!({"client_cert": leaf.cert_pem}), "tls.client_key"),
        (
            json!({"client_cert_id": "server", "client_cert": leaf.cert_pem, "client_key": leaf.key_pem}),
            "tls.client_cert_id",
        ),
        (
            json!({"verify": false, "ca": pki.upstream_ca.cert_pem}),
            "tls.verify",
        ),
    ] {
        for (path, body) in [
            (
                "/apisix/admin/upstreams/u",
                json!({"nodes": {node: 1}, "scheme": "https", "tls": tls}),
            ),
            (
                "/apisix/admin/routes/r",
                https_route("/r", node, tls.clone()),
            ),
        ] {
            let put = admin.put(path, body).await?;
            assert_eq!(put.status, 400, "{path} {tls}: {}", put.text);
            let message = put.body["error_msg"].as_str().unwrap_or_default();
            assert!(
                message.contains(expected),
                "{path}: {message:?} lacks {expected:?}"
            );
            assert!(!put.text.contains("PRIVATE KEY"), "{}", put.text);
        }
    }
    let stored = admin.get("/apisix/admin/upstreams/u").await?;
    assert_eq!(stored.status, 404, "nothing was written");
    Ok(())
}
