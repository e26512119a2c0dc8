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
pub(crate) fn written(key: &str, value: &Value, valid: &Valid) -> Value {
    let shown = match valid {
        Valid::Ssl(ssl) => ssl_view(value, Ok(ssl)),
        Valid::Route(_) | Valid::Upstream(_) => value.clone(),
    };
    json!({ "key": key, "value": shown })
}

/// `{"key": ..., "value": ..., "modifiedIndex": ...}`: one stored object.
pub(crate) fn entry(kind: Kind, entry: &Entry) -> Value {
    let shown = match kind {
        Kind::Ssls => stored_ssl_view(&entry.id, &entry.value),
        Kind::Routes | Kind::Upstreams => entry.value.clone(),
    };
    json!({
        "key": entry.key,
        "value": shown,
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

/// A stored SSL object, validated again to describe its certificates (or to
/// say why the gateway skips it: etcd may have been written by hand).
fn stored_ssl_view(id: &str, value: &Value) -> Value {
    match validate(Kind::Ssls, id, value) {
        Ok(Valid::Ssl(ssl)) => ssl_view(value, Ok(&ssl)),
        Ok(Valid::Route(_) | Valid::Upstream(_)) => ssl_view(
            value,
            Err(&ValidationError::Schema("not an SSL object".into())),
        ),
        Err(err) => ssl_view(value, Err(&err)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    struct Pki {
        ca_pem: String,
        cert_pem: String,
        key_pem: String,
    }

    fn pki() -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.distinguished_name.push(DnType::CommonName, "Test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().expect("leaf key");
        let mut leaf = CertificateParams::new(vec!["test.com".to_owned()]).expect("leaf params");
        leaf.distinguished_name.push(DnType::CommonName, "test.com");
        let cert_pem = leaf.signed_by(&key, &issuer).expect("leaf").pem();
        Pki {
            ca_pem,
            cert_pem,
            key_pem: key.serialize_pem(),
        }
    }

    fn ssl_entry(value: Value) -> Entry {
        Entry {
            id: "1".into(),
            key: "/portcullis/ssls/1".into(),
            value,
            mod_revision: 7,
        }
    }

    #[test]
    fn ssl_answers_describe_certificates_without_private_keys() {
        let pki = pki();
        let stored = json!({
            "id": "1",
            "sni": "test.com",
            "cert": pki.cert_pem,
            "key": pki.key_pem,
            "certs": [pki.cert_pem],
            "keys": [pki.key_pem],
            "client": {"ca": pki.ca_pem},
            "create_time": 1,
            "update_time": 2,
        });
        let body = entry(Kind::Ssls, &ssl_entry(stored));
        let text = body.to_string();
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        let value = &body["value"];
        assert!(value.get("key").is_none() && value.get("keys").is_none());
        assert_eq!(body["key"], "/portcullis/ssls/1");
        assert_eq!(body["modifiedIndex"], 7);
        assert_eq!(value["cert"], pki.cert_pem.as_str());
        assert_eq!(value["info"]["cert"]["subject"], "CN=test.com");
        assert_eq!(value["info"]["certs"].as_array().map(Vec::len), Some(1));
        assert_eq!(value["info"]["client_ca"][0]["subject"], "CN=Test CA");
        assert!(value.get("warnings").is_none(), "{value}");
    }

    #[test]
    fn write_echoes_are_redacted() {
        let pki = pki();
        let stored =
            json!({"id": "1", "snis": ["test.com"], "cert": pki.cert_pem, "key": pki.key_pem});
        let valid = validate(Kind::Ssls, "1", &stored).expect("valid SSL");
        let body = written("/portcullis/ssls/1", &stored, &valid);
        assert!(!body.to_string().contains("PRIVATE KEY"), "{body}");
        assert_eq!(body["value"]["snis"], json!(["test.com"]));
        assert_eq!(body["value"]["info"]["cert"]["subject"], "CN=test.com");
    }

    #[test]
    fn invalid_stored_ssl_is_redacted_and_explained() {
        let stored = json!({
            "id": "1",
            "sni": "test.com",
            "cert": "garbage",
            "key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        });
        let body = entry(Kind::Ssls, &ssl_entry(stored));
        let text = body.to_string();
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        let warning = body["value"]["warnings"][0].as_str().unwrap_or_default();
        assert!(
            warning.starts_with("the gateway skips this object"),
            "{warning}"
        );
    }

    #[test]
    fn stored_computed_fields_are_never_echoed() {
        let stored =
            json!({"id": "1", "cert": "x", "key": "y", "info": "forged", "warnings": ["forged"]});
        let body = entry(Kind::Ssls, &ssl_entry(stored));
        assert_ne!(body["value"]["info"], "forged");
        assert_ne!(body["value"]["warnings"][0], "forged");
    }

    #[test]
    fn other_kinds_are_returned_as_stored() {
        let route = json!({"id": "1", "uri": "/a", "plugins": {"x": {"key": "kept"}}});
        let entry = Entry {
            id: "1".into(),
            key: "/portcullis/routes/1".into(),
            value: route.clone(),
            mod_revision: 3,
        };
        assert_eq!(entry_body(&entry)["value"], route);
        let listed = list(Kind::Routes, &[entry.clone(), entry]);
        assert_eq!(listed["total"], 2);
        assert_eq!(listed["list"][1]["value"]["uri"], "/a");
    }

    fn entry_body(e: &Entry) -> Value {
        entry(Kind::Routes, e)
    }

    #[test]
    fn deleted_has_apisix_shape() {
        assert_eq!(
            deleted("/portcullis/routes/1"),
            json!({"deleted": "1", "key": "/portcullis/routes/1"})
        );
    }
}
