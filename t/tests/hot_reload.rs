//! Changes made through the admin API reach a running gateway without a
//! restart: route and SSL updates, and deletions, including on connections
//! opened before the change.

use std::time::Instant;

use bytes::Bytes;

use harness::fixtures::{
    cert_args, curl_http, curl_https, eventually_status, path_str, plain_route, plain_ssl,
    serve_plain_test_com, served_by, start_stack, until_served_by, CertFacts, PROPAGATION_TIMEOUT,
};
use harness::pki::Ca;
use harness::{wait_until, EchoServer};
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
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

#[tokio::test]
async fn open_connections_keep_serving_after_renewal_but_not_after_mtls_is_required(
) -> harness::Result<()> {
    open_connections_follow_the_client_policy(Alpn::Http1).await
}

/// The same over HTTP/2, where the gateway ends the connection with GOAWAY.
#[tokio::test]
async fn open_http2_connections_follow_the_client_policy() -> harness::Result<()> {
    open_connections_follow_the_client_policy(Alpn::Http2).await
}

async fn open_connections_follow_the_client_policy(alpn: Alpn) -> harness::Result<()> {
    let (_etcd, gw, echo) = start_stack().await?;
    let server_ca = Ca::new("Server CA");
    let server = server_ca.server("test.com", &["test.com"]);
    serve_plain_test_com(&gw, &server, &echo).await?;
    let admin = gw.admin();
    let mut open = KeepAlive::open(&gw, "test.com", &server_ca.cert_pem, alpn).await?;
    assert_eq!(open.get("/anything").await?, Some(200));

    // A renewed server certificate leaves the client policy alone.
    let renewed = server_ca.server("test.com", &["test.com"]);
    admin
        .put_expecting("/apisix/admin/ssls/1", plain_ssl("test.com", &renewed), 200)
        .await?;
    let renewed_facts = CertFacts::of(&renewed.cert_pem)?;
    wait_until("the renewed certificate", PROPAGATION_TIMEOUT, || {
        let served = CertFacts::served(&gw, Some("test.com"));
        let renewed = matches!(served, Ok(facts) if facts == renewed_facts);
        async move { renewed }
    })
    .await?;
    assert_eq!(
        open.get("/anything").await?,
        Some(200),
        "a renewal must not disturb open connections"
    );

    // Requiring client certificates applies to the open connection too:
    // idle, it is closed as soon as the gateway applies the change (a
    // request racing the close would get 421, never an answer).
    let mut mtls = plain_ssl("test.com", &renewed);
    mtls["client"] = json!({ "ca": Ca::new("Client CA").cert_pem });
    admin
        .put_expecting("/apisix/admin/ssls/1", mtls, 200)
        .await?;
    wait_until(
        "the gateway to close the idle connection",
        PROPAGATION_TIMEOUT,
        || {
            let closed = open.is_closed();
            async move { closed }
        },
    )
    .await?;
    let hits = echo.hits();
    assert_eq!(
        open.get("/anything").await?,
        None,
        "the connection is closed"
    );
    eventually_status("a new connection without a certificate refused", 0, || {
        curl_https(&gw, "test.com", "/anything", &[])
    })
    .await?;
    assert_eq!(echo.hits(), hits, "nothing reached the upstream");
    Ok(())
}

/// The protocol a [`KeepAlive`] connection speaks.
#[derive(Clone, Copy)]
enum Alpn {
    Http1,
    Http2,
}

/// One keep-alive connection over TLS (HTTP/1.1 or HTTP/2), without a
/// client certificate, reused request after request.
struct KeepAlive {
    sender: Sender,
    host: String,
}

enum Sender {
    Http1(http1::SendRequest<Empty<Bytes>>),
    Http2(http2::SendRequest<Empty<Bytes>>),
}

impl KeepAlive {
    /// Connects with SNI `host`, trusting only `ca_pem`.
    async fn open(
        gw: &harness::Gateway,
        host: &str,
        ca_pem: &str,
        alpn: Alpn,
    ) -> harness::Result<KeepAlive> {
        let protocol: &[u8] = match alpn {
            Alpn::Http1 => b"http/1.1",
            Alpn::Http2 => b"h2",
        };
        let tls = harness::tls_setup::connect(gw.https_addr(), host, ca_pem, protocol).await?;
        let io = TokioIo::new(tls);
        // Each connection task ends with its connection; the test holds no
        // handle to it.
        let sender = match alpn {
            Alpn::Http1 => {
                let (sender, conn) = http1::handshake(io).await?;
                tokio::spawn(conn);
                Sender::Http1(sender)
            }
            Alpn::Http2 => {
                let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(conn);
                Sender::Http2(sender)
            }
        };
        Ok(KeepAlive {
            sender,
            host: host.to_owned(),
        })
    }

    /// Whether the gateway has closed the connection.
    fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::Http1(sender) => sender.is_closed(),
            Sender::Http2(sender) => sender.is_closed(),
        }
    }

    /// `GET path`: the status once the body is read, or `None` when the
    /// gateway has closed the connection.
    async fn get(&mut self, path: &str) -> harness::Result<Option<u16>> {
        // Any failure to send means the connection is gone: closed by the
        // gateway, possibly while the request was on its way.
        let sent = match &mut self.sender {
            Sender::Http1(sender) => {
                if sender.ready().await.is_err() {
                    return Ok(None);
                }
                let request = http::Request::get(path)
                    .header(http::header::HOST, &self.host)
                    .body(Empty::new())?;
                sender.send_request(request).await
            }
            Sender::Http2(sender) => {
                if sender.ready().await.is_err() {
                    return Ok(None);
                }
                let uri = format!("https://{}{path}", self.host);
                sender
                    .send_request(http::Request::get(uri).body(Empty::new())?)
                    .await
            }
        };
        let Ok(response) = sent else {
            return Ok(None);
        };
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        Ok(Some(status))
    }
}
