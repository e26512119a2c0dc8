//! HTTP glue: path segments to `(Kind, id)`, bodies to JSON, results to
//! APISIX-shaped responses. The decisions live in [`crate::write`].

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::Json;
use serde_json::Value;
use shared::validate::check_id;
use shared::Kind;

use crate::body::json_object;
use crate::error::AdminError;
use crate::response;
use crate::write::{self, not_found, Prepared, Written};
use crate::AdminState;

type Reply = Result<(StatusCode, Json<Value>), AdminError>;

/// `GET /{kind}`
pub(crate) async fn list(State(state): State<AdminState>, Path(resource): Path<String>) -> Reply {
    let kind = kind(&resource)?;
    let entries = state.store.list(kind).await?;
    ok(
        StatusCode::OK,
        response::list(kind, &entries, &state.keyring),
    )
}

/// `GET /{kind}/{id}`
pub(crate) async fn get(
    State(state): State<AdminState>,
    Path((resource, id)): Path<(String, String)>,
) -> Reply {
    let (kind, id) = target(&resource, id)?;
    let entry = state
        .store
        .get(kind, &id)
        .await?
        .ok_or_else(|| not_found(kind, &id))?;
    ok(
        StatusCode::OK,
        response::entry(kind, &entry, &state.keyring),
    )
}

/// `PUT /{kind}/{id}`: 201 when new, 200 when replaced.
pub(crate) async fn put(
    State(state): State<AdminState>,
    Path((resource, id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let (kind, id) = target(&resource, id)?;
    let body = json_object(body)?;
    let (written, prepared) = write::put(&state.store, &state.keyring, kind, &id, body).await?;
    let status = match written {
        Written::Created => StatusCode::CREATED,
        Written::Replaced => StatusCode::OK,
    };
    tracing::info!(%kind, %id, ?written, "admin: object stored");
    written_reply(&state, kind, &id, status, &prepared)
}

/// `POST /{kind}`: stores under a generated id, 201.
pub(crate) async fn post(
    State(state): State<AdminState>,
    Path(resource): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let kind = kind(&resource)?;
    let body = json_object(body)?;
    let (id, prepared) = write::post(&state.store, &state.keyring, kind, body, || {
        state.ids.next()
    })
    .await?;
    tracing::info!(%kind, %id, "admin: object created");
    written_reply(&state, kind, &id, StatusCode::CREATED, &prepared)
}

/// `PATCH /{kind}/{id}`: JSON merge patch, re-validated, 200.
pub(crate) async fn patch(
    State(state): State<AdminState>,
    Path((resource, id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let (kind, id) = target(&resource, id)?;
    let body = json_object(body)?;
    let prepared = write::patch(&state.store, &state.keyring, kind, &id, body).await?;
    tracing::info!(%kind, %id, "admin: object patched");
    written_reply(&state, kind, &id, StatusCode::OK, &prepared)
}

/// The echo of a write: the stored object as validated, private keys redacted.
fn written_reply(
    state: &AdminState,
    kind: Kind,
    id: &str,
    status: StatusCode,
    prepared: &Prepared,
) -> Reply {
    let key = state.store.layout().object(kind, id);
    ok(
        status,
        response::written(&key, &prepared.value, &prepared.valid),
    )
}

/// `DELETE /{kind}/{id}`: `{"deleted": "1", "key": ...}`, 404 when absent.
pub(crate) async fn delete(
    State(state): State<AdminState>,
    Path((resource, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Reply {
    let (kind, id) = target(&resource, id)?;
    let force = wants_force(query.as_deref());
    write::delete(&state.store, kind, &id, force).await?;
    tracing::info!(%kind, %id, force, "admin: object deleted");
    ok(
        StatusCode::OK,
        response::deleted(&state.store.layout().object(kind, &id)),
    )
}

/// Any path outside the API.
pub(crate) async fn no_such_path(OriginalUri(uri): OriginalUri) -> AdminError {
    AdminError::NoSuchPath(uri.path().to_owned())
}

/// A known path with a method it does not support.
pub(crate) async fn no_such_method(method: Method, OriginalUri(uri): OriginalUri) -> AdminError {
    AdminError::NoSuchEndpoint {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

fn kind(resource: &str) -> Result<Kind, AdminError> {
    Kind::from_plural(resource).ok_or_else(|| AdminError::UnknownResource(resource.to_owned()))
}

/// The object a path names. Ids become etcd key components, so a malformed
/// one (`a%2Fb`) is refused before any store access.
fn target(resource: &str, id: String) -> Result<(Kind, String), AdminError> {
    let kind = kind(resource)?;
    check_id(&id)?;
    Ok((kind, id))
}

/// `?force=true` (APISIX's spelling; no other value forces).
fn wants_force(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|pair| pair == "force=true"))
}

fn ok(status: StatusCode, body: Value) -> Reply {
    Ok((status, Json(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn force_only_when_asked() {
        assert!(wants_force(Some("force=true")));
        assert!(wants_force(Some("a=1&force=true")));
        assert!(!wants_force(Some("force=false")));
        assert!(!wants_force(Some("force=truex")));
        assert!(!wants_force(None));
    }

    #[test]
    fn paths_name_known_resources_and_sane_ids() {
        assert_eq!(
            target("routes", "1".into()).ok(),
            Some((Kind::Routes, "1".to_owned()))
        );
        assert!(matches!(
            target("plugins", "1".into()),
            Err(AdminError::UnknownResource(_))
        ));
        assert!(matches!(
            target("ssls", "a/b".into()),
            Err(AdminError::Invalid(_))
        ));
    }
}
