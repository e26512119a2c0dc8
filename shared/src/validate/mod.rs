//! The one place where untrusted JSON (from the admin API or from etcd)
//! becomes a validated object: the JSON schema first ([`crate::schema`], and
//! each plugin's own from [`crate::plugins`]), then semantic checks (PEM parses, key matches certificate, regexes compile, SNI
//! patterns are well formed, ...). Both the admin API and the etcd watcher
//! call [`validate`], so the gateway never sees an object the admin API would
//! have refused.
//!
//! Checks that need other objects (does `upstream_id` exist? is an upstream
//! still referenced?) are not here: they need the store, and the admin API
//! makes them.

mod cert_key_pair;
mod ocsp_stapling;
mod pattern;
mod route;
mod ssl;
mod upstream;

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use crate::client_chain::OnlineRevocation;
pub use crate::client_chain::Revocation;
pub use crate::error::ValidationError;
pub use crate::plugins::client_cert_auth::{
    CertEncoding, CertHeader, ClientCertAuth, Requirement, CLIENT_CERT_AUTH,
};
pub use crate::plugins::{PluginConfig, PluginConfigs};
pub use cert_key_pair::CertKeyPair;
pub use ocsp_stapling::OcspStapling;
pub use pattern::{normalize_host, HostPattern, UriPattern};
pub use route::{UpstreamRef, ValidRoute};
pub use ssl::{ClientAuth, TlsVersion, ValidSsl};
pub use upstream::{
    ClientIdentity, Timeouts, Trust, UpstreamNode, UpstreamTlsPolicy, ValidUpstream,
};

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
    if let (Kind::Routes, Some(Value::Object(plugins))) = (kind, value.get("plugins")) {
        crate::plugins::check_schemas(plugins)?;
    }
    check_id(id)?;
    check_body_id(id, value)?;
    Ok(match kind {
        Kind::Ssls => Valid::Ssl(Arc::new(ssl::validate(id, value)?)),
        Kind::Routes => Valid::Route(Arc::new(route::validate(id, value)?)),
        Kind::Upstreams => Valid::Upstream(Arc::new(upstream::validate(Some(id), value)?)),
    })
}

/// Ids are path segments and etcd key components: keep them boring.
pub fn check_id(id: &str) -> Result<(), ValidationError> {
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
    Ok(())
}

/// An `id` inside the body, if any, must be the object's own.
fn check_body_id(id: &str, value: &Value) -> Result<(), ValidationError> {
    match value.get("id") {
        None => Ok(()),
        Some(Value::String(s)) if s == id => Ok(()),
        Some(Value::Number(n)) if n.to_string() == id => Ok(()),
        Some(_) => Err(ValidationError::field(
            "id",
            "the id in the body does not match the id in the URL",
        )),
    }
}

/// A setting given as one value (`uri`) or as a list (`uris`), not both;
/// `None` when neither is given. Each entry is parsed, and an error names
/// the entry (`uris[2]`).
fn one_or_many<T>(
    (one_name, one): (&str, Option<&str>),
    (many_name, many): (&str, Option<&[String]>),
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<Vec<T>>, ValidationError> {
    let parsed = |field: String, raw: &str| {
        parse(raw).map_err(|reason| ValidationError::field(field, reason))
    };
    match (one, many) {
        (Some(_), Some(_)) => Err(ValidationError::field(
            one_name,
            format!("give either `{one_name}` or `{many_name}`, not both"),
        )),
        (None, None) => Ok(None),
        (Some(raw), None) => Ok(Some(vec![parsed(one_name.to_owned(), raw)?])),
        (None, Some(list)) => list
            .iter()
            .enumerate()
            .map(|(i, raw)| parsed(format!("{many_name}[{i}]"), raw))
            .collect::<Result<_, _>>()
            .map(Some),
    }
}

/// Deserialises an object that passed its schema into its resource type,
/// with `id` set to the validated id of the object when there is one.
fn deserialize<T: DeserializeOwned>(value: &Value, id: Option<&str>) -> Result<T, ValidationError> {
    let mut value = value.clone();
    if let (Some(id), Value::Object(map)) = (id, &mut value) {
        map.insert("id".into(), Value::String(id.to_owned()));
    }
    serde_json::from_value(value).map_err(|e| ValidationError::Json(e.to_string()))
}

#[cfg(test)]
mod chain_tests;
#[cfg(test)]
mod tests;
