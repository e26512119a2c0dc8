//! What the admin API answers: APISIX's body shapes, with SSL objects
//! stripped of their private keys and enriched with what an operator wants
//! to know about their certificates.

use serde_json::{json, Map, Value};
use shared::store::Entry;
use shared::validate::{validate, Valid, ValidSsl, ValidationError};
use shared::x509::redact;
use shared::Kind;

/// Fields this API computes for SSL objects; never stored, ignored on input.
pub(crate) const COMPUTED_SSL_FIELDS: [&str; 2] = ["info", "warnings"];

/// `{"key": ..., "value": ...}`: the answer to a write.
pub(crate) fn written(kind: Kind, key: &str, value: &Value, valid: &Valid) -> Value {
    json!({ "key": key, "value": public_value(kind, value, Some(valid)) })
}

/// `{"key": ..., "value": ..., "modifiedIndex": ...}`: one stored object.
pub(crate) fn entry(kind: Kind, entry: &Entry) -> Value {
    json!({
        "key": entry.key,
        "value": public_value(kind, &entry.value, None),
        "modifiedIndex": entry.mod_revision,
    })
}

/// `{"list": [...], "total": N}`.
pub(crate) fn list(kind: Kind, entries: &[Entry]) -> Value {
    let list: Vec<Value> = entries.iter().map(|e| entry(kind, e)).collect();
    json!({ "total": list.len(), "list": list })
}

/// `{"deleted": "1", "key": ...}`.
pub(crate) fn deleted(key: &str) -> Value {
    json!({ "deleted": "1", "key": key })
}

/// The stored `value` as clients may see it. `valid` is the validation
/// outcome when the caller has it; SSL objects are validated otherwise, to
/// describe their certificates (or say why the gateway skips them).
fn public_value(kind: Kind, value: &Value, valid: Option<&Valid>) -> Value {
    if kind != Kind::Ssls {
        return value.clone();
    }
    match valid {
        Some(Valid::Ssl(ssl)) => ssl_view(value, Ok(ssl)),
        _ => match validate_ssl(value) {
            Ok(ssl) => ssl_view(value, Ok(&ssl)),
            Err(err) => ssl_view(value, Err(&err)),
        },
    }
}

fn validate_ssl(value: &Value) -> Result<std::sync::Arc<ValidSsl>, ValidationError> {
    let id = value.get("id").and_then(Value::as_str).unwrap_or_default();
    match validate(Kind::Ssls, id, value)? {
        Valid::Ssl(ssl) => Ok(ssl),
        Valid::Route(_) | Valid::Upstream(_) => Err(ValidationError::Schema("not an SSL object".into())),
    }
}

/// The SSL object without private keys, plus `info` and `warnings`.
fn ssl_view(value: &Value, validity: Result<&ValidSsl, &ValidationError>) -> Value {
    let mut shown = value.clone();
    redact(&mut shown);
    if let Value::Object(fields) = &mut shown {
        for field in COMPUTED_SSL_FIELDS {
            fields.remove(field);
        }
        match validity {
            Ok(ssl) => describe(fields, ssl),
            Err(err) => {
                let warning = format!("the gateway skips this object: {err}");
                fields.insert("warnings".into(), json!([warning]));
            }
        }
    }
    shown
}

fn describe(fields: &mut Map<String, Value>, ssl: &ValidSsl) {
    let mut leaves = ssl.pairs.iter().map(|pair| &pair.leaf);
    let mut info = Map::new();
    if let Some(cert) = leaves.next() {
        info.insert("cert".into(), json!(cert));
    }
    let extra: Vec<_> = leaves.collect();
    if !extra.is_empty() {
        info.insert("certs".into(), json!(extra));
    }
    if let Some(client) = &ssl.client {
        info.insert("client_ca".into(), json!(client.ca_summaries));
    }
    fields.insert("info".into(), Value::Object(info));
    if !ssl.warnings.is_empty() {
        fields.insert("warnings".into(), json!(ssl.warnings));
    }
}
