//! The write paths: turning a request body into a stored object.
//!
//! Order matters: everything that can refuse the object (validation in
//! `shared`, then the cross-object checks that need the store) runs before
//! the single conditional etcd write, so a refused request writes nothing.
//! Writes are compare-and-swap on the etcd revision the decision was based
//! on; a lost race is retried from a fresh read, a few times.
//!
//! Validation sees plaintext; private keys are sealed with the keyring only
//! in the copy written to etcd (and opened again before a PATCH merges).

use std::time::Duration;

use serde_json::{Map, Value};
use shared::keyring::Keyring;
use shared::store::{Entry, Store};
use shared::validate::{validate, ClientIdentity, Trust, UpstreamRef, Valid, ValidUpstream};
use shared::Kind;

use crate::error::AdminError;
use crate::ids::unix_seconds;
use crate::patch::{conflicting_field, merge_patch};
use crate::response::COMPUTED_SSL_FIELDS;

/// How many times a write that lost a race is retried before answering 409.
const ATTEMPTS: usize = 5;
/// How many times a PATCH is merged again on a fresh value after losing
/// the compare-and-swap to a write of other fields: enough for a burst of
/// a few dozen concurrent PATCHes of one object.
const PATCH_ATTEMPTS: u32 = 32;

/// A validated object, ready to be written.
pub(crate) struct Prepared {
    /// As validated, private keys in clear: never stored, never answered
    /// unredacted.
    pub(crate) value: Value,
    pub(crate) valid: Valid,
}

/// Whether a `PUT` created the object or replaced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Written {
    Created,
    Replaced,
}

/// `PUT /{kind}/{id}`: creates or replaces, keeping the original `create_time`.
pub(crate) async fn put(
    store: &Store,
    keyring: &Keyring,
    kind: Kind,
    id: &str,
    body: Map<String, Value>,
) -> Result<(Written, Prepared), AdminError> {
    let now = unix_seconds();
    let mut prepared = prepare(kind, id, body, now, now)?;
    check_references(store, &prepared.valid).await?;
    let mut sent: Option<(Value, Value, Written)> = None;
    for _ in 0..ATTEMPTS {
        let existing = store.get(kind, id).await?;
        if let Some((_, shown, written)) = sent
            .take()
            .filter(|(stored, ..)| is_stored(existing.as_ref(), stored))
        {
            prepared.value = shown;
            return Ok((written, prepared));
        }
        let (value, attempted, applied) = match existing {
            None => {
                let value = sealed(keyring, kind, &prepared.value)?;
                let created = store.create(kind, id, &value).await?;
                (value, Written::Created, created)
            }
            Some(existing) => {
                set_times(&mut prepared.value, create_time(&existing, now), now);
                let value = sealed(keyring, kind, &prepared.value)?;
                let replaced = store
                    .compare_and_put(kind, id, &value, existing.mod_revision)
                    .await?;
                (value, Written::Replaced, replaced)
            }
        };
        if applied {
            return Ok((attempted, prepared));
        }
        sent = Some((value, prepared.value.clone(), attempted));
    }
    Err(conflict(kind, id))
}

/// `POST /{kind}`: creates the object under a fresh id; returns the id.
pub(crate) async fn post(
    store: &Store,
    keyring: &Keyring,
    kind: Kind,
    body: Map<String, Value>,
    next_id: impl Fn() -> String,
) -> Result<(String, Prepared), AdminError> {
    if body.contains_key("id") {
        return Err(AdminError::IdOnPost(kind));
    }
    let now = unix_seconds();
    let mut id = next_id();
    let mut prepared = prepare(kind, &id, body, now, now)?;
    check_references(store, &prepared.valid).await?;
    for _ in 0..ATTEMPTS {
        let value = sealed(keyring, kind, &prepared.value)?;
        if store.create(kind, &id, &value).await?
            || is_stored(store.get(kind, &id).await?.as_ref(), &value)
        {
            return Ok((id, prepared));
        }
        // Another control plane took this id meanwhile: pick the next one.
        id = next_id();
        set_id(&mut prepared.value, &id);
    }
    Err(conflict(kind, &id))
}

