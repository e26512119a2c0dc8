//! Online revocation of client certificates (`client.revocation`, and the
//! same on `client-cert-auth`) against a real OCSP responder
//! (`openssl ocsp`) and a CRL served over HTTP on loopback: good, revoked,
//! unknown and responder down, under `off`, `soft_fail` and `hard_fail`.

use std::time::{Duration, Instant};

use harness::fixtures::{curl_https, eventually_status, plain_ssl, start_stack};
use harness::pki::Ca;
use harness::revocation::{CrlServer, RevocationPki};
use harness::{EchoServer, Etcd, Gateway, GatewayOptions};
use serde_json::{json, Value};

/// HTTP status of `/anything` on `sni` presenting client `name` (0: no
/// HTTP answer, the handshake was refused).
fn status(gw: &Gateway, pki: &RevocationPki, sni: &str, name: &str) -> u16 {
    status_of(gw, pki, sni, "/anything", name)
}

fn status_of(gw: &Gateway, pki: &RevocationPki, sni: &str, path: &str, name: &str) -> u16 {
    let args = pki.curl_args(name);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    curl_https(gw, sni, path, &args)
        .unwrap_or_else(|e| panic!("curl: {e:#}"))
        .status
}

/// One SSL object per `(sni, revocation)`, each verifying client
/// certificates against the PKI's CA, and `/anything` on every host.
async fn serve(
    gw: &Gateway,
    echo: &EchoServer,
    pki: &RevocationPki,
    sites: &[(&str, Value)],
) -> harness::Result<()> {
    let server_ca = Ca::new("Server CA");
    let mut objects = vec![(
        "routes/1".to_owned(),
        json!({"uri": "/anything", "upstream": {"nodes": {echo.node(): 1}, "type": "roundrobin"}}),
    )];
    for (i, (sni, revocation)) in sites.iter().enumerate() {
        let mut ssl = plain_ssl(sni, &server_ca.server(sni, &[sni]));
        ssl["client"] = json!({"ca": pki.ca_pem(), "revocation": revocation});
        objects.push((format!("ssls/{}", i + 1), ssl));
    }
    gw.admin()
        .create_all(
            objects
                .iter()
                .map(|(key, value)| (key.as_str(), value.clone())),
        )
        .await?;
    Ok(())
}

/// `off.test`, `soft.test` and `hard.test` under each mode with `sources`,
/// once each serves the good client.
async fn serve_each_mode(
    gw: &Gateway,
    echo: &EchoServer,
    pki: &RevocationPki,
    sources: Value,
) -> harness::Result<()> {
    let sites = [
        ("off.test", "off"),
        ("soft.test", "soft_fail"),
        ("hard.test", "hard_fail"),
    ]
    .map(|(sni, mode)| {
        let mut revocation = sources.clone();
        revocation["mode"] = json!(mode);
        (sni, revocation)
    });
    serve(gw, echo, pki, &sites).await?;
    for (sni, _) in &sites {
        until(gw, pki, sni, "good", 200).await?;
    }
    Ok(())
}

