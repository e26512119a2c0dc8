//! The status endpoints (`deployment.status.listen`): liveness, readiness
//! that waits for a configuration, and the `/status` document an operator
//! reads — counts, revision, etcd connection, objects refused with why,
//! objects that cannot serve with the kind of error.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use harness::fixtures::{
    curl_http, eventually_status, plain_route, plain_ssl, PROPAGATION_TIMEOUT,
};
use harness::pki::Ca;
use harness::{wait_until, EchoServer, Etcd, Gateway, GatewayOptions};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::{json, Value};

fn with_status() -> GatewayOptions {
    GatewayOptions {
        status: true,
        ..GatewayOptions::default()
    }
}

/// Waits until `/status` satisfies `cond`; returns that document.
async fn status_until(
    gw: &Gateway,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) -> harness::Result<Value> {
    let deadline = Instant::now() + PROPAGATION_TIMEOUT;
    loop {
        let status = gw.status().await.unwrap_or(Value::Null);
        if cond(&status) {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out waiting for {what}; last /status: {status:#}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn readyz_waits_for_a_configuration() -> harness::Result<()> {
    let mut etcd = Etcd::start().await?;
    etcd.stop().await;
    let gw = Gateway::start_with(&etcd, with_status()).await?;

    assert_eq!(gw.status_code("/healthz").await?, 200, "the process is up");
    assert_eq!(
        gw.status_code("/readyz").await?,
        503,
        "nothing loaded: not ready"
    );
    let status = status_until(&gw, "etcd reported unreachable", |s| {
        !s["etcd"]["last_error"].is_null()
    })
    .await?;
    assert_eq!(status["ready"], false);
    assert_eq!(
        status["stale"], false,
        "nothing is served, so nothing is stale"
    );
    assert_eq!(status["etcd"]["connected"], false);
    assert_eq!(status["config"]["source"], Value::Null);
    eprintln!("etcd down: /status says {}", status["etcd"]["last_error"]);

    etcd.restart().await?;
    let since = Instant::now();
    wait_until("/readyz to answer 200", PROPAGATION_TIMEOUT, || async {
        gw.status_code("/readyz")
            .await
            .is_ok_and(|code| code == 200)
    })
    .await?;
    eprintln!("etcd back: ready after {:?}", since.elapsed());
    let status = gw.status().await?;
    assert_eq!(status["ready"], true);
    assert_eq!(status["etcd"]["connected"], true);
    assert_eq!(status["config"]["source"], "etcd");
    assert_eq!(status["etcd"]["last_error"], Value::Null);
    Ok(())
}

#[tokio::test]
async fn status_reports_the_served_configuration() -> harness::Result<()> {
    let etcd = Etcd::start().await?;
    let gw = Gateway::start_with(&etcd, with_status()).await?;
    let echo = EchoServer::start().await?;
    let admin = gw.admin();
    let server = Ca::new("Status CA").server("status.test", &["status.test"]);
    let upstream = json!({ "type": "roundrobin", "nodes": { echo.node(): 1 } });
    admin
        .create_all([
            ("ssls/1", plain_ssl("status.test", &server)),
            ("upstreams/1", upstream),
            ("routes/1", plain_route("/status-test", &echo.node())),
        ])
        .await?;
    eventually_status("the route", 200, || curl_http(&gw, "/status-test", &[])).await?;

    // Written by hand, past the admin API's validation.
    let bad_key = format!("{}/routes/bad", gw.prefix());
    etcd.etcdctl(&["put", &bad_key, r#"{"uri": 5, "upstream_id": "1"}"#])?;
    let revision = etcd.revision()?;

    let status = status_until(&gw, "the invalid route to be listed", |s| {
        s["config"]["invalid"]
            .as_array()
            .is_some_and(|list| !list.is_empty())
            && s["config"]["applied_revision"] == json!(revision)
    })
    .await?;
    eprintln!("/status: {status:#}");
    assert_eq!(status["role"], "traditional");
    assert_eq!(status["ready"], true);
    assert_eq!(status["stale"], false);
    let config = &status["config"];
    assert_eq!(config["source"], "etcd");
    assert_eq!(config["revision"], json!(revision));
    assert_eq!(
        (&config["ssls"], &config["routes"], &config["upstreams"]),
        (&json!(1), &json!(1), &json!(1))
    );
    let invalid = &config["invalid"][0];
    assert_eq!(invalid["key"], json!(bad_key));
    let reason = invalid["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("uri"),
        "the reason names the field: {reason}"
    );
    assert_eq!(status["etcd"]["connected"], true);
    let age = status["etcd"]["last_sync_age_seconds"]
        .as_f64()
        .unwrap_or(f64::MAX);
    assert!(
        age < PROPAGATION_TIMEOUT.as_secs_f64(),
        "last sync {age} s ago"
    );
    assert_eq!(status["connections"]["max"], 100_000, "the default cap");
    assert!(status["connections"]["current"].as_u64().is_some());
    assert!(status["process"]["rss_bytes"].as_u64().unwrap_or(0) > 0);

    // Fixing the object by hand clears it from the list.
    etcd.etcdctl(&["del", &bad_key])?;
    status_until(&gw, "the invalid list to empty", |s| {
        s["config"]["invalid"] == json!([])
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn status_lists_routes_that_cannot_serve_with_the_kind_of_error() -> harness::Result<()> {
    let etcd = Etcd::start().await?;
    let gw = Gateway::start_with(&etcd, with_status()).await?;
    let echo = EchoServer::start().await?;
    // Valid on its own, past the admin API's reference check: its upstream
    // does not exist, so the route answers 503 until it does.
    let route_key = format!("{}/routes/dangling", gw.prefix());
    etcd.etcdctl(&[
        "put",
        &route_key,
        r#"{"uri": "/dangling", "upstream_id": "later"}"#,
    ])?;
    let status = status_until(&gw, "the route to be listed as unbuildable", |s| {
        s["config"]["unbuildable"]
            .as_array()
            .is_some_and(|list| !list.is_empty())
    })
    .await?;
    assert_eq!(
        status["config"]["unbuildable"],
        json!([{
            "object": "route",
            "id": "dangling",
            "kind": "upstream_missing",
            "reason": "upstream_id \"later\" does not exist",
        }])
    );
    assert_eq!(
        unbuildable_count(&gw.metrics().await?, "route", "upstream_missing"),
        Some(1.0),
        "counted by kind in the metrics"
    );
    eventually_status("the route to answer 503", 503, || {
        curl_http(&gw, "/dangling", &[])
    })
    .await?;

    let upstream = json!({ "type": "roundrobin", "nodes": { echo.node(): 1 } });
    gw.admin()
        .create_all([("upstreams/later", upstream)])
        .await?;
    eventually_status("the route to serve", 200, || {
        curl_http(&gw, "/dangling", &[])
    })
    .await?;
    let status = gw.status().await?;
    assert_eq!(status["config"]["unbuildable"], json!([]));
    assert_eq!(
        unbuildable_count(&gw.metrics().await?, "route", "upstream_missing"),
        None,
        "a cleared kind leaves the metrics"
    );
    Ok(())
}

#[tokio::test]
async fn status_lists_ssl_objects_that_cannot_serve_with_the_kind_of_error() -> harness::Result<()>
{
    let etcd = Etcd::start().await?;
    let gw = Gateway::start_with(&etcd, with_status()).await?;
    let server = Ca::new("Server CA").server("odd.test", &["odd.test"]);
    let ssl_with_client_ca = |ca_pem: &str| {
        let mut ssl = plain_ssl("odd.test", &server);
        ssl["client"] = json!({ "ca": ca_pem });
        ssl
    };
    // The admin API reads the CA (it parses as X.509), but webpki refuses
    // to anchor a certificate that names two signature algorithms.
    gw.admin()
        .create(
            "ssls/odd",
            ssl_with_client_ca(&ca_with_mismatched_signature_algorithm()),
        )
        .await?;
    let status = status_until(&gw, "the SSL object to be listed as unbuildable", |s| {
        s["config"]["unbuildable"]
            .as_array()
            .is_some_and(|list| !list.is_empty())
    })
    .await?;
    let unbuildable = &status["config"]["unbuildable"];
    assert_eq!(unbuildable.as_array().map(Vec::len), Some(1), "{status:#}");
    let listed = &unbuildable[0];
    assert_eq!(
        (&listed["object"], &listed["id"], &listed["kind"]),
        (&json!("ssl"), &json!("odd"), &json!("client_ca")),
        "{listed:#}"
    );
    let reason = listed["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("client: CA certificate #0 is not a usable trust anchor"),
        "{reason}"
    );
    assert_eq!(
        unbuildable_count(&gw.metrics().await?, "ssl", "client_ca"),
        Some(1.0),
        "counted by kind in the metrics"
    );

    let ca = Ca::new("Client CA");
    gw.admin()
        .put_expecting(
            "/apisix/admin/ssls/odd",
            ssl_with_client_ca(&ca.cert_pem),
            200,
        )
        .await?;
    status_until(&gw, "the fixed SSL object to leave the list", |s| {
        s["config"]["unbuildable"] == json!([])
    })
    .await?;
    assert_eq!(
        unbuildable_count(&gw.metrics().await?, "ssl", "client_ca"),
        None,
        "a cleared kind leaves the metrics"
    );
    Ok(())
}

/// A self-signed CA certificate whose signature algorithm (ECDSA with
/// SHA-384) contradicts the one its signed part names (ECDSA with SHA-256).
fn ca_with_mismatched_signature_algorithm() -> String {
    const ECDSA_SHA256: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "Odd CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().expect("an ECDSA P-256 CA key");
    let mut der = params
        .self_signed(&key)
        .expect("self-sign a CA")
        .der()
        .to_vec();
    // The outer algorithm follows the signed part, which names it first.
    let outer = der
        .windows(ECDSA_SHA256.len())
        .rposition(|window| window == ECDSA_SHA256)
        .expect("signed with ECDSA with SHA-256");
    der[outer + ECDSA_SHA256.len() - 1] = 0x03;
    let base64 = STANDARD.encode(der);
    let lines: Vec<&str> = (base64.as_bytes().chunks(64))
        .map(|line| std::str::from_utf8(line).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// The value of `portcullis_config_unbuildable{object, kind}`, if present.
fn unbuildable_count(metrics: &str, object: &str, kind: &str) -> Option<f64> {
    let (object, kind) = (format!("object=\"{object}\""), format!("kind=\"{kind}\""));
    metrics
        .lines()
        .filter(|line| line.starts_with("portcullis_config_unbuildable{"))
        .find(|line| line.contains(&object) && line.contains(&kind))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn status_endpoints_refuse_what_they_do_not_serve() -> harness::Result<()> {
    let etcd = Etcd::start().await?;
    let gw = Gateway::start_with(&etcd, with_status()).await?;
    let base = format!("http://{}", gw.status_addr());
    let post = harness::curl(&["-X", "POST", &format!("{base}/status")])?;
    assert_eq!(post.status, 405);
    let missing = harness::curl(&[&format!("{base}/admin")])?;
    assert_eq!(missing.status, 404);
    // The status listener answers quickly even when asked in a burst.
    let started = Instant::now();
    for _ in 0..50 {
        assert_eq!(gw.status_code("/healthz").await?, 200);
    }
    let per_request = started.elapsed() / 50;
    eprintln!("/healthz: {per_request:?} per request (new connection each)");
    assert!(per_request < Duration::from_millis(200));
    Ok(())
}
