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
//!
//! The listener ([`serve`], or [`serve_tls`] for HTTPS only, optionally
//! requiring client certificates) and the source-address allow-list
//! (`access`) guard the API before the key is even looked at.

mod access;
mod auth;
mod body;
mod error;
mod handlers;
mod ids;
mod patch;
mod response;
mod scrub;
mod server;
mod tls;
mod write;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{middleware, Router};
use ipnet::IpNet;
use shared::config::AdminKey;
use shared::keyring::Keyring;
use shared::store::Store;

pub use crate::server::{serve, serve_tls, Limits};
pub use crate::tls::AdminTls;

use crate::access::AllowList;
use crate::auth::ApiKeys;
use crate::error::MAX_BODY_BYTES;
use crate::ids::IdGenerator;

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    store: Store,
    keys: ApiKeys,
    allow: AllowList,
    ids: Arc<IdGenerator>,
    /// Seals private keys before they are written; opens them for PATCH.
    keyring: Keyring,
}

impl AdminState {
    /// `keys` are the accepted `X-API-KEY` values (`deployment.admin.keys`).
    pub fn new(store: Store, keys: Vec<AdminKey>) -> Self {
        AdminState {
            store,
            keys: ApiKeys::new(keys),
            allow: AllowList::default(),
            ids: Arc::default(),
            keyring: Keyring::default(),
        }
    }

    /// Only peers in `nets` may use the API (`deployment.admin.allow`);
    /// `None` allows every address.
    pub fn with_allow(mut self, nets: Option<Vec<IpNet>>) -> Self {
        self.allow = AllowList::new(nets);
        self
    }

    /// Private keys are sealed with `keyring` before they reach etcd
    /// (`deployment.data_encryption.keyring`); without one they are stored
    /// as given.
    pub fn with_keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = keyring;
        self
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
        // Outermost: an address outside the allow-list learns nothing more.
        .layer(middleware::from_fn_with_state(
            state.allow.clone(),
            access::require_allowed_peer,
        ))
        .with_state(state)
}