/// Waits until `sni` serves client `name` with `expected`.
async fn until(
    gw: &Gateway,
    pki: &RevocationPki,
    sni: &str,
    name: &str,
    expected: u16,
) -> harness::Result<()> {
    let what = format!("{name} on {sni} answered {expected}");
    harness::wait_until(&what, Duration::from_secs(15), || async {
        status(gw, pki, sni, name) == expected
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}; gateway log:\n{}", gw.log()))
}

#[tokio::test]
async fn ocsp_good_revoked_unknown_in_each_mode() -> harness::Result<()> {
    let etcd = Etcd::start().await?;
    let with_metrics = GatewayOptions {
        status: true,
        ..GatewayOptions::default()
    };
    let gw = Gateway::start_with(&etcd, with_metrics).await?;
    let echo = EchoServer::start().await?;
    let pki = RevocationPki::new()?;
    let _responder = pki.responder(60).await?;
    serve_each_mode(&gw, &echo, &pki, json!({"crl_distribution_points": false})).await?;

    // hard_fail: the first handshake waits for the answer.
    assert_eq!(status(&gw, &pki, "hard.test", "revoked"), 0, "{}", gw.log());
    assert_eq!(status(&gw, &pki, "hard.test", "unknown"), 0);
    gw.until_logged("client certificate revoked").await?;
    gw.until_logged("revocation status unknown").await?;
    // hard.test is ssls/3.
    let metrics = gw.metrics().await?;
    for reason in ["revoked", "revocation_unknown"] {
        let sample = format!(
            "portcullis_tls_handshake_failures_total{{reason=\"{reason}\",ssl_id=\"3\"}} 1"
        );
        assert!(metrics.contains(&sample), "{sample} in {metrics}");
    }

    // soft_fail: accepted until the answer is in, then refused.
    until(&gw, &pki, "soft.test", "revoked", 0).await?;
    for _ in 0..3 {
        assert_eq!(status(&gw, &pki, "soft.test", "unknown"), 200);
    }

    // off: nobody asks.
    assert_eq!(status(&gw, &pki, "off.test", "revoked"), 200);
    assert_eq!(status(&gw, &pki, "off.test", "unknown"), 200);
    Ok(())
}

#[tokio::test]
async fn crl_distribution_points_in_each_mode() -> harness::Result<()> {
    let (_etcd, gw, echo) = start_stack().await?;
    let pki = RevocationPki::new()?;
    let _crls = CrlServer::start(&pki)?;
    serve_each_mode(&gw, &echo, &pki, json!({"ocsp": false})).await?;
    assert_eq!(status(&gw, &pki, "hard.test", "revoked"), 0, "{}", gw.log());
    // Not listed by its issuer's CRL: good.
    assert_eq!(status(&gw, &pki, "hard.test", "unknown"), 200);
    until(&gw, &pki, "soft.test", "revoked", 0).await?;
    assert_eq!(status(&gw, &pki, "off.test", "revoked"), 200);
    gw.until_logged("client certificate revoked").await?;
    Ok(())
}

#[tokio::test]
async fn responder_down_refuses_only_under_hard_fail() -> harness::Result<()> {
    let (_etcd, gw, echo) = start_stack().await?;
    let pki = RevocationPki::new()?;
    serve(
        &gw,
        &echo,
        &pki,
        &[
            ("off.test", json!({"mode": "off"})),
            ("soft.test", json!({"mode": "soft_fail"})),
            ("hard.test", json!({"mode": "hard_fail", "timeout_ms": 500})),
        ],
    )
    .await?;
    for sni in ["off.test", "soft.test"] {
        until(&gw, &pki, sni, "good", 200).await?;
        for _ in 0..3 {
            assert_eq!(status(&gw, &pki, sni, "revoked"), 200);
        }
    }
    // Refused as soon as the SNI is served (refused before that too).
    let started = Instant::now();
    for name in ["good", "revoked", "unknown"] {
        assert_eq!(status(&gw, &pki, "hard.test", name), 0);
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    harness::wait_until("the failure logged", Duration::from_secs(10), || async {
        gw.log().contains("revocation: no answer") && gw.log().contains("revocation status unknown")
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_revocation_published_while_running_takes_effect_within_cache_ttl() -> harness::Result<()>
{
    let (_etcd, gw, echo) = start_stack().await?;
    let pki = RevocationPki::new()?;
    let _responder = pki.responder(60).await?;
    let _crls = CrlServer::start(&pki)?;
    serve(
        &gw,
        &echo,
        &pki,
        &[
            (
                "ocsp.test",
                json!({"mode": "hard_fail", "crl_distribution_points": false, "cache_ttl": 3}),
            ),
            (
                "crl.test",
                json!({"mode": "hard_fail", "ocsp": false, "cache_ttl": 3}),
            ),
        ],
    )
    .await?;
    for sni in ["ocsp.test", "crl.test"] {
        until(&gw, &pki, sni, "good", 200).await?;
    }
    pki.publish(&["revoked", "good"])?;
    let published = Instant::now();
    for sni in ["ocsp.test", "crl.test"] {
        until(&gw, &pki, sni, "good", 0)
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}\nresponder:\n{}", pki.responder_log()))?;
    }
    let took = published.elapsed();
    // cache_ttl, then one fetch (the responder re-reads its index).
    assert!(took < Duration::from_secs(3 + 3), "took {took:?}");
    Ok(())
}

#[tokio::test]
async fn client_cert_auth_checks_online_too() -> harness::Result<()> {
    let (_etcd, gw, echo) = start_stack().await?;
    let pki = RevocationPki::new()?;
    let _responder = pki.responder(60).await?;
    let server_ca = Ca::new("Server CA");
    let plugin = |mode: &str| {
        json!({"client-cert-auth": {
            "ca": [pki.ca_pem()],
            "revocation": {"mode": mode, "crl_distribution_points": false}
        }})
    };
    let route = |uri: &str, mode: &str| {
        json!({"host": "route.test", "uri": uri, "plugins": plugin(mode),
               "upstream": {"nodes": {echo.node(): 1}, "type": "roundrobin"}})
    };
    gw.admin()
        .create_all([
            (
                "ssls/1",
                plain_ssl(
                    "route.test",
                    &server_ca.server("route.test", &["route.test"]),
                ),
            ),
            ("routes/1", route("/anything", "soft_fail")),
            ("routes/2", route("/strict", "hard_fail")),
        ])
        .await?;
    eventually_status("a good certificate", 200, || {
        let args = pki.curl_args("good");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl_https(&gw, "route.test", "/anything", &args)
    })
    .await?;
    // A new connection per request: the route judges each one.
    until(&gw, &pki, "route.test", "revoked", 401).await?;
    gw.until_logged("certificate revoked").await?;

    // hard_fail on a route: 401 until a good answer is in, and for good
    // when the CA does not know the certificate.
    harness::wait_until("good on /strict", Duration::from_secs(15), || async {
        status_of(&gw, &pki, "route.test", "/strict", "good") == 200
    })
    .await?;
    for _ in 0..3 {
        assert_eq!(
            status_of(&gw, &pki, "route.test", "/strict", "unknown"),
            401
        );
        assert_eq!(
            status_of(&gw, &pki, "route.test", "/anything", "unknown"),
            200
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_admin_api_refuses_bad_revocation_settings() -> harness::Result<()> {
    let (_etcd, gw, _echo) = start_stack().await?;
    let pki = RevocationPki::new()?;
    let server = Ca::new("Server CA").server("a.test", &["a.test"]);
    for (revocation, field) in [
        (json!({"mode": "strict"}), "revocation"),
        (
            json!({"ocsp": false, "crl_distribution_points": false}),
            "client.revocation",
        ),
    ] {
        let mut ssl = plain_ssl("a.test", &server);
        ssl["client"] = json!({"ca": pki.ca_pem(), "revocation": revocation});
        let reply = gw.admin().put("/apisix/admin/ssls/1", ssl).await?;
        assert_eq!(reply.status, 400, "{}", reply.text);
        assert!(reply.text.contains(field), "{}", reply.text);
    }
    Ok(())
}
