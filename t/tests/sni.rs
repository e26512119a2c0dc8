//! SNI resolution: wildcards, no SNI (with and without `fallback_sni`),
//! `skip_mtls_uri_regex`, and Host ≠ SNI.

use harness::fixtures::{
    cert_args, create_walkthrough, curl_https, eventually_status, path_str, plain_route, plain_ssl,
    serve_plain_test_com, start_stack, start_two_sites, CertFacts,
};
use harness::pki::{Ca, OpensslPki};
use harness::{curl, EchoServer, Etcd, Gateway, GatewayOptions};
use serde_json::json;

/// The second walkthrough section: `*.apisix.dev`, depth 10, skip regex `/anything.*`.
struct SkipMtls {
    ca: Ca,
    dir: tempfile::TempDir,
    echo: EchoServer,
    gw: Gateway,
    _etcd: Etcd,
}

impl SkipMtls {
    async fn start() -> harness::Result<SkipMtls> {
        let (etcd, gw, echo) = start_stack().await?;
        let ca = Ca::new("ca.apisix.dev");
        let server = ca.server("admin.apisix.dev", &["admin.apisix.dev", "*.apisix.dev"]);
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("mtls_ca.crt"), &ca.cert_pem)?;
        let admin = gw.admin();
        admin
            .create("routes/1", plain_route("/*", &echo.node()))
            .await?;
        let ssl = json!({
            "cert": server.cert_pem,
            "key": server.key_pem,
            "snis": ["*.apisix.dev"],
            "client": { "ca": ca.cert_pem, "depth": 10, "skip_mtls_uri_regex": ["/anything.*"] }
        });
        admin.create("ssls/1", ssl).await?;
        Ok(SkipMtls {
            ca,
            dir,
            echo,
            gw,
            _etcd: etcd,
        })
    }

    /// Started, and serving the skip list without a client certificate.
    async fn serving() -> harness::Result<SkipMtls> {
        let s = SkipMtls::start().await?;
        eventually_status("/anything/foobar without a cert", 200, || {
            s.curl("/anything/foobar", &[])
        })
        .await?;
        Ok(s)
    }

    /// The doc's curl: `--resolve admin.apisix.dev:PORT:127.0.0.1 --cacert mtls_ca.crt`.
    fn curl(&self, path: &str, extra: &[&str]) -> harness::Result<harness::CurlOutput> {
        let port = self.gw.https_addr().port();
        let resolve = format!("admin.apisix.dev:{port}:127.0.0.1");
        let url = format!("https://admin.apisix.dev:{port}{path}");
        let ca = self.dir.path().join("mtls_ca.crt");
        let mut args = vec!["--resolve", &resolve, &url, "--cacert", path_str(&ca)];
        args.extend_from_slice(extra);
        curl(&args)
    }
}

#[tokio::test]
async fn skip_mtls_uri_regex_answers_400_off_the_list_and_serves_the_list() -> harness::Result<()> {
    let s = SkipMtls::serving().await?;

    let out = s.curl("/uuid", &[])?;
    assert_eq!(out.status, 400, "no cert off the skip list: {out:?}");
    assert_eq!(
        s.echo.hits(),
        1,
        "the refused request must not reach the upstream"
    );

    let out = s.curl("/anything", &[])?;
    assert_eq!(out.status, 200, "{out:?}");

    let client = s.ca.client("CLIENT");
    let (cert, key) = client.write(s.dir.path(), "client");
    let out = s.curl("/uuid", &cert_args(&cert, &key))?;
    assert_eq!(
        out.status, 200,
        "a verified cert passes everywhere: {out:?}"
    );
    Ok(())
}

#[tokio::test]
async fn skip_mtls_uri_regex_never_accepts_an_untrusted_cert_off_the_list() -> harness::Result<()> {
    let s = SkipMtls::serving().await?;
    let hits = s.echo.hits();
    let (cert, key) = Ca::new("ca.apisix.dev")
        .client("CLIENT")
        .write(s.dir.path(), "stranger");
    let out = s.curl("/uuid", &cert_args(&cert, &key))?;
    assert!(
        out.status == 400 || out.status == 0,
        "an untrusted cert off the skip list must get 400 or a refused handshake: {out:?}"
    );
    assert_eq!(
        s.echo.hits(),
        hits,
        "the refused request must not reach the upstream"
    );
    Ok(())
}

#[tokio::test]
async fn backslash_paths_cannot_ride_the_skip_list() -> harness::Result<()> {
    let s = SkipMtls::serving().await?;
    let hits = s.echo.hits();
    // Upstreams that read `\` as `/` would resolve these to `/uuid`.
    for path in [
        "/anything\\..\\uuid",
        "/anything\\uuid",
        "/anything%5c..%5cuuid",
        "/anything%5C..%5Cuuid",
    ] {
        let out = s.curl(path, &["--path-as-is"])?;
        assert_eq!(out.status, 400, "{path}: {out:?}");
        assert!(out.body.contains("invalid request path"), "{path}: {out:?}");
    }
    assert_eq!(
        s.echo.hits(),
        hits,
        "no refused request reaches the upstream"
    );
    let out = s.curl("/anything/a%5cb", &[])?;
    assert_eq!(
        out.status, 200,
        "an encoded `\\` alone is no dot-segment: {out:?}"
    );
    Ok(())
}

