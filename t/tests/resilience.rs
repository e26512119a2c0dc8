//! The gateway against a real, unreliable etcd: restarts of either side,
//! outages, compactions while its watch is behind or cut, hand-written garbage.

use std::time::{Duration, Instant};

use harness::fixtures::{
    curl_http, curl_https, eventually_status, plain_ssl, route_to, start_stack, until_served_by,
};
use harness::pki::Ca;
use harness::{EchoServer, Etcd, Gateway, GatewayOptions};
use serde_json::{json, Value};

fn tls_site(cn: &str) -> Value {
    plain_ssl(cn, &Ca::new("Site CA").server(cn, &[cn]))
}

#[tokio::test]
async fn config_survives_a_gateway_restart() -> harness::Result<()> {
    let (_etcd, mut gw, echo) = start_stack().await?;
    let admin = gw.admin();
    admin
        .create_all([
            ("ssls/1", tls_site("test.com")),
            ("routes/1", route_to("/anything", &echo)),
        ])
        .await?;
    eventually_status("the route", 200, || {
        curl_https(&gw, "test.com", "/anything", &[])
    })
    .await?;

    gw.restart().await?;
    let since = Instant::now();
    eventually_status("the route after a restart", 200, || {
        curl_https(&gw, "test.com", "/anything", &[])
    })
    .await?;
    eprintln!(
        "restart: serving the stored config {:?} after the listeners opened",
        since.elapsed()
    );
    let status = gw.last_exit();
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM must end the gateway cleanly: {status:?}"
    );
    Ok(())
}