/// `PATCH /{kind}/{id}`: merges `patch` into the stored object (RFC 7386),
/// then validates the result as if it had been `PUT`. Sealed private keys
/// are opened first, so that the merged object validates and is sealed
/// again (under the keyring's current first key).
///
/// Concurrent PATCHes of one object race for the compare-and-swap; the
/// loser merges again on the winner's value and retries, after a short
/// random pause that spreads a burst out, unless the winner changed a field
/// this patch sets: that is a real conflict (409, naming the field).
pub(crate) async fn patch(
    store: &Store,
    keyring: &Keyring,
    kind: Kind,
    id: &str,
    patch: Map<String, Value>,
) -> Result<Prepared, AdminError> {
    let patch = Value::Object(patch);
    let mut base: Option<Value> = None;
    let mut sent: Option<(Value, Prepared)> = None;
    for attempt in 0..PATCH_ATTEMPTS {
        let existing = store.get(kind, id).await?;
        if let Some((_, prepared)) = sent
            .take()
            .filter(|(stored, _)| is_stored(existing.as_ref(), stored))
        {
            return Ok(prepared);
        }
        let existing = existing.ok_or_else(|| not_found(kind, id))?;
        let current = opened(keyring, kind, id, &existing)?;
        let base = base.get_or_insert_with(|| current.clone());
        if let Some(field) = patch
            .as_object()
            .and_then(|fields| conflicting_field(base, &current, fields))
        {
            return Err(AdminError::PatchConflict {
                kind,
                id: id.to_owned(),
                field,
            });
        }
        let mut merged = current;
        merge_patch(&mut merged, &patch);
        let Value::Object(merged) = merged else {
            return Err(AdminError::InvalidJson(
                "the patch must be a JSON object".into(),
            ));
        };
        let now = unix_seconds();
        let prepared = prepare(kind, id, merged, create_time(&existing, now), now)?;
        check_references(store, &prepared.valid).await?;
        let value = sealed(keyring, kind, &prepared.value)?;
        if store
            .compare_and_put(kind, id, &value, existing.mod_revision)
            .await?
        {
            return Ok(prepared);
        }
        sent = Some((value, prepared));
        contention_pause(attempt).await;
    }
    Err(conflict(kind, id))
}

/// Whether `existing` holds exactly `sent`, a value this request wrote
/// whose compare-and-swap then failed: the store retried an attempt that
/// was applied after all (its answer lost in an etcd election). Sealed keys
/// carry a random nonce, and times are set per write, so another writer's
/// value is not mistaken for ours; if it were identical, the outcome is the
/// same anyway.
fn is_stored(existing: Option<&Entry>, sent: &Value) -> bool {
    existing.is_some_and(|existing| existing.value == *sent)
}

/// The stored object with its sealed private keys opened.
fn opened(keyring: &Keyring, kind: Kind, id: &str, existing: &Entry) -> Result<Value, AdminError> {
    let mut value = existing.value.clone();
    keyring
        .open_object(kind, &mut value)
        .map_err(|source| AdminError::Unsealable {
            kind,
            id: id.to_owned(),
            source,
        })?;
    Ok(value)
}

/// A random pause before retrying a lost compare-and-swap, growing with
/// `attempt` (up to 128 ms): writers that collided do not collide again.
async fn contention_pause(attempt: u32) {
    use std::hash::{BuildHasher, Hasher};
    let cap_ms = 2u64 << attempt.min(6);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    tokio::time::sleep(Duration::from_millis(random % cap_ms)).await;
}

/// `DELETE /{kind}/{id}`; an upstream still used by a route is kept unless
/// `force`.
pub(crate) async fn delete(
    store: &Store,
    kind: Kind,
    id: &str,
    force: bool,
) -> Result<(), AdminError> {
    if kind == Kind::Upstreams && !force {
        let routes = routes_using_upstream(store, id).await?;
        if !routes.is_empty() {
            return Err(AdminError::UpstreamInUse {
                upstream: id.to_owned(),
                routes: routes.join(", "),
            });
        }
    }
    if store.delete(kind, id).await? {
        Ok(())
    } else {
        Err(not_found(kind, id))
    }
}

/// Sets the fields this API maintains, then validates: the value checked is
/// exactly the value stored (and what the gateway's watcher will check).
fn prepare(
    kind: Kind,
    id: &str,
    mut body: Map<String, Value>,
    created: i64,
    now: i64,
) -> Result<Prepared, AdminError> {
    if kind == Kind::Ssls {
        for field in COMPUTED_SSL_FIELDS {
            body.remove(field);
        }
    }
    let mut value = Value::Object(body);
    set_times(&mut value, created, now);
    // Validated before `id` is overwritten, so a body naming another id is refused.
    let valid = validate(kind, id, &value)?;
    set_id(&mut value, id);
    Ok(Prepared { value, valid })
}

/// What is written to etcd: `value` with its private keys sealed.
fn sealed(keyring: &Keyring, kind: Kind, value: &Value) -> Result<Value, AdminError> {
    let mut stored = value.clone();
    keyring
        .seal_object(kind, &mut stored)
        .map_err(AdminError::Seal)?;
    Ok(stored)
}

