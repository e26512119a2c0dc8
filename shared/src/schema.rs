//! JSON schemas of the stored resources, compiled once per process, and what
//! every schema uses (the plugins' too, see [`crate::plugins`]): compiling,
//! the first error as an operator-facing message, shared parts.
//!
//! The field set follows APISIX, with `additionalProperties: false`
//! everywhere so that a typo (`"snis "`, `"uppstream"`) is an error instead of
//! a silently ignored field. The schemas check shape only; constraints that
//! need more than one field or real parsing ("exactly one of `uri`/`uris`",
//! "the key matches the certificate") are the semantic checks in
//! [`crate::validate`], which give a more precise message.
//!
//! Error messages name the JSON path of the offending value and never echo
//! long strings, so a private key cannot leak into an error response.

use std::sync::LazyLock;

use jsonschema::paths::LocationSegment;
use jsonschema::Validator;
use serde_json::{json, Value};

use crate::error::ValidationError;
use crate::resource::Kind;

mod parts;

pub(crate) use parts::{
    crl_list_schema, crl_mode_schema, header_name, online_revocation_schema, pem_bundle,
    unknown_status_schema,
};

/// Methods a route may list (APISIX's set).
pub const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE",
];

/// Longest string value echoed in an error message.
const MAX_ECHO_LEN: usize = 64;

/// Checks `value` against the schema of `kind`. A route's `plugins` must be
/// objects here; each plugin's own schema is [`crate::plugins`]'s.
pub fn check(kind: Kind, value: &Value) -> Result<(), ValidationError> {
    let schemas = &*SCHEMAS;
    let validator = match kind {
        Kind::Ssls => &schemas.ssl,
        Kind::Routes => &schemas.route,
        Kind::Upstreams => &schemas.upstream,
    };
    first_error(validator, value, "")
}

struct Schemas {
    ssl: Validator,
    route: Validator,
    upstream: Validator,
}

static SCHEMAS: LazyLock<Schemas> = LazyLock::new(|| Schemas {
    ssl: compile(&ssl_schema()),
    route: compile(&route_schema()),
    upstream: compile(&upstream_schema()),
});

/// Compiles a built-in schema.
pub(crate) fn compile(schema: &Value) -> Validator {
    // The schemas are constants of this crate and a unit test compiles each
    // one, so a failure here is a bug in this crate, not bad input.
    jsonschema::draft202012::new(schema).expect("built-in JSON schema compiles")
}

/// The first schema violation, as an operator-facing message; `prefix`
/// names where `value` sits (`plugins.mtls-acl`).
pub(crate) fn first_error(
    validator: &Validator,
    value: &Value,
    prefix: &str,
) -> Result<(), ValidationError> {
    match validator.iter_errors(value).next() {
        None => Ok(()),
        Some(error) => Err(describe(&error, prefix)),
    }
}

fn describe(error: &jsonschema::ValidationError<'_>, prefix: &str) -> ValidationError {
    let path = dotted_path(prefix, error.instance_path().iter());
    let placeholder = echo(&path, error.instance());
    let message = error.masked_with(placeholder).to_string();
    if path.is_empty() {
        ValidationError::Schema(message)
    } else {
        ValidationError::Schema(format!("property \"{path}\" validation failed: {message}"))
    }
}

/// `client.depth`, `snis[1]`, `upstream.nodes[127.0.0.1:80]`.
fn dotted_path<'a>(prefix: &str, segments: impl Iterator<Item = LocationSegment<'a>>) -> String {
    let mut path = prefix.to_owned();
    for segment in segments {
        match segment {
            LocationSegment::Index(i) => path.push_str(&format!("[{i}]")),
            LocationSegment::Property(name) if is_plain_name(&name) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&name);
            }
            LocationSegment::Property(name) => path.push_str(&format!("[{name}]")),
        }
    }
    path
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// How the offending value appears in the message: numbers, booleans and
/// short one-line strings as themselves, anything else (and anything under
/// `key`/`keys`) as `value`.
fn echo(path: &str, instance: &Value) -> String {
    let secret = path == "key" || path.starts_with("keys") || path.ends_with("client_key");
    match instance {
        Value::Number(_) | Value::Bool(_) | Value::Null => instance.to_string(),
        Value::String(s)
            if !secret && s.len() <= MAX_ECHO_LEN && !s.chars().any(char::is_control) =>
        {
            instance.to_string()
        }
        _ => "value".to_owned(),
    }
}

