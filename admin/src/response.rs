//! What the admin API answers: APISIX's body shapes, stripped of every
//! private key (SSL `key`/`keys`, upstream `tls.client_key`, inline or not,
//! then any key left anywhere, see [`crate::scrub`]), with SSL objects
//! enriched with what an operator wants to know about their certificates.

use serde_json::{json, Map, Value};
use shared::keyring::Keyring;
use shared::store::Entry;
use shared::validate::{validate, Valid, ValidSsl, ValidationError};
use shared::x509::redact;
use shared::Kind;

use crate::scrub::{scrub_private_keys, MARKER};

/// Fields this API computes for SSL objects; never stored, ignored on input.
pub(crate) const COMPUTED_SSL_FIELDS: [&str; 2] = ["info", "warnings"];

/// `{"key": ..., "value": ...}`: the answer to a write.
pub(crate) fn written(key: &str, value: &Value, valid: &Valid) -> Value {
    let shown = match valid {
        Valid::Ssl(ssl) => ssl_view(value, Ok(ssl)),
        Valid::Route(_) | Valid::Upstream(_) => redacted(value),
    };
    json!({ "key": key, "value": scrubbed(shown) })
}

/// `{"key": ..., "value": ..., "modifiedIndex": ...}`: one stored object.
/// Its sealed private keys are opened with `keyring` only to describe its
/// certificates; none is shown.
pub(crate) fn entry(kind: Kind, entry: &Entry, keyring: &Keyring) -> Value {
    let mut value = entry.value.clone();
    let opened = keyring.open_object(kind, &mut value);
    let shown = match (kind, opened) {
        (Kind::Ssls, Ok(())) => stored_ssl_view(&entry.id, &value),
        (Kind::Ssls, Err(err)) => {
            let reason = format!("cannot be decrypted: {}", err.reason);
            let unreadable = ValidationError::field(err.field, reason);
            ssl_view(&value, Err(&unreadable))
        }
        (Kind::Routes | Kind::Upstreams, _) => redacted(&value),
    };
    json!({
        "key": entry.key,
        "value": scrubbed(shown),
        "modifiedIndex": entry.mod_revision,
    })
}

/// `{"list": [...], "total": N}`.
pub(crate) fn list(kind: Kind, entries: &[Entry], keyring: &Keyring) -> Value {
    let list: Vec<Value> = entries.iter().map(|e| entry(kind, e, keyring)).collect();
    json!({ "total": list.len(), "list": list })
}

/// `{"deleted": "1", "key": ...}`.
pub(crate) fn deleted(key: &str) -> Value {
    json!({ "deleted": "1", "key": key })
}

/// A route or upstream without its `tls.client_key`.
fn redacted(value: &Value) -> Value {
    let mut shown = value.clone();
    redact(&mut shown);
    shown
}

