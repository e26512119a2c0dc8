//! The Portcullis control plane: the APISIX-compatible admin API.
//!
//! This crate owns the HTTP side of configuration: authentication with
//! `X-API-KEY`, the `ssls`, `routes` and `upstreams` endpoints under
//! `/apisix/admin/` and `/admin/`, the checks that need the store (does a
//! route's `upstream_id` exist? is an upstream still in use?), and the
//! APISIX-shaped answers, which never contain a private key.
//!
//! It owns no model: every object is validated by [`shared::validate`], the
//! same code the gateway's etcd watcher runs, and stored through
//! [`shared::store::Store`].

mod auth;
mod body;
mod error;
mod handlers;
mod ids;
mod patch;
mod response;
mod write;

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{middleware, Router};
use shared::config::AdminKey;
use shared::store::Store;
use tokio::net::TcpListener;

use crate::auth::KeyRing;
use crate::error::MAX_BODY_BYTES;
use crate::ids::IdGenerator;

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    store: Store,
    keys: KeyRing,
    ids: Arc<IdGenerator>,
}

impl AdminState {
    /// `keys` are the accepted `X-API-KEY` values (`deployment.admin.keys`).
    pub fn new(store: Store, keys: Vec<AdminKey>) -> Self {
        AdminState {
            store,
            keys: KeyRing::new(keys),
            ids: Arc::default(),
        }
    }
}

/// The admin API, served under both `/apisix/admin` and `/admin`.
pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/{resource}", get(handlers::list).post(handlers::post))
        .route(
            "/{resource}/{id}",
            get(handlers::get)
                .put(handlers::put)
                .patch(handlers::patch)
                .delete(handlers::delete),
        )
        .method_not_allowed_fallback(handlers::no_such_method);
    Router::new()
        .nest("/apisix/admin", api.clone())
        .nest("/admin", api)
        .fallback(handlers::no_such_path)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            state.keys.clone(),
            auth::require_api_key,
        ))
        .with_state(state)
}

/// Serves the admin API on `listener` until `shutdown` completes, then lets
/// in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
