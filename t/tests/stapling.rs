//! OCSP stapling (`ocsp_stapling` of an SSL object) against a real
//! responder (`openssl ocsp`), seen by `openssl s_client -status`.

use std::time::{Duration, Instant};

use harness::fixtures::{route_to, start_stack};
use harness::ocsp::{OcspPki, OcspResponder};
use harness::{openssl_output, Gateway};
use serde_json::json;

/// What `openssl s_client -status` saw of the staple.
#[derive(Debug, PartialEq, Eq)]
enum Staple {
    None,
    Good { this_update: String },
    Other(String),
}

fn staple(gw: &Gateway) -> harness::Result<Staple> {
    let connect = gw.https_addr().to_string();
    let out = openssl_output(
        &[
            "s_client",
            "-connect",
            &connect,
            "-servername",
            "ocsp.test",
            "-status",
        ],
        "",
    )?;
    let text = out.stdout;
    if text.contains("OCSP response: no response sent") {
        return Ok(Staple::None);
    }
    if text.contains("Cert Status: good") {
        let this_update = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("This Update: "))
            .unwrap_or_default()
            .to_owned();
        return Ok(Staple::Good { this_update });
    }
    Ok(Staple::Other(text))
}

/// Polls the staple until `done` holds; returns it.
async fn until_staple(
    gw: &Gateway,
    what: &str,
    timeout: Duration,
    done: impl Fn(&Staple) -> bool,
) -> harness::Result<Staple> {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = staple(gw)?;
        if done(&seen) {
            return Ok(seen);
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "timed out waiting for {what}; last staple: {seen:?}; gateway log:\n{}",
                gw.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn serve_ocsp_test(gw: &Gateway, pki: &OcspPki) -> harness::Result<()> {
    let echo = harness::EchoServer::start().await?;
    gw.admin()
        .create_all([
            (
                "ssls/1",
                json!({
                    "sni": "ocsp.test",
                    "cert": pki.read("chain.pem"),
                    "key": pki.read("server.key"),
                    "ocsp_stapling": { "enabled": true, "cache_ttl": 3600 }
                }),
            ),
            ("routes/1", route_to("/anything", &echo)),
        ])
        .await
}

#[tokio::test]
async fn a_good_response_is_stapled_refreshed_kept_while_down_and_dropped_once_expired(
) -> harness::Result<()> {
    let (_etcd, gw, _echo) = start_stack().await?;
    let pki = OcspPki::new()?;
    // nextUpdate one minute after each answer: refreshed after 30 s.
    let responder = OcspResponder::start(&pki, 1).await?;
    serve_ocsp_test(&gw, &pki).await?;

    let first = until_staple(&gw, "a good staple", Duration::from_secs(20), |s| {
        matches!(s, Staple::Good { .. })
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\nresponder log:\n{}", pki.read("responder.log")))?;
    let refreshed = until_staple(&gw, "a refreshed staple", Duration::from_secs(50), |s| {
        matches!(s, Staple::Good { .. }) && *s != first
    })
    .await?;

    responder.stop(&pki).await?;
    let failed = Instant::now();
    harness::wait_until("a failed refresh", Duration::from_secs(50), || async {
        gw.log()
            .contains("cannot refresh the stapled OCSP response")
    })
    .await?;
    assert_eq!(
        staple(&gw)?,
        refreshed,
        "the last good response is served while the responder is down"
    );
    until_staple(
        &gw,
        "the expired staple to go",
        Duration::from_secs(60),
        |s| *s == Staple::None,
    )
    .await?;
    assert!(
        failed.elapsed() > Duration::from_secs(20),
        "dropped at nextUpdate, not at the first failure"
    );
    gw.until_logged("OCSP stapling stopped").await?;
    Ok(())
}

#[tokio::test]
async fn a_revoked_certificate_is_not_stapled() -> harness::Result<()> {
    let (_etcd, gw, _echo) = start_stack().await?;
    let pki = OcspPki::new()?;
    pki.set_revoked(true)?;
    let _responder = OcspResponder::start(&pki, 60).await?;
    serve_ocsp_test(&gw, &pki).await?;
    harness::wait_until(
        "the responder's answer",
        Duration::from_secs(20),
        || async {
            gw.log()
                .contains("the responder says the certificate is Revoked")
        },
    )
    .await?;
    // The answer may come before the new SSL object serves its SNI.
    until_staple(
        &gw,
        "a handshake without staple",
        Duration::from_secs(10),
        |s| *s == Staple::None,
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn stapling_needs_a_responder_in_the_certificate() -> harness::Result<()> {
    let (_etcd, gw, _echo) = start_stack().await?;
    let pki = OcspPki::new()?;
    let reply = gw
        .admin()
        .put(
            "/apisix/admin/ssls/1",
            json!({
                "sni": "ocsp.test",
                "cert": pki.read("server.cer"),
                "key": pki.read("server.key"),
                "ocsp_stapling": { "enabled": true }
            }),
        )
        .await?;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(
        reply
            .body
            .to_string()
            .contains("issuer's certificate must follow"),
        "{reply:?}"
    );
    Ok(())
}
