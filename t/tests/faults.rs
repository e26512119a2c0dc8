//! etcd cluster faults while traffic flows through a data plane: the leader
//! killed, every member stopped, compaction and defragmentation during a
//! watch, a restore from a snapshot. Traffic must not notice, and no admin
//! write that was acknowledged may be lost.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::fixtures::{route_to, until_etcd_connected, until_served_by, PROPAGATION_TIMEOUT};
use harness::load::{http_get, Load, Target};
use harness::{wait_until, AdminClient, EchoServer, Fleet, Gateway};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

/// Requests per second through the data plane during a fault.
const LOAD_RATE: u32 = 200;
/// How long an admin write may take to answer while etcd is entirely down.
const OUTAGE_ANSWER_LIMIT: Duration = Duration::from_secs(2);

/// Stores route `routes/{i}` for `{dir}/{i}` to `echo`, for each `i` in `ids`.
async fn put_routes(
    admin: &AdminClient,
    ids: Range<usize>,
    dir: &str,
    echo: &EchoServer,
) -> harness::Result<()> {
    for i in ids {
        admin
            .put_until_stored(
                &format!("/apisix/admin/routes/{i}"),
                route_to(&format!("{dir}/{i}"), echo),
            )
            .await?;
    }
    Ok(())
}

/// Load on the data plane's plain HTTP listener.
fn load_on(gw: &Gateway, path: &str) -> harness::Result<Load> {
    let target = Target::Http {
        addr: gw.http_addr(),
        path: path.into(),
    };
    Load::start(target, LOAD_RATE, 4)
}

/// One admin write issued by [`Writer`].
#[derive(Debug)]
struct Write {
    uri: String,
    status: u16,
    took: Duration,
}

/// Admin writes (each a new route) issued one after the other until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    task: JoinHandle<harness::Result<Vec<Write>>>,
}

impl Writer {
    fn start(admin: AdminClient, echo_node: String) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut writes = Vec::new();
            for i in 0.. {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let uri = format!("/w/{i}");
                let body = json!({
                    "uri": uri,
                    "upstream": { "type": "roundrobin", "nodes": { echo_node.as_str(): 1 } }
                });
                let began = Instant::now();
                let reply = admin
                    .put(&format!("/apisix/admin/routes/w-{i}"), body)
                    .await?;
                writes.push(Write {
                    uri,
                    status: reply.status,
                    took: began.elapsed(),
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(writes)
        });
        Writer { stop, task }
    }

    async fn finish(self) -> harness::Result<Vec<Write>> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await?
    }
}

#[tokio::test]
async fn killing_the_etcd_leader_fails_no_request_and_loses_no_acknowledged_write(
) -> harness::Result<()> {
    let mut fleet = Fleet::start(1).await?;
    let echo = EchoServer::start().await?;
    let admin = fleet.admin();
    admin
        .put_until_stored("/apisix/admin/routes/1", route_to("/anything", &echo))
        .await?;
    until_served_by(&fleet.data[0], "/anything", &echo).await?;

    let load = load_on(&fleet.data[0], "/anything")?;
    let writer = Writer::start(admin.clone(), echo.node());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let leader = fleet.etcd.leader()?;
    fleet.etcd.kill(leader);
    let killed = Instant::now();
    let new_leader = fleet.etcd.wait_for_leader(Duration::from_secs(15)).await?;
    let election = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes = writer.finish().await?;
    let report = load.finish().await;

    let acknowledged: Vec<&Write> = writes
        .iter()
        .filter(|w| w.status == 200 || w.status == 201)
        .collect();
    let refused = writes.iter().filter(|w| w.status == 503).count();
    let slowest = writes.iter().map(|w| w.took).max().unwrap_or_default();
    eprintln!(
        "leader (member {leader}) killed with SIGKILL; member {new_leader} elected within {election:?}; \
         admin writes: {} acknowledged, {refused} answered 503, slowest answer {slowest:?}",
        acknowledged.len()
    );
    report.assert_no_failure("leader killed");
    for write in &writes {
        assert!(
            matches!(write.status, 200 | 201 | 503),
            "a write during the election may only succeed or answer 503: {write:?}"
        );
    }
    assert!(
        acknowledged.len() > 10,
        "writes must go on after the election: {writes:?}"
    );
    for write in acknowledged {
        fleet
            .until_all_answer(&write.uri, 200, PROPAGATION_TIMEOUT)
            .await?;
    }
    Ok(())
}

