//! The status endpoints on `deployment.status.listen`, for orchestrators and
//! operators, apart from the proxy listeners:
//!
//! * `GET /healthz`: 200 while the process runs;
//! * `GET /readyz`: 200 once a configuration is loaded and applied (from
//!   etcd or from the last-known-good cache), 503 before;
//! * `GET /status`: JSON — role, configuration revision and source, etcd
//!   connection and last sync, staleness, object counts, the objects found
//!   in etcd but refused (with the reason), the routes and upstreams that
//!   cannot serve (with the kind of error and the reason), connections and
//!   the cap;
//! * `GET /metrics` (also `/apisix/prometheus/metrics`): Prometheus metrics
//!   ([`crate::metrics`]).
//!
//! Everything is read from what the data plane already maintains; a status
//! request never touches etcd.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::listener::{bind_socket, ConnectionLimit};
use crate::shutdown::ShutdownSignal;

pub(crate) mod sources;

pub use sources::{DataPlaneStatus, StatusSources};

/// Status connections open at once; more are closed at accept.
const MAX_STATUS_CONNECTIONS: usize = 64;
/// A status client must send its request within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The bound status listener.
pub struct StatusServer {
    socket: TcpListener,
    sources: Arc<StatusSources>,
    limit: Arc<ConnectionLimit>,
}

