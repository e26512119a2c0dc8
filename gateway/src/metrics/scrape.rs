//! What a scrape reads at the moment it is served: connections, etcd, the
//! configuration revisions and what of it cannot serve, node information and
//! certificate expiry.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use shared::state::ConfigState;

use super::{expiry, metrics};
use crate::listener::ConnectionLimit;
use crate::snapshot::Snapshot;
use crate::status::sources::StatusSources;

/// The whole scrape, in the Prometheus text format.
pub(crate) fn render(sources: &StatusSources) -> String {
    let metrics = metrics();
    metrics
        .node_info
        .with_label_values(&[&hostname(), env!("CARGO_PKG_VERSION")])
        .set(1);
    let state = sources
        .data_plane
        .as_ref()
        .and_then(|dp| dp.states.borrow().clone());
    if let Some(dp) = &sources.data_plane {
        let sync = dp.sync.borrow().clone();
        metrics.etcd_reachable.set(i64::from(sync.connected));
        let source = if dp.standalone_file.is_some() {
            "file"
        } else {
            "etcd"
        };
        metrics
            .config_source_error
            .with_label_values(&[source])
            .set(i64::from(sync.last_error.is_some()));
        let revisions = &metrics.config_revision;
        revisions.with_label_values(&["synced"]).set(sync.revision);
        revisions
            .with_label_values(&["applied"])
            .set(dp.snapshot.load().revision);
        unbuildable(&dp.snapshot.load());
        connections(&dp.connections);
        if let Some(state) = &state {
            modify_indexes(state);
        }
    }
    expiry::publish(state.as_deref(), unix_now());
    metrics.encode()
}

/// `portcullis_http_current_connections`: the states of APISIX's metric
/// that a connection cap can tell (nginx's stub_status `active`, `accepted`
/// and `handled`).
fn connections(limit: &ConnectionLimit) {
    let gauge = &metrics().connections;
    let set = |state, n: Option<i64>| gauge.with_label_values(&[state]).set(n.unwrap_or(i64::MAX));
    set("active", i64::try_from(limit.current()).ok());
    set("accepted", i64::try_from(limit.accepted()).ok());
    set("handled", i64::try_from(limit.handled()).ok());
}

/// How many objects cannot serve, per (object, kind); kinds that cleared
/// are dropped, not left at their last count.
fn unbuildable(snapshot: &Snapshot) {
    let gauge = &metrics().config_unbuildable;
    let mut counts: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for item in snapshot.unbuildable() {
        *counts.entry((item.object, item.kind)).or_default() += 1;
    }
    gauge.reset();
    for ((object, kind), count) in counts {
        gauge.with_label_values(&[object, kind]).set(count);
    }
}

/// APISIX's `etcd_modify_indexes`: the highest `mod_revision` per kind.
fn modify_indexes(state: &ConfigState) {
    let gauge = &metrics().etcd_modify_indexes;
    let ssls = state.ssls.values().map(|s| s.mod_revision).max();
    let routes = state.routes.values().map(|s| s.mod_revision).max();
    let upstreams = state.upstreams.values().map(|s| s.mod_revision).max();
    for (key, value) in [("ssls", ssls), ("routes", routes), ("upstreams", upstreams)] {
        gauge.with_label_values(&[key]).set(value.unwrap_or(0));
    }
    gauge
        .with_label_values(&["max_modify_index"])
        .set(ssls.max(routes).max(upstreams).unwrap_or(0));
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