/// `shown` without any private key left in it, each one replaced by a
/// marker and named in `warnings`.
fn scrubbed(mut shown: Value) -> Value {
    let found = scrub_private_keys(&mut shown);
    if found.is_empty() {
        return shown;
    }
    if let Value::Object(fields) = &mut shown {
        let warnings = fields.entry("warnings").or_insert_with(|| json!([]));
        if !warnings.is_array() {
            *warnings = json!([]);
        }
        if let Value::Array(warnings) = warnings {
            warnings.extend(found.into_iter().map(|path| {
                json!(format!(
                    "{path} holds a private key, shown as {MARKER:?}: private keys belong only \
                     in the key fields (never returned); store the object again without it"
                ))
            }));
        }
    }
    shown
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
        let body = entry(Kind::Ssls, &ssl_entry(stored), &Keyring::default());
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
        let body = entry(Kind::Ssls, &ssl_entry(stored), &Keyring::default());
        let text = body.to_string();
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        let warning = body["value"]["warnings"][0].as_str().unwrap_or_default();
        assert!(
            warning.starts_with("the gateway skips this object"),
            "{warning}"
        );
    }

    #[test]
    fn a_key_stored_in_any_field_is_replaced_and_warned_about() {
        let pki = pki();
        let stored = json!({
            "id": "1",
            "sni": "test.com",
            "cert": format!("{}{}", pki.cert_pem, pki.key_pem),
            "key": pki.key_pem,
            "desc": pki.key_pem,
        });
        let body = entry(Kind::Ssls, &ssl_entry(stored), &Keyring::default());
        assert!(!body.to_string().contains("PRIVATE KEY"), "{body}");
        let value = &body["value"];
        assert_eq!(value["cert"], format!("{}{MARKER}\n", pki.cert_pem));
        let warnings: Vec<&str> = value["warnings"]
            .as_array()
            .expect("warnings")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(warnings[0].starts_with("the gateway skips this object"));
        assert!(
            warnings[1].starts_with("cert holds a private key"),
            "{warnings:?}"
        );
        assert!(
            warnings[2].starts_with("desc holds a private key"),
            "{warnings:?}"
        );

        let route = json!({"id": "1", "uri": "/", "upstream_id": "1"});
        let valid = validate(Kind::Routes, "1", &route).expect("valid");
        let mut route = route;
        route["labels"] = json!({"k": pki.key_pem});
        for body in [
            written("/p/routes/1", &route, &valid),
            entry_body(&Entry {
                id: "1".into(),
                key: "/p/routes/1".into(),
                value: route.clone(),
                mod_revision: 1,
            }),
        ] {
            assert!(!body.to_string().contains("PRIVATE KEY"), "{body}");
            assert_eq!(body["value"]["labels"]["k"], format!("{MARKER}\n"));
            assert_eq!(body["value"]["warnings"].as_array().map(Vec::len), Some(1));
        }
    }

    #[test]
    fn stored_computed_fields_are_never_echoed() {
        let stored =
            json!({"id": "1", "cert": "x", "key": "y", "info": "forged", "warnings": ["forged"]});
        let body = entry(Kind::Ssls, &ssl_entry(stored), &Keyring::default());
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
        let listed = list(Kind::Routes, &[entry.clone(), entry], &Keyring::default());
        assert_eq!(listed["total"], 2);
        assert_eq!(listed["list"][1]["value"]["uri"], "/a");
    }

    fn entry_body(e: &Entry) -> Value {
        entry(Kind::Routes, e, &Keyring::default())
    }

    #[test]
    fn upstream_client_keys_are_never_echoed() {
        let pki = pki();
        let tls = json!({"client_cert": pki.cert_pem, "client_key": pki.key_pem});
        let upstream = json!({"id": "1", "nodes": {"a:443": 1}, "scheme": "https", "tls": tls});
        let route = json!({"id": "1", "uri": "/", "upstream": {"nodes": {"a:443": 1}, "scheme": "https", "tls": tls}});
        for (kind, value) in [(Kind::Upstreams, upstream), (Kind::Routes, route)] {
            let valid = validate(kind, "1", &value).expect("valid");
            let echoed = written("/p/x/1", &value, &valid).to_string();
            assert!(!echoed.contains("PRIVATE KEY"), "{kind}: {echoed}");
            assert!(echoed.contains("client_cert"), "{kind}: {echoed}");
            let stored = Entry {
                id: "1".into(),
                key: "/p/x/1".into(),
                value,
                mod_revision: 1,
            };
            let got = entry(kind, &stored, &Keyring::default()).to_string();
            assert!(!got.contains("PRIVATE KEY"), "{kind}: {got}");
        }
    }

    #[test]
    fn sealed_ssl_objects_are_described_with_the_keyring() {
        let key = |byte: u8| {
            let key = match byte {
                1 => "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
                _ => "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=",
            };
            Keyring::from_base64(&[key]).expect("key")
        };
        let pki = pki();
        let mut stored =
            json!({"id": "1", "sni": "test.com", "cert": pki.cert_pem, "key": pki.key_pem});
        key(1).seal_object(Kind::Ssls, &mut stored).expect("sealed");

        let body = entry(Kind::Ssls, &ssl_entry(stored.clone()), &key(1));
        assert_eq!(
            body["value"]["info"]["cert"]["subject"], "CN=test.com",
            "{body}"
        );
        assert!(body["value"].get("key").is_none());
        assert!(body["value"].get("warnings").is_none(), "{body}");

        let body = entry(Kind::Ssls, &ssl_entry(stored), &key(2));
        let warning = body["value"]["warnings"][0].as_str().unwrap_or_default();
        assert!(warning.contains("cannot be decrypted"), "{warning}");
        assert!(!body.to_string().contains("$enc:"), "{body}");
    }

    #[test]
    fn deleted_has_apisix_shape() {
        assert_eq!(
            deleted("/portcullis/routes/1"),
            json!({"deleted": "1", "key": "/portcullis/routes/1"})
        );
    }
}
