//! What the status endpoints report on, and the `/status` document: read
//! from what the data plane already maintains (also by the metrics scrape).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde_json::{json, Value};
use shared::config::Role;
use shared::state::ConfigState;
use shared::watch::SyncStatus;
use tokio::sync::watch;

use crate::listener::ConnectionLimit;
use crate::snapshot::Snapshot;

/// How long the first snapshot may take to build before the proxy
/// listeners open regardless.
const FIRST_BUILD_TIMEOUT: Duration = Duration::from_secs(30);

/// What the data plane maintains, as the status endpoints read it.
#[derive(Clone)]
pub struct DataPlaneStatus {
    pub states: watch::Receiver<Option<Arc<ConfigState>>>,
    pub sync: watch::Receiver<SyncStatus>,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub connections: Arc<ConnectionLimit>,
    /// The last-known-good cache file, when `deployment.etcd.cache_dir` is set.
    pub cache_path: Option<PathBuf>,
    /// The file followed in standalone mode (no etcd).
    pub standalone_file: Option<PathBuf>,
}

/// Everything the status endpoints report on.
pub struct StatusSources {
    pub role: Role,
    /// `None` for the control plane, which serves no traffic.
    pub data_plane: Option<DataPlaneStatus>,
}

impl StatusSources {
    /// Whether the process can take traffic: the control plane always; a
    /// data plane once a configuration is applied.
    pub fn ready(&self) -> bool {
        self.data_plane
            .as_ref()
            .is_none_or(|dp| dp.sync.borrow().loaded() && dp.snapshot.load().revision > 0)
    }

    /// The `/status` document.
    pub fn report(&self) -> Value {
        let mut report = json!({
            "role": role_name(self.role),
            "ready": self.ready(),
            "stale": false,
            "config": null,
            "etcd": null,
            "cache": null,
            "connections": null,
            "process": { "rss_bytes": rss_bytes() },
        });
        if let Some(dp) = &self.data_plane {
            dp.fill(&mut report);
        }
        report
    }
}

impl DataPlaneStatus {
    /// Resolves once the first configuration is applied, or once there is
    /// none to apply (etcd unreachable at startup, no usable cache). The
    /// proxy listeners open then: a process that shares its ports with its
    /// predecessor (`SO_REUSEPORT`) must not answer 404 for routes it has
    /// not loaded yet.
    pub async fn first_load(&self) {
        let mut sync = self.sync.clone();
        let loaded = match sync.wait_for(SyncStatus::first_load_over).await {
            Ok(status) => status.loaded(),
            Err(_) => return,
        };
        if !loaded {
            return;
        }
        // The snapshot is built from the state on a blocking thread and has
        // no change notification; this runs once, at startup.
        let applied = async {
            while self.snapshot.load().revision == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        if tokio::time::timeout(FIRST_BUILD_TIMEOUT, applied)
            .await
            .is_err()
        {
            tracing::warn!(timeout = ?FIRST_BUILD_TIMEOUT, "the first configuration is not applied yet; opening the listeners anyway");
        }
    }

    fn fill(&self, report: &mut Value) {
        let sync = self.sync.borrow().clone();
        let state = self.states.borrow().clone();
        let counts = |f: fn(&ConfigState) -> usize| state.as_deref().map_or(0, f);
        let invalid: Vec<Value> = state
            .as_deref()
            .map(|s| {
                s.invalid
                    .iter()
                    .map(|(key, reason)| json!({ "key": key, "reason": reason }))
                    .collect()
            })
            .unwrap_or_default();
        let snapshot = self.snapshot.load();
        let unbuildable: Vec<Value> = (snapshot.unbuildable().into_iter())
            .map(|u| json!({ "object": u.object, "id": u.id, "kind": u.kind, "reason": u.reason }))
            .collect();
        report["stale"] = json!(sync.stale());
        report["config"] = json!({
            "source": sync.source.map(|s| s.as_str()),
            "revision": sync.revision,
            "applied_revision": snapshot.revision,
            "ssls": counts(|s| s.ssls.len()),
            "routes": counts(|s| s.routes.len()),
            "upstreams": counts(|s| s.upstreams.len()),
            "invalid": invalid,
            "unbuildable": unbuildable,
        });
        report["etcd"] = json!({
            "connected": sync.connected,
            "last_sync": sync.last_sync.map(rfc3339),
            "last_sync_age_seconds": sync.last_sync.map(age_seconds),
            "last_error": sync.last_error,
        });
        if let Some(path) = &self.standalone_file {
            report["etcd"] = Value::Null;
            report["standalone"] = json!({
                "path": path.display().to_string(),
                "last_load": sync.last_sync.map(rfc3339),
                "last_error": sync.last_error,
            });
        }
        if let Some(path) = &self.cache_path {
            report["cache"] = json!({
                "path": path.display().to_string(),
                "written_revision": sync.cache_revision,
                "last_error": sync.cache_error,
            });
        }
        report["connections"] = json!({
            "current": self.connections.current(),
            "max": self.connections.max(),
            "refused": self.connections.refused(),
        });
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Traditional => "traditional",
        Role::DataPlane => "data_plane",
        Role::ControlPlane => "control_plane",
    }
}

fn rfc3339(at: SystemTime) -> Option<String> {
    let at = time::OffsetDateTime::from(at);
    at.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn age_seconds(at: SystemTime) -> f64 {
    let age = SystemTime::now().duration_since(at).unwrap_or_default();
    (age.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Resident memory of this process (Linux), for spotting leaks from outside.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