/// `id`: a string of `[a-zA-Z0-9._-]`, or a non-negative integer (APISIX
/// accepts both).
fn id_schema() -> Value {
    json!({
        "type": ["string", "integer"],
        "pattern": "^[a-zA-Z0-9._-]{1,64}$",
        "minimum": 0
    })
}

/// `name`, `desc`, `labels`, `create_time`, `update_time`: shared by all kinds.
fn common_properties() -> serde_json::Map<String, Value> {
    let properties = json!({
        "id": id_schema(),
        "name": {"type": "string", "maxLength": 256},
        "desc": {"type": "string", "maxLength": 256},
        "labels": {
            "type": "object",
            "propertyNames": {"maxLength": 64, "pattern": "^\\S+$"},
            "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 256}
        },
        "create_time": {"type": "integer"},
        "update_time": {"type": "integer"}
    });
    as_map(properties)
}

fn as_map(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

fn object(
    mut properties: serde_json::Map<String, Value>,
    extra: Value,
    required: &[&str],
) -> Value {
    properties.extend(as_map(extra));
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false
    })
}

fn pem_schema() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 65536})
}

fn ssl_schema() -> Value {
    let mut common = common_properties();
    common.remove("name");
    let extra = json!({
        "type": {"enum": ["server", "client"]},
        "cert": pem_schema(),
        "key": pem_schema(),
        "certs": {"type": "array", "items": pem_schema(), "maxItems": 16},
        "keys": {"type": "array", "items": pem_schema(), "maxItems": 16},
        "sni": {"type": "string", "minLength": 1, "maxLength": 256},
        "snis": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 256},
            "minItems": 1,
            "maxItems": 1024
        },
        "client": {
            "type": "object",
            "properties": {
                "ca": {"type": "string", "minLength": 1, "maxLength": 1048576},
                "depth": {"type": "integer", "minimum": 1, "maximum": 100},
                "skip_mtls_uri_regex": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1, "maxLength": 4096},
                    "maxItems": 256
                },
                "crl": crl_list_schema(),
                "crl_mode": crl_mode_schema(),
                "unknown_status": unknown_status_schema(),
                "revocation": online_revocation_schema()
            },
            "required": ["ca"],
            "additionalProperties": false
        },
        "status": {"enum": [0, 1]},
        "ssl_protocols": {
            "type": "array",
            "items": {"enum": ["TLSv1.2", "TLSv1.3"]},
            "minItems": 1,
            "uniqueItems": true
        },
        "ocsp_stapling": {
            "type": "object",
            "properties": {
                "enabled": {"type": "boolean"},
                "cache_ttl": {"type": "integer", "minimum": 60, "maximum": 604800}
            },
            "additionalProperties": false
        }
    });
    object(common, extra, &["cert", "key"])
}

fn host_list_schema() -> Value {
    json!({
        "type": "array",
        "items": {"type": "string", "minLength": 1, "maxLength": 256},
        "minItems": 1,
        "maxItems": 256,
        "uniqueItems": true
    })
}

fn route_schema() -> Value {
    let extra = json!({
        "uri": {"type": "string", "minLength": 1, "maxLength": 4096},
        "uris": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 4096},
            "minItems": 1,
            "maxItems": 256,
            "uniqueItems": true
        },
        "host": {"type": "string", "minLength": 1, "maxLength": 256},
        "hosts": host_list_schema(),
        "methods": {
            "type": "array",
            "items": {"enum": METHODS},
            "uniqueItems": true
        },
        "priority": {"type": "integer"},
        "enable_websocket": {"type": "boolean"},
        "plugins": {
            "type": "object",
            "additionalProperties": {"type": "object"}
        },
        "upstream": upstream_schema(),
        "upstream_id": id_schema(),
        "status": {"enum": [0, 1]}
    });
    object(common_properties(), extra, &[])
}

