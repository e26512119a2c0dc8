//! Every way an admin request can fail, and how each one is answered.
//!
//! The body is always APISIX's `{"error_msg": "..."}`, with a message that
//! names what is wrong and, where it helps, what to do about it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use shared::keyring::SecretFieldError;
use shared::store::StoreError;
use shared::validate::ValidationError;
use shared::Kind;
use thiserror::Error;

/// Largest accepted request body: 1.5 MiB, as APISIX.
pub(crate) const MAX_BODY_BYTES: usize = 1536 * 1024;

/// Why an admin request was refused.
#[derive(Debug, Error)]
pub(crate) enum AdminError {
    #[error("failed to check token")]
    Unauthorized,

    #[error("access from {} is not allowed: the address is outside deployment.admin.allow", peer_name(.0))]
    Forbidden(Option<std::net::IpAddr>),

    #[error("unknown resource {0:?}: expected ssls, routes or upstreams")]
    UnknownResource(String),

    #[error("no admin API endpoint at {0}: use /apisix/admin/{{ssls,routes,upstreams}}[/<id>]")]
    NoSuchPath(String),

    #[error("{method} {path} is not supported by the admin API")]
    NoSuchEndpoint { method: String, path: String },

    #[error("{kind}/{id} not found")]
    NotFound { kind: Kind, id: String },

    #[error("request body larger than 1.5 MiB")]
    BodyTooLarge,

    #[error("cannot read the request body: {0}")]
    UnreadableBody(String),

    #[error("{0}")]
    BodyTimeout(crate::server::BodyTimedOut),

    #[error("invalid JSON in request body: {0}")]
    InvalidJson(String),

    #[error("{0}")]
    Invalid(#[from] ValidationError),

    #[error("invalid id: do not set one with POST (the server generates it); use PUT /{0}/<id> to choose the id")]
    IdOnPost(Kind),

    #[error("invalid upstream_id: upstream {0} does not exist; create it first")]
    MissingUpstream(String),

    #[error(
        "upstream {upstream} is still referenced by route(s) {routes}; \
         change or delete them first, or delete with ?force=true"
    )]
    UpstreamInUse { upstream: String, routes: String },

    #[error("invalid {field}: SSL object {id} {problem}")]
    BadSslReference {
        field: String,
        id: String,
        problem: &'static str,
    },

    #[error("{0}")]
    Seal(SecretFieldError),

    #[error(
        "{kind}/{id} is stored with a private key this control plane cannot decrypt ({source}); \
         check deployment.data_encryption.keyring, or PUT the whole object again"
    )]
    Unsealable {
        kind: Kind,
        id: String,
        source: SecretFieldError,
    },

    #[error("{kind}/{id} was modified concurrently by another writer; retry the request")]
    Conflict { kind: Kind, id: String },

    #[error(
        "{kind}/{id}: another writer changed `{field}` while this PATCH was applied, and this \
         PATCH sets it too; read the object again and retry"
    )]
    PatchConflict {
        kind: Kind,
        id: String,
        field: String,
    },

    #[error("{}", store_message(.0))]
    Store(#[from] StoreError),
}

impl AdminError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
            AdminError::Forbidden(_) => StatusCode::FORBIDDEN,
            AdminError::UnknownResource(_)
            | AdminError::NoSuchPath(_)
            | AdminError::NotFound { .. } => StatusCode::NOT_FOUND,
            AdminError::NoSuchEndpoint { .. } => StatusCode::METHOD_NOT_ALLOWED,
            AdminError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            AdminError::UnreadableBody(_)
            | AdminError::InvalidJson(_)
            | AdminError::Invalid(_)
            | AdminError::IdOnPost(_)
            | AdminError::MissingUpstream(_)
            | AdminError::BadSslReference { .. }
            | AdminError::UpstreamInUse { .. } => StatusCode::BAD_REQUEST,
            AdminError::Conflict { .. } | AdminError::PatchConflict { .. } => StatusCode::CONFLICT,
            AdminError::Seal(_) | AdminError::Unsealable { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            AdminError::Store(StoreError::Unavailable { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Store(StoreError::Corrupt { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

fn peer_name(peer: &Option<std::net::IpAddr>) -> String {
    peer.map_or_else(|| "an unknown address".to_owned(), |ip| ip.to_string())
}

/// `etcd unavailable: <reason> (endpoints: ...)`, the wording operators grep for.
fn store_message(err: &StoreError) -> String {
    match err {
        StoreError::Unavailable { endpoints, reason } => {
            format!("etcd unavailable: {reason} (endpoints: {endpoints})")
        }
        StoreError::Corrupt { .. } => err.to_string(),
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "admin request failed");
        }
        (status, Json(json!({ "error_msg": self.to_string() }))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_apisix() {
        assert_eq!(AdminError::Unauthorized.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            AdminError::BodyTooLarge.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let unavailable = StoreError::Unavailable {
            endpoints: "http://127.0.0.1:1".into(),
            reason: "connection refused".into(),
        };
        let unavailable = AdminError::from(unavailable);
        assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(unavailable
            .to_string()
            .starts_with("etcd unavailable: connection refused"));
        let invalid = ValidationError::field("sni", "not a host name");
        assert_eq!(AdminError::from(invalid).status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn the_body_is_apisix_error_msg() {
        let response = AdminError::Unauthorized.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body, json!({"error_msg": "failed to check token"}));
    }

    #[test]
    fn messages_name_the_problem() {
        assert_eq!(
            AdminError::Unauthorized.to_string(),
            "failed to check token"
        );
        let in_use = AdminError::UpstreamInUse {
            upstream: "u1".into(),
            routes: "1, 2".into(),
        };
        let msg = in_use.to_string();
        assert!(
            msg.contains("u1") && msg.contains("1, 2") && msg.contains("force=true"),
            "{msg}"
        );
        let missing = AdminError::MissingUpstream("9".into()).to_string();
        assert!(
            missing.starts_with("invalid upstream_id") && missing.contains('9'),
            "{missing}"
        );
    }
}
