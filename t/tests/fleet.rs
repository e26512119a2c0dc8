//! A fleet on a 3-member etcd cluster: one control plane, two data planes.
//! How fast an admin write reaches every data plane, that data planes never
//! write to etcd, and that they keep following etcd when the member they
//! watch goes away.

use std::time::{Duration, Instant};

use harness::fixtures::{until_etcd_connected, PROPAGATION_TIMEOUT};
use harness::load::{http_get, percentile, Load, Target};
use harness::{EchoServer, Fleet, Gateway};
use serde_json::{json, Value};
use tokio::net::TcpStream;

/// Admin writes timed to both data planes (the issue asks for at least 100).
const UPDATES: usize = 100;
/// Admin writes that must all succeed while one etcd member is down.
const WRITES_WITH_A_MEMBER_DOWN: usize = 20;

fn route(uri: &str, echo: &EchoServer) -> Value {
    json!({ "uri": uri, "upstream": { "type": "roundrobin", "nodes": { echo.node(): 1 } } })
}

/// The time from `began` until `gw` answers `GET path` with 200.
async fn served_since(gw: &Gateway, path: &str, began: Instant) -> harness::Result<Duration> {
    loop {
        if matches!(http_get(gw.http_addr(), path).await, Ok((200, _))) {
            return Ok(began.elapsed());
        }
        if began.elapsed() > PROPAGATION_TIMEOUT {
            anyhow::bail!("{path} not served within {PROPAGATION_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// When both data planes serve `path`, counted from `began`.
async fn served_by_both(fleet: &Fleet, path: &str, began: Instant) -> harness::Result<Duration> {
    let (a, b) = tokio::join!(
        served_since(&fleet.data[0], path, began),
        served_since(&fleet.data[1], path, began)
    );
    Ok(a?.max(b?))
}

#[tokio::test]
async fn admin_writes_reach_both_data_planes_quickly() -> harness::Result<()> {
    let fleet = Fleet::start(2).await?;
    let echo = EchoServer::start().await?;
    let admin = fleet.admin();
    admin
        .put_until_stored("/apisix/admin/routes/prop", route("/prop/first", &echo))
        .await?;
    fleet
        .until_all_answer("/prop/first", 200, PROPAGATION_TIMEOUT)
        .await?;

    let (mut to_both, mut acks) = (Vec::new(), Vec::new());
    for i in 0..UPDATES {
        let path = format!("/prop/{i}");
        let began = Instant::now();
        let reply = admin
            .put("/apisix/admin/routes/prop", route(&path, &echo))
            .await?;
        assert_eq!(reply.status, 200, "update {i}: {}", reply.text);
        acks.push(began.elapsed());
        to_both.push(served_by_both(&fleet, &path, began).await?);
    }
    to_both.sort_unstable();
    acks.sort_unstable();
    eprintln!(
        "propagation from admin PUT to both data planes serving it, {UPDATES} updates: p50 {:?}, p99 {:?}, max {:?} (admin PUT acknowledged: p50 {:?}, p99 {:?})",
        percentile(&to_both, 50.0),
        percentile(&to_both, 99.0),
        to_both[to_both.len() - 1],
        percentile(&acks, 50.0),
        percentile(&acks, 99.0),
    );
    assert!(
        percentile(&to_both, 99.0) < Duration::from_secs(2),
        "p99 propagation to both data planes must stay under 2 s"
    );
    Ok(())
}

#[tokio::test]
async fn data_planes_never_write_to_etcd() -> harness::Result<()> {
    let mut fleet = Fleet::start(2).await?;
    let echo = EchoServer::start().await?;
    fleet
        .admin()
        .put_until_stored("/apisix/admin/routes/1", route("/anything", &echo))
        .await?;
    fleet
        .until_all_answer("/anything", 200, PROPAGATION_TIMEOUT)
        .await?;

    for (n, dp) in fleet.data.iter().enumerate() {
        let config = std::fs::read_to_string(dp.config_path())?;
        assert!(
            !config.contains("admin:"),
            "data plane {n} is configured without an admin API:\n{config}"
        );
        assert!(
            TcpStream::connect(dp.admin_addr()).await.is_err(),
            "data plane {n} must not open an admin listener"
        );
    }

    let before = fleet.etcd.revision()?;
    // Traffic, a data plane restart (its startup reads everything) and an
    // etcd member restart (the data planes reconnect): reads, only reads.
    let target = Target::Http {
        addr: fleet.data[0].http_addr(),
        path: "/anything".into(),
    };
    let load = Load::start(target, 100, 2)?;
    fleet.data[1].restart().await?;
    fleet.etcd.stop(0).await;
    fleet.etcd.start_member(0).await?;
    fleet
        .until_all_answer("/anything", 200, PROPAGATION_TIMEOUT)
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = load.finish().await;
    report.assert_no_failure("data planes through a restart and an etcd member restart");

    let after = fleet.etcd.revision()?;
    let leases = fleet.etcd.etcdctl(&["lease", "list"])?;
    eprintln!(
        "data planes: {} requests, one restart, one etcd member restart; etcd revision {before} -> {after}; leases: {}",
        report.sent,
        leases.trim()
    );
    assert_eq!(before, after, "a data plane wrote to etcd");
    assert!(
        !leases.lines().skip(1).any(|l| !l.trim().is_empty()),
        "a data plane granted an etcd lease: {leases}"
    );
    for dp in &fleet.data {
        assert_eq!(dp.status().await?["config"]["revision"], json!(before));
    }
    Ok(())
}

/// Which members serve the data planes' watch streams.
async fn watch_streams(fleet: &Fleet) -> harness::Result<Vec<u64>> {
    let mut streams = Vec::new();
    for index in 0..fleet.etcd.size() {
        let count = if fleet.etcd.running().contains(&index) {
            fleet.etcd.watch_streams(index).await?
        } else {
            0
        };
        streams.push(count);
    }
    Ok(streams)
}

#[tokio::test]
async fn data_planes_fail_over_to_the_other_etcd_members() -> harness::Result<()> {
    let mut fleet = Fleet::start(2).await?;
    let echo = EchoServer::start().await?;
    let admin = fleet.admin();
    admin
        .put_until_stored("/apisix/admin/routes/1", route("/v0", &echo))
        .await?;
    fleet
        .until_all_answer("/v0", 200, PROPAGATION_TIMEOUT)
        .await?;

    for round in 1..=2 {
        let streams = watch_streams(&fleet).await?;
        // The member that serves the most watch streams: a data plane's.
        let victim = (0..streams.len()).max_by_key(|&i| streams[i]).unwrap_or(0);
        assert!(
            streams[victim] > 0,
            "round {round}: no member serves a watch stream: {streams:?}"
        );
        fleet.etcd.stop(victim).await;
        let began = Instant::now();
        let path = format!("/v{round}");
        let attempts = admin
            .put_until_stored("/apisix/admin/routes/1", route(&path, &echo))
            .await?;
        let served = served_by_both(&fleet, &path, began).await?;
        // Every call that lands on the stopped member must go to another one.
        for i in 0..WRITES_WITH_A_MEMBER_DOWN {
            let reply = admin
                .put(
                    &format!("/apisix/admin/routes/down-{i}"),
                    route("/down", &echo),
                )
                .await?;
            assert!(
                reply.status == 200 || reply.status == 201,
                "round {round}: write {i} with member {victim} down answered {}: {}",
                reply.status,
                reply.text
            );
        }
        for (n, dp) in fleet.data.iter().enumerate() {
            until_etcd_connected(dp, &format!("data plane {n} to follow etcd again")).await?;
        }
        let after = watch_streams(&fleet).await?;
        eprintln!(
            "failover round {round}: watch streams per member {streams:?}; stopped member {victim}; \
             the write took {attempts} attempt(s); both data planes served it after {served:?}; \
             {WRITES_WITH_A_MEMBER_DOWN} more writes all acknowledged; watch streams now {after:?}"
        );
        fleet.etcd.start_member(victim).await?;
    }
    Ok(())
}
