//! Changes made through the admin API reach a running gateway without a
//! restart: route and SSL updates, and deletions.

use std::time::Instant;

use harness::fixtures::{
    cert_args, curl_http, curl_https, eventually_status, path_str, plain_route, plain_ssl,
    served_by, start_stack, until_served_by, CertFacts,
};
use harness::pki::Ca;
use harness::EchoServer;
use serde_json::{json, Value};

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

#[tokio::test]
async fn route_update_is_served_without_restart() -> harness::Result<()> {
    let (_etcd, gw, a) = start_stack().await?;
    let b = EchoServer::start().await?;
    let admin = gw.admin();
    let mut route = plain_route("/anything", &a.node());
    route["upstream"]["pass_host"] = json!("node");
    admin.create("routes/1", route.clone()).await?;
    let out = eventually_status("route 1 to upstream A", 200, || {
        curl_http(&gw, "/anything", &[])
    })
    .await?;
    assert_eq!(
        served_by(&out).as_deref(),
        Some(a.node().as_str()),
        "{out:?}"
    );

    route["upstream"]["nodes"] = json!({ b.node(): 1 });
    admin
        .put_expecting("/apisix/admin/routes/1", route.clone(), 200)
        .await?;
    let since = Instant::now();
    until_served_by(&gw, "/anything", &b).await?;
    eprintln!("propagation (route upstream change): {:?}", since.elapsed());

    route["uri"] = json!("/moved");
    admin
        .put_expecting("/apisix/admin/routes/1", route, 200)
        .await?;
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
    let (_etcd, gw, echo) = start_stack().await?;
    let dir = tempfile::tempdir()?;
    let (old_ca, new_ca) = (Ca::new("Old CA"), Ca::new("New CA"));
    let (old_server, new_server) = (
        old_ca.server("test.com", &["test.com"]),
        new_ca.server("test.com", &["test.com"]),
    );
    let (old_cert, old_key) = old_ca.client("OLD").write(dir.path(), "old");
    let (new_cert, new_key) = new_ca.client("NEW").write(dir.path(), "new");
    let ssl = |server: &harness::pki::Leaf, ca: &Ca| {
        let mut ssl = plain_ssl("test.com", server);
        ssl["client"] = json!({ "ca": ca.cert_pem });
        ssl
    };
    let admin = gw.admin();
    admin
        .create_all([
            ("ssls/1", ssl(&old_server, &old_ca)),
            ("routes/1", plain_route("/anything", &echo.node())),
        ])
        .await?;
    let old_client = cert_args(&old_cert, &old_key);
    let new_client = cert_args(&new_cert, &new_key);
    eventually_status("the old client", 200, || {
        curl_https(&gw, "test.com", "/anything", &old_client)
    })
    .await?;
    assert_eq!(
        CertFacts::served(&gw, Some("test.com"))?,
        CertFacts::of(&old_server.cert_pem)?
    );

    admin
        .put_expecting("/apisix/admin/ssls/1", ssl(&new_server, &new_ca), 200)
        .await?;
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
    let (_etcd, gw, echo) = start_stack().await?;
    let server = Ca::new("CA").server("test.com", &["test.com"]);
    let admin = gw.admin();
    admin
        .create_all([
            ("ssls/1", plain_ssl("test.com", &server)),
            ("routes/1", plain_route("/anything", &echo.node())),
            ("routes/2", plain_route("/other", &echo.node())),
        ])
        .await?;
    eventually_status("route 1", 200, || {
        curl_https(&gw, "test.com", "/anything", &[])
    })
    .await?;
    eventually_status("route 2", 200, || {
        curl_https(&gw, "test.com", "/other", &[])
    })
    .await?;

    admin
        .delete_expecting("/apisix/admin/routes/1", 200)
        .await?;
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

    admin.delete_expecting("/apisix/admin/ssls/1", 200).await?;
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