fn upstream_schema() -> Value {
    let node_map = json!({
        "minProperties": 1,
        "propertyNames": {"minLength": 1, "maxLength": 300},
        "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 1000000}
    });
    let node_list = json!({
        "minItems": 1,
        "items": {
            "type": "object",
            "properties": {
                "host": {"type": "string", "minLength": 1, "maxLength": 300},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "weight": {"type": "integer", "minimum": 0, "maximum": 1000000}
            },
            "required": ["host"],
            "additionalProperties": false
        }
    });
    let seconds = json!({"type": "number", "exclusiveMinimum": 0, "maximum": 86400});
    let extra = json!({
        "nodes": {
            "type": ["object", "array"],
            "if": {"type": "object"},
            "then": node_map,
            "else": node_list
        },
        "type": {"enum": ["roundrobin"]},
        "scheme": {"enum": ["http", "https"]},
        "pass_host": {"enum": ["pass", "node", "rewrite"]},
        "upstream_host": {"type": "string", "minLength": 1, "maxLength": 300},
        "timeout": {
            "type": "object",
            "properties": {"connect": seconds, "send": seconds, "read": seconds},
            "required": ["connect", "send", "read"],
            "additionalProperties": false
        },
        "retries": {"type": "integer", "minimum": 0, "maximum": 100},
        "tls": upstream_tls_schema()
    });
    let mut schema = object(common_properties(), extra, &["nodes"]);
    if let Value::Object(map) = &mut schema {
        map.insert(
            "if".into(),
            json!({"properties": {"pass_host": {"const": "rewrite"}}, "required": ["pass_host"]}),
        );
        map.insert("then".into(), json!({"required": ["upstream_host"]}));
    }
    schema
}

/// An upstream's `tls`. Which fields go together is a semantic check, with
/// a precise message (`crate::validate`).
fn upstream_tls_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "client_cert": pem_schema(),
            "client_key": pem_schema(),
            "client_cert_id": id_schema(),
            "verify": {"type": "boolean"},
            "ca": {"type": "string", "minLength": 1, "maxLength": 1048576},
            "ca_id": id_schema(),
            "sni": {"type": "string", "minLength": 1, "maxLength": 253}
        },
        "additionalProperties": false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_error(kind: Kind, value: Value) -> String {
        match check(kind, &value) {
            Err(ValidationError::Schema(message)) => message,
            other => panic!("expected a schema error for {value}, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_json_path() {
        let ssl =
            json!({"cert": "c", "key": "k", "sni": "a.test", "client": {"ca": "x", "depth": 0}});
        assert_eq!(
            schema_error(Kind::Ssls, ssl),
            "property \"client.depth\" validation failed: 0 is less than the minimum of 1"
        );
        let ssl = json!({"cert": "c", "key": "k", "snis": ["a.test", 7]});
        assert_eq!(
            schema_error(Kind::Ssls, ssl),
            "property \"snis[1]\" validation failed: 7 is not of type \"string\""
        );
        let upstream = json!({"nodes": {"127.0.0.1:80": -1}});
        assert_eq!(
            schema_error(Kind::Upstreams, upstream),
            "property \"nodes[127.0.0.1:80]\" validation failed: -1 is less than the minimum of 0"
        );
    }

    #[test]
    fn typos_and_missing_fields_are_refused() {
        let message = schema_error(
            Kind::Ssls,
            json!({"cert": "c", "key": "k", "snis ": ["a.test"]}),
        );
        assert!(message.contains("'snis '"), "{message}");
        let message = schema_error(Kind::Ssls, json!({"cert": "c"}));
        assert_eq!(message, "\"key\" is a required property");
        let message = schema_error(Kind::Routes, json!({"uri": "/", "uppstream": {}}));
        assert!(message.contains("'uppstream'"), "{message}");
    }

    #[test]
    fn errors_never_echo_private_keys_or_long_values() {
        let secret = format!("-----BEGIN PRIVATE KEY-----SECRET{}", "A".repeat(70_000));
        let message = schema_error(
            Kind::Ssls,
            json!({"cert": "c", "key": secret, "sni": "a.test"}),
        );
        assert!(!message.contains("SECRET"), "{message}");
        assert!(message.starts_with("property \"key\""), "{message}");
        let message = schema_error(
            Kind::Ssls,
            json!({"cert": "c", "key": "k", "sni": "a", "type": "SECRET"}),
        );
        assert!(
            message.contains("\"SECRET\""),
            "short values help the operator: {message}"
        );
        let message = schema_error(
            Kind::Ssls,
            json!({"cert": "c", "keys": ["SECRET"], "key": "k", "sni": "a", "certs": [1]}),
        );
        assert!(!message.contains("SECRET"), "{message}");
    }
}