#[tokio::test]
async fn with_every_etcd_member_down_traffic_goes_on_and_admin_writes_fail_fast(
) -> harness::Result<()> {
    let mut fleet = Fleet::start(1).await?;
    let (a, b) = (EchoServer::start().await?, EchoServer::start().await?);
    let admin = fleet.admin();
    admin
        .put_until_stored("/apisix/admin/routes/1", route_to("/anything", &a))
        .await?;
    until_served_by(&fleet.data[0], "/anything", &a).await?;
    let pid = fleet.data[0].pid();

    let load = load_on(&fleet.data[0], "/anything")?;
    fleet.etcd.stop_all().await;
    let dp = &fleet.data[0];
    wait_until(
        "the data plane to report stale",
        PROPAGATION_TIMEOUT,
        || async {
            dp.status()
                .await
                .is_ok_and(|s| s["stale"] == true && s["etcd"]["connected"] == false)
        },
    )
    .await?;
    let mut slowest = Duration::ZERO;
    for i in 0..3 {
        let began = Instant::now();
        let reply = admin
            .put("/apisix/admin/routes/1", route_to("/anything", &b))
            .await?;
        let took = began.elapsed();
        slowest = slowest.max(took);
        assert_eq!(reply.status, 503, "write {i} without etcd: {}", reply.text);
        assert!(
            took < OUTAGE_ANSWER_LIMIT,
            "write {i} without etcd took {took:?}"
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let back = Instant::now();
    fleet.etcd.start_all().await?;
    let healthy = back.elapsed();
    let dp = &fleet.data[0];
    until_etcd_connected(dp, "the data plane to follow etcd again").await?;
    let resynced = back.elapsed();
    admin
        .put_until_stored("/apisix/admin/routes/1", route_to("/anything", &b))
        .await?;
    until_served_by(&fleet.data[0], "/anything", &b).await?;
    let serving_new = back.elapsed();
    let report = load.finish().await;

    eprintln!(
        "all etcd members stopped: admin writes answered 503 within {slowest:?}; counted from \
         the members' restart: healthy after {healthy:?}, the data plane resynced after \
         {resynced:?} and served a new write after {serving_new:?}"
    );
    report.assert_no_failure("every etcd member down");
    assert_eq!(
        fleet.data[0].pid(),
        pid,
        "the data plane resynced without a restart"
    );
    assert!(
        fleet.data[0].last_exit().is_none(),
        "the data plane kept running"
    );
    Ok(())
}

/// The routes stored in etcd under `prefix`, as `(id, uri)`.
fn stored_routes(fleet: &Fleet, prefix: &str) -> harness::Result<Vec<(String, String)>> {
    let out = fleet
        .etcd
        .etcdctl(&["get", "--prefix", &format!("{prefix}/routes/")])?;
    let lines: Vec<&str> = out.lines().collect();
    let mut routes = Vec::new();
    for pair in lines.chunks(2) {
        if let [key, value] = pair {
            let value: Value = serde_json::from_str(value)?;
            let id = key.rsplit('/').next().unwrap_or_default().to_owned();
            routes.push((id, value["uri"].as_str().unwrap_or_default().to_owned()));
        }
    }
    Ok(routes)
}

/// The data plane serves exactly the stored routes: each stored URI, none of
/// `gone`, the stored count and revision.
async fn serves_exactly(
    gw: &Gateway,
    stored: &[(String, String)],
    gone: &[String],
    revision: i64,
) -> harness::Result<()> {
    wait_until(
        "the data plane to reach the stored revision",
        PROPAGATION_TIMEOUT,
        || async {
            gw.status()
                .await
                .is_ok_and(|s| s["config"]["applied_revision"] == json!(revision))
        },
    )
    .await?;
    let status = gw.status().await?;
    assert_eq!(
        status["config"]["routes"],
        json!(stored.len()),
        "{status:#}"
    );
    for (id, uri) in stored {
        let (code, _) = http_get(gw.http_addr(), uri).await?;
        assert_eq!(code, 200, "stored route {id} ({uri})");
    }
    for uri in gone {
        let (code, _) = http_get(gw.http_addr(), uri).await?;
        assert_eq!(code, 404, "{uri} was deleted before the compaction");
    }
    Ok(())
}

#[tokio::test]
async fn compaction_and_defrag_during_a_watch_leave_exactly_the_stored_state() -> harness::Result<()>
{
    let mut fleet = Fleet::start(2).await?;
    let echo = EchoServer::start().await?;
    let admin = fleet.admin();
    let prefix = fleet.control.prefix().to_owned();
    put_routes(&admin, 0..20, "/c", &echo).await?;
    fleet
        .until_all_answer("/c/19", 200, PROPAGATION_TIMEOUT)
        .await?;

    // Data plane 0 keeps watching under load; data plane 1 is frozen and its
    // watch stream cut (every member serving a watch restarts), so it must
    // relist once it runs again.
    let load = load_on(&fleet.data[0], "/c/0")?;
    fleet.data[1].pause();
    let mut cut = Vec::new();
    for member in 0..fleet.etcd.size() {
        if fleet.etcd.watch_streams(member).await? > 0 {
            fleet.etcd.stop(member).await;
            fleet.etcd.start_member(member).await?;
            cut.push(member);
        }
    }
    assert!(
        !cut.is_empty(),
        "no etcd member served a watch stream, so no watch was cut"
    );

    put_routes(&admin, 1..5, "/c2", &echo).await?;
    put_routes(&admin, 20..25, "/c", &echo).await?;
    // Deletions just before the compaction: their events are compacted away.
    let mut gone: Vec<String> = (1..5).map(|i| format!("/c/{i}")).collect();
    for i in 10..20 {
        assert_eq!(
            admin
                .delete(&format!("/apisix/admin/routes/{i}"))
                .await?
                .status,
            200
        );
        gone.push(format!("/c/{i}"));
    }
    let began = Instant::now();
    let compacted = fleet.etcd.compact()?;
    fleet.etcd.defrag()?;
    let maintenance = began.elapsed();
    // And changes right after it.
    assert_eq!(admin.delete("/apisix/admin/routes/20").await?.status, 200);
    gone.push("/c/20".into());
    admin
        .put_until_stored("/apisix/admin/routes/25", route_to("/c/25", &echo))
        .await?;
    fleet.data[1].resume();
    let resumed = Instant::now();

    let stored = stored_routes(&fleet, &prefix)?;
    let revision = fleet.etcd.revision()?;
    serves_exactly(&fleet.data[0], &stored, &gone, revision).await?;
    serves_exactly(&fleet.data[1], &stored, &gone, revision).await?;
    let converged = resumed.elapsed();
    let report = load.finish().await;
    eprintln!(
        "watch streams cut on members {cut:?}; \
         compacted at revision {compacted} and defragmented 3 members in {maintenance:?}; \
         both data planes hold exactly the {} stored routes at revision {revision} \
         ({converged:?} after the frozen one resumed)",
        stored.len()
    );
    report.assert_no_failure("compaction + defrag");
    Ok(())
}

#[tokio::test]
async fn restoring_etcd_from_a_snapshot_takes_the_data_planes_back_to_it() -> harness::Result<()> {
    let mut fleet = Fleet::start(1).await?;
    let (a, b) = (EchoServer::start().await?, EchoServer::start().await?);
    let admin = fleet.admin();
    admin
        .put_until_stored("/apisix/admin/routes/1", route_to("/one", &a))
        .await?;
    admin
        .put_until_stored("/apisix/admin/routes/2", route_to("/two", &a))
        .await?;
    until_served_by(&fleet.data[0], "/two", &a).await?;
    let snapshot_dir = tempfile::tempdir()?;
    let snapshot = snapshot_dir.path().join("portcullis.db");
    fleet.etcd.snapshot_save(&snapshot)?;
    let saved_revision = fleet.etcd.revision()?;

    // Life goes on after the backup: changes, a deletion, many revisions.
    admin
        .put_until_stored("/apisix/admin/routes/1", route_to("/one", &b))
        .await?;
    assert_eq!(admin.delete("/apisix/admin/routes/2").await?.status, 200);
    for i in 0..10 {
        admin
            .put_until_stored(
                "/apisix/admin/routes/3",
                route_to(&format!("/three/{i}"), &b),
            )
            .await?;
    }
    fleet
        .until_all_answer("/three/9", 200, PROPAGATION_TIMEOUT)
        .await?;
    until_served_by(&fleet.data[0], "/one", &b).await?;
    let before_restore = fleet.etcd.revision()?;

    let load = load_on(&fleet.data[0], "/one")?;
    let began = Instant::now();
    fleet.etcd.restore(&snapshot).await?;
    let restored_revision = fleet.etcd.revision()?;
    let restored = began.elapsed();
    let dp = &fleet.data[0];
    until_served_by(dp, "/one", &a).await?;
    until_served_by(dp, "/two", &a).await?;
    fleet
        .until_all_answer("/three/9", 404, PROPAGATION_TIMEOUT)
        .await?;
    let resynced = began.elapsed();
    let status = dp.status().await?;
    let report = load.finish().await;

    eprintln!(
        "etcd restored from a snapshot (revision {before_restore} -> {restored_revision}) in {restored:?}; \
         the data plane served the restored state {resynced:?} after the restore began"
    );
    assert_eq!(
        restored_revision, saved_revision,
        "the restore went back to the snapshot"
    );
    assert_eq!(
        status["config"]["revision"],
        json!(restored_revision),
        "{status:#}"
    );
    assert!(
        dp.log().contains("revision went backwards"),
        "the data plane must notice the restore"
    );
    // Traffic during the restore hits /one, whose upstream changes back: both answer 200.
    report.assert_no_failure("restore from a snapshot");

    // The control plane writes to the restored cluster, the data plane follows.
    admin
        .put_until_stored("/apisix/admin/routes/4", route_to("/four", &b))
        .await?;
    until_served_by(&fleet.data[0], "/four", &b).await?;
    Ok(())
}

#[tokio::test]
async fn admin_writes_ride_out_an_etcd_leader_election() -> harness::Result<()> {
    let mut fleet = Fleet::start(1).await?;
    let echo = EchoServer::start().await?;
    let admin = fleet.admin();
    until_etcd_connected(&fleet.data[0], "the data plane").await?;

    let mut writes = Vec::new();
    let mut killed = None;
    for i in 0..20 {
        if i == 5 {
            let leader = fleet.etcd.leader()?;
            fleet.etcd.kill(leader);
            killed = Some((leader, Instant::now()));
        }
        let uri = format!("/e/{i}");
        let began = Instant::now();
        let reply = admin
            .put(
                &format!("/apisix/admin/routes/e-{i}"),
                route_to(&uri, &echo),
            )
            .await?;
        writes.push(Write {
            uri,
            status: reply.status,
            took: began.elapsed(),
        });
        assert!(
            matches!(reply.status, 200 | 201),
            "PUT {i} during the election: {}",
            reply.text
        );
    }
    let (leader, at) = killed.expect("killed");
    let new_leader = fleet.etcd.wait_for_leader(Duration::from_secs(15)).await?;
    let slowest = writes.iter().map(|w| w.took).max().unwrap_or_default();
    eprintln!(
        "leader (member {leader}) SIGKILLed before PUT 5; member {new_leader} leads; \
         20 of 20 PUTs acknowledged in {:?}, slowest {slowest:?}",
        at.elapsed()
    );
    for write in &writes {
        fleet
            .until_all_answer(&write.uri, 200, PROPAGATION_TIMEOUT)
            .await?;
    }
    Ok(())
}
