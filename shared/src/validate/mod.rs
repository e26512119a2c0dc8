//! The one place where untrusted JSON (from the admin API or from etcd)
//! becomes a validated object: the JSON schema first ([`crate::schema`]), then
//! semantic checks (PEM parses, key matches certificate, regexes compile, SNI
//! patterns are well formed, ...). Both the admin API and the etcd watcher
//! call [`validate`], so the gateway never sees an object the admin API would
//! have refused.
//!
//! Checks that need other objects (does `upstream_id` exist? is an upstream
//! still referenced?) are not here: they need the store, and the admin API
//! makes them.

mod error;
mod pattern;
mod route;
mod ssl;
mod upstream;

use std::sync::Arc;

use serde_json::Value;

pub use error::ValidationError;
pub use pattern::{normalize_host, HostPattern, UriPattern};
pub use route::{UpstreamRef, ValidRoute};
pub use ssl::{CertKeyPair, ClientAuth, TlsVersion, ValidSsl};
pub use upstream::{Timeouts, UpstreamNode, ValidUpstream};

use crate::resource::Kind;

/// A validated object of any kind.
#[derive(Clone, Debug)]
pub enum Valid {
    Ssl(Arc<ValidSsl>),
    Route(Arc<ValidRoute>),
    Upstream(Arc<ValidUpstream>),
}

/// Validates `value` as an object of `kind` with the given `id`.
///
/// `value` may carry the read-only fields the admin API maintains (`id`,
/// `create_time`, `update_time`); an `id` inside the body that differs from
/// `id` is refused.
pub fn validate(kind: Kind, id: &str, value: &Value) -> Result<Valid, ValidationError> {
    crate::schema::check(kind, value)?;
    check_id(id, value)?;
    Ok(match kind {
        Kind::Ssls => Valid::Ssl(Arc::new(ssl::validate(id, value)?)),
        Kind::Routes => Valid::Route(Arc::new(route::validate(id, value)?)),
        Kind::Upstreams => Valid::Upstream(Arc::new(upstream::validate(Some(id), value)?)),
    })
}

/// Ids are path segments and etcd key components: keep them boring.
pub fn check_id(id: &str, value: &Value) -> Result<(), ValidationError> {
    let well_formed = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !well_formed {
        return Err(ValidationError::field(
            "id",
            "must be 1-64 characters of [a-zA-Z0-9-_.]",
        ));
    }
    match value.get("id") {
        None => Ok(()),
        Some(Value::String(s)) if s == id => Ok(()),
        Some(Value::Number(n)) if n.to_string() == id => Ok(()),
        Some(_) => Err(ValidationError::field("id", "wrong route id")),
    }
}