impl StatusServer {
    /// Binds with `SO_REUSEPORT`, like the proxy listeners, so that a
    /// successor process can start on the same configuration.
    pub async fn bind(addr: &str, sources: StatusSources) -> std::io::Result<StatusServer> {
        Ok(StatusServer {
            socket: bind_socket(addr, true).await?,
            sources: Arc::new(sources),
            limit: ConnectionLimit::new(MAX_STATUS_CONNECTIONS),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.socket.local_addr()
    }

    /// Serves until `shutdown`.
    pub async fn serve(self, shutdown: ShutdownSignal) {
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .keep_alive(false);
        let http = Arc::new(http);
        let stop = shutdown.fired();
        tokio::pin!(stop);
        loop {
            let tcp = tokio::select! {
                _ = &mut stop => return,
                accepted = self.socket.accept() => match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(err) => {
                        tracing::warn!(%err, "status listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Some(permit) = self.limit.admit() else {
                continue;
            };
            let (sources, http) = (Arc::clone(&self.sources), Arc::clone(&http));
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let response = respond(&sources, &req);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                drop(permit);
            });
        }
    }
}

fn respond<B>(sources: &StatusSources, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if sources.ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no configuration loaded yet\n",
        ),
        "/status" => {
            let mut body = sources.report().to_string();
            body.push('\n');
            let mut response = text(StatusCode::OK, body);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            response
        }
        "/metrics" | "/apisix/prometheus/metrics" => {
            let mut response = text(StatusCode::OK, crate::metrics::scrape::render(sources));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz, /status or /metrics\n",
        ),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::time::SystemTime;

    use super::*;
    use arc_swap::ArcSwap;
    use serde_json::{json, Value};
    use shared::config::Role;
    use shared::state::ConfigState;
    use shared::validate::{validate, Valid};
    use shared::watch::SyncStatus;
    use shared::Kind;
    use tokio::sync::watch;

    use crate::router::RouteTable;
    use crate::snapshot::Snapshot;
    use shared::watch::Source;

    fn data_plane(sync: SyncStatus, state: Option<ConfigState>, applied: i64) -> StatusSources {
        let mut snapshot = Snapshot::empty(None);
        snapshot.revision = applied;
        StatusSources {
            role: Role::DataPlane,
            data_plane: Some(DataPlaneStatus {
                states: watch::channel(state.map(Arc::new)).1,
                sync: watch::channel(sync).1,
                snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
                connections: ConnectionLimit::new(5),
                cache_path: Some(PathBuf::from("/var/cache/p.json")),
                standalone_file: None,
            }),
        }
    }

    fn get(sources: &StatusSources, path: &str) -> Response<Full<Bytes>> {
        respond(sources, &Request::get(path).body(()).expect("request"))
    }

    #[test]
    fn not_ready_before_a_configuration_is_applied() {
        let sources = data_plane(SyncStatus::default(), None, 0);
        assert_eq!(get(&sources, "/healthz").status(), StatusCode::OK);
        assert_eq!(
            get(&sources, "/readyz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let report = sources.report();
        assert_eq!(report["ready"], false);
        assert_eq!(report["stale"], false);
        assert_eq!(report["config"]["source"], Value::Null);
    }

    #[test]
    fn a_cached_configuration_is_ready_and_stale() {
        let sync = SyncStatus {
            source: Some(Source::Cache),
            revision: 7,
            last_error: Some("etcd unavailable".into()),
            ..SyncStatus::default()
        };
        let mut state = ConfigState {
            revision: 7,
            ..ConfigState::default()
        };
        state
            .invalid
            .insert("/p/routes/9".into(), "uri: required".into());
        let sources = data_plane(sync, Some(state), 7);
        assert_eq!(get(&sources, "/readyz").status(), StatusCode::OK);
        let report = sources.report();
        assert_eq!(report["role"], "data_plane");
        assert_eq!(report["stale"], true);
        assert_eq!(report["config"]["source"], "cache");
        assert_eq!(report["config"]["applied_revision"], 7);
        assert_eq!(report["config"]["invalid"][0]["key"], "/p/routes/9");
        assert_eq!(report["config"]["invalid"][0]["reason"], "uri: required");
        assert_eq!(report["etcd"]["connected"], false);
        assert_eq!(report["connections"]["max"], 5);
        assert_eq!(report["cache"]["path"], "/var/cache/p.json");
    }

    #[test]
    fn objects_that_cannot_serve_are_listed_with_the_kind_of_their_error() {
        let valid = |kind, id: &str, value: Value| match validate(kind, id, &value) {
            Ok(valid) => valid,
            Err(err) => panic!("{id}: {err}"),
        };
        let Valid::Route(route) = valid(
            Kind::Routes,
            "r1",
            json!({"uri": "/a", "upstream_id": "gone"}),
        ) else {
            panic!("not a route")
        };
        let Valid::Upstream(upstream) = valid(
            Kind::Upstreams,
            "u1",
            json!({"nodes": {"b.internal:443": 1}, "scheme": "https", "tls": {"client_cert_id": "gone"}}),
        ) else {
            panic!("not an upstream")
        };
        let mut snapshot = Snapshot::empty(None);
        snapshot.revision = 3;
        snapshot.routes = RouteTable::build(&[route], &BTreeMap::from([("u1".into(), upstream)]));
        let sources = data_plane(SyncStatus::default(), None, 3);
        let dp = sources.data_plane.as_ref().expect("a data plane");
        dp.snapshot.store(Arc::new(snapshot));
        let unbuildable = &sources.report()["config"]["unbuildable"];
        assert_eq!(unbuildable[0]["object"], "route");
        assert_eq!(unbuildable[0]["id"], "r1");
        assert_eq!(unbuildable[0]["kind"], "upstream_missing");
        assert_eq!(
            unbuildable[0]["reason"],
            "upstream_id \"gone\" does not exist"
        );
        assert_eq!(unbuildable[1]["object"], "upstream");
        assert_eq!(unbuildable[1]["id"], "u1");
        assert_eq!(unbuildable[1]["kind"], "upstream_tls");
        assert!(unbuildable[1]["reason"].as_str().unwrap().contains("gone"));
        assert_eq!(unbuildable.as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn reports_the_last_sync_time() {
        let at = SystemTime::now() - Duration::from_secs(2);
        let sync = SyncStatus {
            connected: true,
            source: Some(Source::Etcd),
            revision: 3,
            last_sync: Some(at),
            ..SyncStatus::default()
        };
        let report = data_plane(sync, Some(ConfigState::default()), 3).report();
        let age = report["etcd"]["last_sync_age_seconds"]
            .as_f64()
            .expect("age");
        assert!((1.9..10.0).contains(&age), "{age}");
        assert!(report["etcd"]["last_sync"]
            .as_str()
            .expect("time")
            .ends_with('Z'));
    }

    #[test]
    fn a_standalone_data_plane_reports_its_file_not_etcd() {
        let sync = SyncStatus {
            source: Some(Source::File),
            revision: 2,
            last_sync: Some(SystemTime::now()),
            last_error: Some("apisix.yaml: missing valid end flag".into()),
            ..SyncStatus::default()
        };
        let mut sources = data_plane(sync, Some(ConfigState::default()), 2);
        if let Some(dp) = sources.data_plane.as_mut() {
            dp.cache_path = None;
            dp.standalone_file = Some(PathBuf::from("/etc/portcullis/apisix.yaml"));
        }
        let report = sources.report();
        assert_eq!(report["etcd"], Value::Null);
        assert_eq!(report["config"]["source"], "file");
        assert_eq!(report["standalone"]["path"], "/etc/portcullis/apisix.yaml");
        assert_eq!(
            report["standalone"]["last_error"],
            "apisix.yaml: missing valid end flag"
        );
        assert_eq!(
            report["stale"], true,
            "the file's latest version is refused"
        );
    }

    #[test]
    fn only_get_is_served() {
        let sources = StatusSources {
            role: Role::ControlPlane,
            data_plane: None,
        };
        assert_eq!(
            get(&sources, "/readyz").status(),
            StatusCode::OK,
            "a control plane has nothing to load"
        );
        assert_eq!(get(&sources, "/nope").status(), StatusCode::NOT_FOUND);
        let post = respond(
            &sources,
            &Request::post("/status").body(()).expect("request"),
        );
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