/// The checks that need other stored objects.
async fn check_references(store: &Store, valid: &Valid) -> Result<(), AdminError> {
    match valid {
        Valid::Route(route) => match &route.upstream {
            UpstreamRef::Id(upstream) => {
                if store.get(Kind::Upstreams, upstream).await?.is_none() {
                    return Err(AdminError::MissingUpstream(upstream.clone()));
                }
            }
            UpstreamRef::Inline(upstream) => {
                check_tls_references(store, upstream, "upstream.").await?
            }
        },
        Valid::Upstream(upstream) => check_tls_references(store, upstream, "").await?,
        Valid::Ssl(_) => {}
    }
    Ok(())
}

/// `tls.client_cert_id` must name an SSL object of `type: client`, and
/// `tls.ca_id` one with a `client.ca`. (Either may disappear later: the
/// gateway then answers 502 for the routes using it.)
async fn check_tls_references(
    store: &Store,
    upstream: &ValidUpstream,
    field_prefix: &str,
) -> Result<(), AdminError> {
    let Some(tls) = &upstream.tls else {
        return Ok(());
    };
    if let Some(ClientIdentity::SslObject(id)) = &tls.identity {
        let field = format!("{field_prefix}tls.client_cert_id");
        check_ssl_reference(store, field, id, |ssl| {
            (ssl.get("type").and_then(Value::as_str) != Some("client"))
                .then_some("is not of type \"client\"")
        })
        .await?;
    }
    if let Trust::SslObject(id) = &tls.trust {
        let field = format!("{field_prefix}tls.ca_id");
        check_ssl_reference(store, field, id, |ssl| {
            ssl.pointer("/client/ca")
                .is_none()
                .then_some("has no client.ca to use as the upstream's trust anchors")
        })
        .await?;
    }
    Ok(())
}

/// `field` names the SSL object `id`, which must exist and be usable there:
/// `unusable` says why the stored object is not.
async fn check_ssl_reference(
    store: &Store,
    field: String,
    id: &str,
    unusable: impl FnOnce(&Value) -> Option<&'static str>,
) -> Result<(), AdminError> {
    let problem = match store.get(Kind::Ssls, id).await? {
        None => Some("does not exist; create it first"),
        Some(ssl) => unusable(&ssl.value),
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(AdminError::BadSslReference {
            field,
            id: id.to_owned(),
            problem,
        }),
    }
}

/// Ids of the stored routes whose `upstream_id` is `upstream`.
async fn routes_using_upstream(store: &Store, upstream: &str) -> Result<Vec<String>, AdminError> {
    let routes = store.list(Kind::Routes).await?;
    Ok(routes
        .into_iter()
        .filter(|route| references(&route.value, upstream))
        .map(|route| route.id)
        .collect())
}

/// Whether a stored route's `upstream_id` names `upstream` (APISIX also
/// accepts numeric ids, so compare their text).
fn references(route: &Value, upstream: &str) -> bool {
    match route.get("upstream_id") {
        Some(Value::String(id)) => id == upstream,
        Some(Value::Number(id)) => id.to_string() == upstream,
        _ => false,
    }
}

fn set_times(value: &mut Value, created: i64, now: i64) {
    if let Value::Object(fields) = value {
        fields.insert("create_time".into(), created.into());
        fields.insert("update_time".into(), now.into());
    }
}

fn set_id(value: &mut Value, id: &str) {
    if let Value::Object(fields) = value {
        fields.insert("id".into(), id.into());
    }
}

/// The stored object's `create_time`, or `now` if it has none.
fn create_time(existing: &Entry, now: i64) -> i64 {
    existing
        .value
        .get("create_time")
        .and_then(Value::as_i64)
        .unwrap_or(now)
}

pub(crate) fn not_found(kind: Kind, id: &str) -> AdminError {
    AdminError::NotFound {
        kind,
        id: id.to_owned(),
    }
}

fn conflict(kind: Kind, id: &str) -> AdminError {
    AdminError::Conflict {
        kind,
        id: id.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_compare_ids_as_text() {
        assert!(references(&json!({"upstream_id": "1"}), "1"));
        assert!(references(&json!({"upstream_id": 1}), "1"));
        assert!(!references(&json!({"upstream_id": "10"}), "1"));
        assert!(!references(&json!({"upstream": {"nodes": {}}}), "1"));
    }

    #[test]
    fn times_and_id_are_set_by_the_server() {
        let mut value = json!({"create_time": 1, "update_time": 2, "uri": "/"});
        set_times(&mut value, 10, 20);
        set_id(&mut value, "r1");
        assert_eq!(
            value,
            json!({"create_time": 10, "update_time": 20, "uri": "/", "id": "r1"})
        );
    }
}