#[tokio::test]
async fn gateway_serves_through_an_etcd_outage_and_follows_changes_after_it() -> harness::Result<()>
{
    let mut etcd = Etcd::start().await?;
    let gw = Gateway::start(&etcd).await?;
    let (a, b) = (EchoServer::start().await?, EchoServer::start().await?);
    let admin = gw.admin();
    admin.create("routes/1", route_to("/anything", &a)).await?;
    until_served_by(&gw, "/anything", &a).await?;

    etcd.stop().await;
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(3) {
        let out = curl_http(&gw, "/anything", &[])?;
        assert_eq!(
            out.status, 200,
            "the last good config must keep serving while etcd is down: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused = admin
        .put("/apisix/admin/routes/1", route_to("/anything", &b))
        .await?;
    assert_eq!(
        refused.status, 503,
        "an admin write without etcd: {}",
        refused.text
    );

    etcd.restart().await?;
    admin
        .put_until_stored("/apisix/admin/routes/1", route_to("/anything", &b))
        .await?;
    let since = Instant::now();
    until_served_by(&gw, "/anything", &b).await?;
    eprintln!("propagation after an etcd restart: {:?}", since.elapsed());
    Ok(())
}

/// How the paused gateway loses track of etcd.
#[derive(Clone, Copy, Debug)]
enum Away {
    /// Its watch stream stays open; events queue up.
    Behind,
    /// etcd restarts: the stream breaks.
    Cut,
    /// More events than etcd buffers for a stalled watcher: etcd stops
    /// sending, and after the compaction the watch can only resume with a
    /// "compacted" error.
    Overflowed,
}

/// Writes (then deletes) more under the prefix than a stalled watch stream
/// can buffer: big values fill the transport buffers, then more revisions
/// than etcd queues per watcher, so that etcd marks the watcher as lagging.
fn overflow_watch(etcd: &Etcd, prefix: &str) -> harness::Result<()> {
    let started = Instant::now();
    // One command-line argument holds at most 128 KiB.
    let big = "x".repeat(120 * 1024);
    for i in 0..100 {
        etcd.etcdctl(&["put", &format!("{prefix}/routes/junk-{i}"), &big])?;
    }
    for i in 0..200 {
        etcd.etcdctl(&["put", &format!("{prefix}/routes/junk-small-{i}"), "x"])?;
    }
    etcd.etcdctl(&["del", "--prefix", &format!("{prefix}/routes/junk-")])?;
    eprintln!("overflowed the watch in {:?}", started.elapsed());
    Ok(())
}

/// Changes the gateway missed while paused (deletions included), then a
/// compaction of their history, then the gateway must end with exactly the stored state.
async fn converges_after_compaction(away: Away) -> harness::Result<()> {
    let mut etcd = Etcd::start().await?;
    let gw = Gateway::start(&etcd).await?;
    let control = Gateway::start_with(
        &etcd,
        GatewayOptions {
            role: "control_plane",
            prefix: gw.prefix().to_owned(),
            ..GatewayOptions::default()
        },
    )
    .await?;
    let (a, b) = (EchoServer::start().await?, EchoServer::start().await?);
    let admin = control.admin();
    admin
        .create_all([
            ("ssls/1", tls_site("test.com")),
            ("routes/1", route_to("/one", &a)),
            ("routes/2", route_to("/two", &a)),
        ])
        .await?;
    until_served_by(&gw, "/one", &a).await?;
    until_served_by(&gw, "/two", &a).await?;
    eventually_status("test.com", 200, || curl_https(&gw, "test.com", "/one", &[])).await?;

    gw.pause();
    match away {
        Away::Behind => {}
        // Closes the paused gateway's watch stream on the server side.
        Away::Cut => etcd.restart().await?,
        Away::Overflowed => overflow_watch(&etcd, gw.prefix())?,
    }
    admin
        .put_until_stored("/apisix/admin/routes/1", route_to("/one", &b))
        .await?;
    admin
        .delete_expecting("/apisix/admin/routes/2", 200)
        .await?;
    admin
        .create_all([
            ("routes/3", route_to("/three", &b)),
            ("routes/4", route_to("/four", &b)),
        ])
        .await?;
    admin
        .delete_expecting("/apisix/admin/routes/4", 200)
        .await?;
    admin.delete_expecting("/apisix/admin/ssls/1", 200).await?;
    admin.create("ssls/2", tls_site("other.com")).await?;
    let compacted = etcd.compact()?;
    eprintln!("compacted at revision {compacted}");
    gw.resume();

    let since = Instant::now();
    until_served_by(&gw, "/one", &b).await?;
    until_served_by(&gw, "/three", &b).await?;
    eventually_status("/two to be gone", 404, || curl_http(&gw, "/two", &[])).await?;
    eventually_status("other.com", 200, || {
        curl_https(&gw, "other.com", "/one", &[])
    })
    .await?;
    eventually_status("test.com to be gone", 0, || {
        curl_https(&gw, "test.com", "/one", &[])
    })
    .await?;
    eprintln!(
        "converged {:?} after the gateway resumed ({away:?})",
        since.elapsed()
    );
    assert_eq!(
        curl_http(&gw, "/four", &[])?.status,
        404,
        "a route created and deleted while away"
    );
    assert_eq!(
        curl_http(&gw, "/two", &[])?.status,
        404,
        "a deletion must stick"
    );
    Ok(())
}

#[tokio::test]
async fn gateway_converges_after_a_compaction_while_its_watch_was_behind() -> harness::Result<()> {
    converges_after_compaction(Away::Behind).await
}

#[tokio::test]
async fn gateway_converges_after_a_compaction_while_its_watch_was_cut() -> harness::Result<()> {
    converges_after_compaction(Away::Cut).await
}

#[tokio::test]
async fn gateway_converges_after_a_compaction_while_its_watch_overflowed() -> harness::Result<()> {
    converges_after_compaction(Away::Overflowed).await
}

#[tokio::test]
async fn invalid_objects_written_into_etcd_by_hand_are_skipped() -> harness::Result<()> {
    let (etcd, mut gw, echo) = start_stack().await?;
    let admin = gw.admin();
    admin.create("routes/1", route_to("/good", &echo)).await?;
    until_served_by(&gw, "/good", &echo).await?;

    // A hand-made copy of a valid object, then garbage next to it.
    let prefix = gw.prefix().to_owned();
    let stored = etcd.etcdctl(&["get", "--print-value-only", &format!("{prefix}/routes/1")])?;
    let mut copy: Value = serde_json::from_str(stored.trim())?;
    copy["id"] = json!("2");
    copy["uri"] = json!("/copy");
    etcd.etcdctl(&["put", &format!("{prefix}/routes/2"), &copy.to_string()])?;
    etcd.etcdctl(&["put", &format!("{prefix}/routes/bad-json"), "{not json"])?;
    etcd.etcdctl(&["put", &format!("{prefix}/routes/bad-regex"), r#"{"id":"bad-regex","uri":"/x","upstream":{"nodes":{"127.0.0.1:1":1},"type":"roundrobin"},"plugins":{"proxy-rewrite":{"regex_uri":["(","/"]}}}"#])?;
    etcd.etcdctl(&[
        "put",
        &format!("{prefix}/ssls/bad"),
        r#"{"id":"bad","sni":"bad.com","cert":"not a pem","key":"nope"}"#,
    ])?;
    until_served_by(&gw, "/copy", &echo).await?;
    assert_eq!(
        curl_http(&gw, "/good", &[])?.status,
        200,
        "the valid objects must stay"
    );

    // The same on a full load.
    gw.restart().await?;
    until_served_by(&gw, "/good", &echo).await?;
    until_served_by(&gw, "/copy", &echo).await?;
    let log = gw.log();
    assert!(
        log.contains("bad-json"),
        "the skipped object must be named in the log:\n{log}"
    );
    Ok(())
}
