//! Changes made through the admin API reach a running gateway without a
//! restart: route and SSL updates, and deletions.

use std::time::Instant;

use harness::fixtures::{
    curl_http, curl_https, eventually_status, plain_route, CertFacts, PROPAGATION_TIMEOUT,
};
use harness::pki::Ca;
use harness::{wait_until, EchoServer, Etcd, Gateway};
use serde_json::{json, Value};

fn path_str(path: &std::path::Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Waits until `request` answers with `status`; prints the time since `since` (the admin response).
async fn propagation<F>(
    what: &str,
    since: Instant,
    status: u16,
    request: F,
) -> harness::Result<harness::CurlOutput>
where
    F: FnMut() -> harness::Result<harness::CurlOutput>,
{
    let out = eventually_status(what, status, request).await?;
    eprintln!("propagation ({what}): {:?}", since.elapsed());
    Ok(out)
}

fn upstream_port(out: &harness::CurlOutput) -> Option<String> {
    let body: Value = serde_json::from_str(&out.body).ok()?;
    body["headers"]["host"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn route_update_is_served_without_restart() -> harness::Result<()> {
    let etcd = Etcd::start().await?;
    let gw = Gateway::start(&etcd).await?;
    let (a, b) = (EchoServer::start().await?, EchoServer::start().await?);
    let admin = gw.admin();
    let mut route = plain_route("/anything", &a.node());
    route["upstream"]["pass_host"] = json!("node");
    assert_eq!(
        admin
            .put("/apisix/admin/routes/1", route.clone())
            .await?
            .status,
        201
    );
    let out = eventually_status("route 1 to upstream A", 200, || {
        curl_http(&gw, "/anything", &[])
    })
    .await?;
    assert_eq!(
        upstream_port(&out).as_deref(),
        Some(a.node().as_str()),
        "{out:?}"
    );

    route["upstream"]["nodes"] = json!({ b.node(): 1 });
    let put = admin.put("/apisix/admin/routes/1", route.clone()).await?;
    assert_eq!(put.status, 200, "{}", put.text);
    let since = Instant::now();
    let mut last = None;
    wait_until("route 1 to reach upstream B", PROPAGATION_TIMEOUT, || {
        let out = curl_http(&gw, "/anything", &[]);
        let done = matches!(&out, Ok(o) if o.status == 200 && upstream_port(o).as_deref() == Some(b.node().as_str()));
        last = Some(out);
        async move { done }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}; last: {last:?}"))?;
    eprintln!("propagation (route upstream change): {:?}", since.elapsed());

    route["uri"] = json!("/moved");
    assert_eq!(
        admin.put("/apisix/admin/routes/1", route).await?.status,
        200
    );
    let since = Instant::now();
    propagation("route uri change", since, 200, || {
        curl_http(&gw, "/moved", &[])
    })
    .await?;
    let out = curl_http(&gw, "/anything", &[])?;
    assert_eq!(out.status, 404, "the old uri must be gone: {out:?}");
    Ok(())
}

#[tokio::test]
async fn ssl_update_serves_the_new_certificate_and_client_ca() -> harness::Result<()> {
    let etcd = Etcd::start().await?;
    let gw = Gateway::start(&etcd).await?;
    let echo = EchoServer::start().await?;
    let dir = tempfile::tempdir()?;
    let (old_ca, new_ca) = (Ca::new("Old CA"), Ca::new("New CA"));
    let (old_server, new_server) = (
        old_ca.server("test.com", &["test.com"]),
        new_ca.server("test.com", &["test.com"]),
    );
    let (old_cert, old_key) = old_ca.client("OLD").write(dir.path(), "old");
    let (new_cert, new_key) = new_ca.client("NEW").write(dir.path(), "new");
    let ssl = |server: &harness::pki::Leaf, ca: &Ca| json!({ "sni": "test.com", "cert": server.cert_pem, "key": server.key_pem, "client": { "ca": ca.cert_pem } });
    let admin = gw.admin();
    assert_eq!(
        admin
            .put("/apisix/admin/ssls/1", ssl(&old_server, &old_ca))
            .await?
            .status,
        201
    );
    assert_eq!(
        admin
            .put(
                "/apisix/admin/routes/1",
                plain_route("/anything", &echo.node())
            )
            .await?
            .status,
        201
    );
    let old_client = ["--cert", path_str(&old_cert), "--key", path_str(&old_key)];
    let new_client = ["--cert", path_str(&new_cert), "--key", path_str(&new_key)];
    eventually_status("the old client", 200, || {
        curl_https(&gw, "test.com", "/anything", &old_client)
    })
    .await?;
    assert_eq!(
        CertFacts::served(&gw, Some("test.com"))?,
        CertFacts::of(&old_server.cert_pem)?
    );

    let put = admin
        .put("/apisix/admin/ssls/1", ssl(&new_server, &new_ca))
        .await?;
    assert_eq!(put.status, 200, "{}", put.text);
    let since = Instant::now();
    // Verifying the server with the new CA only (no -k) proves the new
    // certificate is served; the new client proves the new client CA.
    let new_ca_file = dir.path().join("new-ca.crt");
    std::fs::write(&new_ca_file, &new_ca.cert_pem)?;
    let resolve = format!("test.com:{}:127.0.0.1", gw.https_addr().port());
    let url = format!("https://test.com:{}/anything", gw.https_addr().port());
    let mut strict = vec![
        "--resolve",
        resolve.as_str(),
        url.as_str(),
        "--cacert",
        path_str(&new_ca_file),
    ];
    strict.extend_from_slice(&new_client);
    propagation("SSL certificate and client CA change", since, 200, || {
        harness::curl(&strict)
    })
    .await?;
    assert_eq!(
        CertFacts::served(&gw, Some("test.com"))?,
        CertFacts::of(&new_server.cert_pem)?
    );
    let out = curl_https(&gw, "test.com", "/anything", &old_client)?;
    assert_eq!(
        out.status, 0,
        "a client of the replaced CA must be refused: {out:?}"
    );
    Ok(())
}

#[tokio::test]
async fn deletions_are_honoured() -> harness::Result<()> {
    let etcd = Etcd::start().await?;
    let gw = Gateway::start(&etcd).await?;
    let echo = EchoServer::start().await?;
    let server = Ca::new("CA").server("test.com", &["test.com"]);
    let admin = gw.admin();
    let ssl = json!({ "sni": "test.com", "cert": server.cert_pem, "key": server.key_pem });
    assert_eq!(admin.put("/apisix/admin/ssls/1", ssl).await?.status, 201);
    assert_eq!(
        admin
            .put(
                "/apisix/admin/routes/1",
                plain_route("/anything", &echo.node())
            )
            .await?
            .status,
        201
    );
    assert_eq!(
        admin
            .put(
                "/apisix/admin/routes/2",
                plain_route("/other", &echo.node())
            )
            .await?
            .status,
        201
    );
    eventually_status("route 1", 200, || {
        curl_https(&gw, "test.com", "/anything", &[])
    })
    .await?;
    eventually_status("route 2", 200, || {
        curl_https(&gw, "test.com", "/other", &[])
    })
    .await?;

    let deleted = admin.delete("/apisix/admin/routes/1").await?;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    let since = Instant::now();
    let out = propagation("route deletion", since, 404, || {
        curl_https(&gw, "test.com", "/anything", &[])
    })
    .await?;
    let body: Value = serde_json::from_str(&out.body)?;
    assert_eq!(body["error_msg"], "404 Route Not Found", "{}", out.body);
    assert_eq!(
        curl_https(&gw, "test.com", "/other", &[])?.status,
        200,
        "route 2 must stay"
    );

    let deleted = admin.delete("/apisix/admin/ssls/1").await?;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    let since = Instant::now();
    propagation("SSL deletion", since, 0, || {
        curl_https(&gw, "test.com", "/other", &[])
    })
    .await?;
    assert_eq!(
        curl_http(&gw, "/other", &[])?.status,
        200,
        "plain HTTP does not need the SSL object"
    );
    Ok(())
}
