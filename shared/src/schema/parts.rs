//! Schema parts used by more than one schema: header names, PEM bundles,
//! and the client-chain settings an SSL object's `client` section shares
//! with `client-cert-auth` (checked semantically in [`crate::client_chain`]).

use serde_json::{json, Value};

/// RFC 9110 token: a header name.
pub(crate) fn header_name() -> Value {
    json!({"type": "string", "pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", "maxLength": 256})
}

/// One PEM bundle (a CA file, a CRL file): large but bounded.
pub(crate) fn pem_bundle() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 1048576})
}

pub(crate) fn crl_list_schema() -> Value {
    json!({"type": "array", "items": pem_bundle(), "minItems": 1, "maxItems": 64})
}

pub(crate) fn crl_mode_schema() -> Value {
    json!({"enum": ["strict", "leaf_only"]})
}

/// `revocation`: online checks (OCSP, CRL distribution points).
pub(crate) fn online_revocation_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "mode": {"enum": ["off", "soft_fail", "hard_fail"]},
            "ocsp": {"type": "boolean"},
            "crl_distribution_points": {"type": "boolean"},
            "leaf_only": {"type": "boolean"},
            "timeout_ms": {"type": "integer", "minimum": 50, "maximum": 30000},
            "cache_ttl": {"type": "integer", "minimum": 1, "maximum": 604800}
        },
        "additionalProperties": false
    })
}

pub(crate) fn unknown_status_schema() -> Value {
    json!({"enum": ["allow", "deny"]})
}
