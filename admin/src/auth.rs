//! `X-API-KEY` authentication of every admin request.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shared::config::AdminKey;
use subtle::{Choice, ConstantTimeEq};

use crate::error::AdminError;

/// The header APISIX clients send the admin key in.
pub(crate) const API_KEY_HEADER: &str = "x-api-key";

/// The API keys the admin API accepts in `X-API-KEY` (`deployment.admin.keys`).
#[derive(Clone)]
pub(crate) struct ApiKeys {
    keys: Arc<[AdminKey]>,
}

impl ApiKeys {
    pub(crate) fn new(keys: Vec<AdminKey>) -> Self {
        ApiKeys { keys: keys.into() }
    }

    /// Whether `presented` equals one of the configured keys.
    ///
    /// Every key is compared, in constant time, whatever the outcome: the
    /// timing tells neither how much of a key matched nor which key did.
    /// (Only a key's length may show, which is not a secret worth keeping.)
    pub(crate) fn accepts(&self, presented: &[u8]) -> bool {
        let matched = self
            .keys
            .iter()
            .filter(|k| !k.key.is_empty())
            .fold(Choice::from(0), |acc, k| {
                acc | k.key.as_bytes().ct_eq(presented)
            });
        matched.into()
    }
}

/// Middleware: refuses requests without a valid `X-API-KEY` with 401.
pub(crate) async fn require_api_key(
    State(keys): State<ApiKeys>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(API_KEY_HEADER)
        .map(|value| value.as_bytes());
    match presented {
        Some(key) if keys.accepts(key) => next.run(request).await,
        _ => AdminError::Unauthorized.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_keys(keys: &[&str]) -> ApiKeys {
        ApiKeys::new(
            keys.iter()
                .enumerate()
                .map(|(i, key)| AdminKey {
                    name: format!("k{i}"),
                    key: (*key).to_owned(),
                })
                .collect(),
        )
    }

    #[test]
    fn accepts_any_configured_key() {
        let keys = api_keys(&["first-key", "second-key"]);
        assert!(keys.accepts(b"first-key"));
        assert!(keys.accepts(b"second-key"));
    }

    #[test]
    fn refuses_wrong_prefix_and_empty_keys() {
        let keys = api_keys(&["first-key"]);
        assert!(!keys.accepts(b"first-ke"));
        assert!(!keys.accepts(b"first-key "));
        assert!(!keys.accepts(b"FIRST-KEY"));
        assert!(!keys.accepts(b""));
    }

    #[test]
    fn an_empty_configured_key_never_matches() {
        let keys = api_keys(&[""]);
        assert!(!keys.accepts(b""));
        assert!(!api_keys(&[]).accepts(b""));
    }
}
