//! Configuration churn under load: a steady stream of admin writes, routes
//! and SSL objects alternating (the certificate of the very SNI the load
//! uses among them), while HTTPS and HTTP traffic flows through a data
//! plane. No request that should succeed may fail, and the data plane's
//! memory must not grow with the number of updates.
//!
//! By default the run is short enough for CI; `PORTCULLIS_CHAOS_FULL=1`
//! runs the 10,000 updates the resilience issue asks for.

use std::time::{Duration, Instant};

use harness::fixtures::{start_control_and_data_plane, CertFacts, PROPAGATION_TIMEOUT};
use harness::load::{http_get, rss_kib, Load, Target};
use harness::pki::{Ca, Leaf};
use harness::{wait_until, AdminClient, EchoServer, Etcd};
use serde_json::{json, Value};

/// The SNI the HTTPS load uses, whose certificate the churn keeps replacing.
const SNI: &str = "churn.test";
/// Certificates rotated on [`SNI`].
const CERTS: usize = 8;
/// Updates after which the first RSS figure is taken.
const WARM_UP_UPDATES: usize = 100;
/// RSS after the last update may exceed RSS after the first
/// [`WARM_UP_UPDATES`] by this fraction at most (the bound).
const RSS_GROWTH_LIMIT: f64 = 0.10;

/// How much churn: updates and their pace.
struct Plan {
    updates: usize,
    rate: u32,
}

impl Plan {
    fn from_env() -> Plan {
        if std::env::var_os("PORTCULLIS_CHAOS_FULL").is_some() {
            // The 10,000 updates, as fast as about a minute allows.
            Plan {
                updates: 10_000,
                rate: 170,
            }
        } else {
            // 12 s at the 50 writes/s.
            Plan {
                updates: 600,
                rate: 50,
            }
        }
    }
}

fn route(uri: &str, echo: &EchoServer) -> Value {
    json!({ "uri": uri, "upstream": { "type": "roundrobin", "nodes": { echo.node(): 1 } } })
}

fn ssl(sni: &str, leaf: &Leaf) -> Value {
    json!({ "sni": sni, "cert": leaf.cert_pem, "key": leaf.key_pem })
}

/// The `n`th write of the churn: `(method, path, body)`. Every fourth write
/// replaces the certificate of [`SNI`]; the others move the loaded route
/// between two upstreams, and create and delete another route and another
/// SSL object.
fn nth_write(
    n: usize,
    certs: &[Leaf],
    other: &Leaf,
    echoes: &[EchoServer; 2],
) -> (&'static str, String, Option<Value>) {
    let round = n / 4;
    match (n % 4, round % 2) {
        (0, _) => (
            "PUT",
            "/apisix/admin/ssls/churn".into(),
            Some(ssl(SNI, &certs[round % certs.len()])),
        ),
        (1, _) => (
            "PUT",
            "/apisix/admin/routes/loaded".into(),
            Some(route("/loaded", &echoes[round % 2])),
        ),
        (2, 0) => (
            "PUT",
            "/apisix/admin/ssls/other".into(),
            Some(ssl("other.test", other)),
        ),
        (2, _) => ("DELETE", "/apisix/admin/ssls/other".into(), None),
        (_, 0) => (
            "PUT",
            format!("/apisix/admin/routes/extra-{}", round % 16),
            Some(route(&format!("/extra/{round}"), &echoes[0])),
        ),
        _ => (
            "DELETE",
            format!("/apisix/admin/routes/extra-{}", (round - 1) % 16),
            None,
        ),
    }
}

async fn send(
    admin: &AdminClient,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> harness::Result<u16> {
    let reply = match (method, body) {
        ("PUT", Some(body)) => admin.put(path, body).await?,
        _ => admin.delete(path).await?,
    };
    let expected: &[u16] = if method == "PUT" {
        &[200, 201]
    } else {
        &[200, 404]
    };
    if !expected.contains(&reply.status) {
        anyhow::bail!("{method} {path} answered {}: {}", reply.status, reply.text);
    }
    Ok(reply.status)
}

#[tokio::test]
async fn config_churn_under_load_fails_no_request_and_does_not_grow_memory() -> harness::Result<()>
{
    let plan = Plan::from_env();
    let etcd = Etcd::start().await?;
    let (control, data) = start_control_and_data_plane(&etcd).await?;
    let echoes = [EchoServer::start().await?, EchoServer::start().await?];
    let ca = Ca::new("Churn CA");
    let certs: Vec<Leaf> = (0..CERTS).map(|_| ca.server(SNI, &[SNI])).collect();
    let other = ca.server("other.test", &["other.test"]);
    let admin = control.admin();
    send(
        &admin,
        "PUT",
        "/apisix/admin/ssls/churn",
        Some(ssl(SNI, &certs[0])),
    )
    .await?;
    send(
        &admin,
        "PUT",
        "/apisix/admin/routes/loaded",
        Some(route("/loaded", &echoes[0])),
    )
    .await?;
    wait_until("the loaded route", PROPAGATION_TIMEOUT, || async {
        matches!(http_get(data.http_addr(), "/loaded").await, Ok((200, _)))
    })
    .await?;

    let https = Load::start(
        Target::Https {
            addr: data.https_addr(),
            server_name: SNI.into(),
            path: "/loaded".into(),
            ca_pem: ca.cert_pem.clone(),
        },
        100,
        2,
    )?;
    let http = Load::start(
        Target::Http {
            addr: data.http_addr(),
            path: "/loaded".into(),
        },
        100,
        2,
    )?;
    let pid = data
        .pid()
        .ok_or_else(|| anyhow::anyhow!("the data plane runs"))?;
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(plan.rate)));
    let began = Instant::now();
    let mut rss_warm = 0;
    for n in 0..plan.updates {
        pace.tick().await;
        let (method, path, body) = nth_write(n, &certs, &other, &echoes);
        send(&admin, method, &path, body).await?;
        if n + 1 == WARM_UP_UPDATES {
            rss_warm = rss_kib(pid)?;
        }
    }
    let writing = began.elapsed();
    // Let the last update reach the data plane, then measure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_last = rss_kib(pid)?;
    let (https, http) = (https.finish().await, http.finish().await);

    let rate = plan.updates as f64 / writing.as_secs_f64();
    let growth = rss_last as f64 / rss_warm as f64 - 1.0;
    eprintln!(
        "churn: {} admin writes in {writing:.1?} ({rate:.0}/s); data plane RSS after {WARM_UP_UPDATES} updates {rss_warm} KiB, \
         after {} updates {rss_last} KiB ({:+.1}%)",
        plan.updates,
        plan.updates,
        growth * 100.0
    );
    https.assert_no_failure("churn, HTTPS to the SNI whose certificate changes");
    http.assert_no_failure("churn, HTTP");
    let last_cert = &certs[((plan.updates - 1) / 4) % CERTS];
    assert_eq!(
        CertFacts::served(&data, Some(SNI))?,
        CertFacts::of(&last_cert.cert_pem)?,
        "the last certificate written is the one served"
    );
    assert!(
        growth <= RSS_GROWTH_LIMIT,
        "RSS grew by {:.1}% (limit {:.0}%)",
        growth * 100.0,
        RSS_GROWTH_LIMIT * 100.0
    );
    Ok(())
}