#[tokio::test]
async fn wildcard_sni_covers_exactly_one_label() -> harness::Result<()> {
    let (_etcd, gw, echo) = start_stack().await?;
    let server = Ca::new("Wildcard CA").server("*.apisix.dev", &["*.apisix.dev"]);
    let admin = gw.admin();
    let ssl = json!({ "cert": server.cert_pem, "key": server.key_pem, "snis": ["*.apisix.dev"] });
    admin
        .create_all([
            ("ssls/1", ssl),
            ("routes/1", plain_route("/*", &echo.node())),
        ])
        .await?;

    eventually_status("admin.apisix.dev", 200, || {
        curl_https(&gw, "admin.apisix.dev", "/x", &[])
    })
    .await?;
    let out = curl_https(&gw, "ADMIN.apisix.dev", "/x", &[])?;
    assert_eq!(out.status, 200, "SNI matching ignores case: {out:?}");
    assert_eq!(
        CertFacts::served(&gw, Some("Admin.apisix.dev."))?,
        CertFacts::of(&server.cert_pem)?,
        "an SNI is lowercased and its trailing dot stripped"
    );
    for host in ["a.b.apisix.dev", "apisix.dev", "admin.apisix.dev.evil"] {
        let out = curl_https(&gw, host, "/x", &[])?;
        assert_eq!(out.status, 0, "{host} must find no certificate: {out:?}");
    }
    Ok(())
}

#[tokio::test]
async fn exact_sni_beats_a_wildcard() -> harness::Result<()> {
    let etcd = Etcd::start().await?;
    let gw = Gateway::start(&etcd).await?;
    let ca = Ca::new("SNI CA");
    let wildcard = ca.server("wildcard.apisix.dev", &["*.apisix.dev"]);
    let exact = ca.server("admin.apisix.dev", &["admin.apisix.dev"]);
    let admin = gw.admin();
    let ssl = |leaf: &harness::pki::Leaf, sni: &str| plain_ssl(sni, leaf);
    admin
        .create_all([
            ("ssls/w", ssl(&wildcard, "*.apisix.dev")),
            ("ssls/e", ssl(&exact, "admin.apisix.dev")),
        ])
        .await?;

    let want_exact = CertFacts::of(&exact.cert_pem)?;
    let want_wildcard = CertFacts::of(&wildcard.cert_pem)?;
    harness::wait_until(
        "both certificates to be served",
        harness::fixtures::PROPAGATION_TIMEOUT,
        || {
            let ok = CertFacts::served(&gw, Some("admin.apisix.dev")).ok()
                == Some(want_exact.clone())
                && CertFacts::served(&gw, Some("other.apisix.dev")).ok()
                    == Some(want_wildcard.clone());
            async move { ok }
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn no_sni_is_refused_without_fallback_sni() -> harness::Result<()> {
    let (_etcd, gw, echo) = start_stack().await?;
    let server = Ca::new("CA").server("test.com", &["test.com"]);
    serve_plain_test_com(&gw, &server, &echo).await?;

    // curl sends no SNI to an IP address.
    let url = format!("https://127.0.0.1:{}/anything", gw.https_addr().port());
    let out = curl(&[&url, "-k"])?;
    assert_eq!(
        out.status, 0,
        "no SNI and no fallback_sni must be refused: {out:?}"
    );
    Ok(())
}

#[tokio::test]
async fn no_sni_is_served_with_fallback_sni() -> harness::Result<()> {
    let etcd = Etcd::start().await?;
    let opts = GatewayOptions {
        fallback_sni: Some("test.com".to_owned()),
        ..GatewayOptions::default()
    };
    let gw = Gateway::start_with(&etcd, opts).await?;
    let echo = EchoServer::start().await?;
    let pki = OpensslPki::walkthrough()?;
    let admin = gw.admin();
    create_walkthrough(&admin, &pki, &echo.node()).await?;

    let url = format!("https://127.0.0.1:{}/anything", gw.https_addr().port());
    let (cert, key) = (pki.path("client.cer"), pki.path("client.key"));
    let with_cert = [&[url.as_str(), "-k"][..], &cert_args(&cert, &key)].concat();
    let out = eventually_status("a request without SNI", 200, || curl(&with_cert)).await?;
    let body: serde_json::Value = serde_json::from_str(&out.body)?;
    assert_eq!(
        body["headers"]["x-ssl-client-s-dn"], "CN=CLIENT",
        "{body:#}"
    );

    let out = curl(&[&url, "-k"])?;
    assert_eq!(
        out.status, 0,
        "the fallback SSL object's mTLS still applies: {out:?}"
    );
    Ok(())
}

#[tokio::test]
async fn host_naming_another_ssl_object_is_refused_on_an_mtls_sni() -> harness::Result<()> {
    let (_etcd, gw, echo, pki) = start_two_sites().await?;
    let (cert, key) = (pki.path("client.cer"), pki.path("client.key"));
    let client_cert = cert_args(&cert, &key);
    let out = curl_https(&gw, "test.com", "/anything", &client_cert)?;
    assert_eq!(out.status, 200, "{out:?}");
    let hits = echo.hits();

    let mut args = client_cert.to_vec();
    args.extend(["-H", "Host: other.com"]);
    let out = curl_https(&gw, "test.com", "/anything", &args)?;
    assert!(
        out.status == 421 || out.status == 400,
        "Host other.com on SNI test.com: {out:?}"
    );
    assert_eq!(
        echo.hits(),
        hits,
        "the refused request must not reach the upstream"
    );
    Ok(())
}

#[tokio::test]
async fn host_naming_an_mtls_site_cannot_bypass_its_client_certificate() -> harness::Result<()> {
    let (_etcd, gw, echo, _pki) = start_two_sites().await?;
    let hits = echo.hits();
    // TLS to the plain site, then ask for the mTLS site by Host, without a certificate.
    let out = curl_https(&gw, "other.com", "/anything", &["-H", "Host: test.com"])?;
    assert_ne!(
        out.status, 200,
        "Host test.com over SNI other.com must not bypass mTLS: {out:?}"
    );
    assert_eq!(
        echo.hits(),
        hits,
        "the refused request must not reach the upstream"
    );
    Ok(())
}
