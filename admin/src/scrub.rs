//! The last line of defence before an answer leaves: redaction by content.
//!
//! [`shared::x509::redact`] removes the fields meant to hold private keys,
//! but etcd can be written by hand, by a script or by an older version, and
//! a key pasted into `cert`, a label or a plugin setting would be answered
//! as stored. So every string of an answer (and every object key) is
//! searched: a private key PEM section, or a value sealed by the keyring, is
//! replaced by [`MARKER`] and the answer says where in `warnings`.

use serde_json::{Map, Value};
use shared::keyring::SEALED_PREFIX;
use shared::x509::holds_private_key;

/// What an answer shows where a private key was.
pub(crate) const MARKER: &str = "[private key removed]";

/// Replaces every private key in `value` by [`MARKER`]; returns where it
/// did, as paths such as `cert`, `certs[1]` or `plugins.x.y`.
pub(crate) fn scrub_private_keys(value: &mut Value) -> Vec<String> {
    let mut found = Vec::new();
    scrub(value, "", &mut found);
    found
}

fn scrub(value: &mut Value, path: &str, found: &mut Vec<String>) {
    match value {
        Value::String(text) => {
            if let Some(clean) = without_keys(text) {
                *text = clean;
                found.push(path.to_owned());
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                scrub(item, &format!("{path}[{i}]"), found);
            }
        }
        Value::Object(fields) => {
            rename_keyed_fields(fields, path, found);
            for (name, field) in fields.iter_mut() {
                let inner = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                scrub(field, &inner, found);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Object keys are text an answer shows too (`nodes`, `labels`).
fn rename_keyed_fields(fields: &mut Map<String, Value>, path: &str, found: &mut Vec<String>) {
    let keyed: Vec<String> = fields
        .keys()
        .filter(|name| without_keys(name).is_some())
        .cloned()
        .collect();
    for name in keyed {
        if let Some(field) = fields.remove(&name) {
            let clean = without_keys(&name).unwrap_or_else(|| MARKER.to_owned());
            found.push(format!("{path} (a field name)").trim_start().to_owned());
            fields.insert(clean, field);
        }
    }
}

/// `text` with each private key PEM section replaced by [`MARKER`], or
/// `None` when it holds none. A sealed value, or a key whose section cannot
/// be delimited (no line breaks, no END line), takes the whole text.
fn without_keys(text: &str) -> Option<String> {
    if text.starts_with(SEALED_PREFIX) {
        return Some(MARKER.to_owned());
    }
    if !holds_private_key(text) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for line in text.split_inclusive('\n') {
        let key_line = holds_private_key(line);
        if !inside && key_line && contains_ignore_case(line, "-----BEGIN") {
            inside = true;
            out.push_str(MARKER);
        }
        if !inside {
            out.push_str(line);
        } else if key_line && contains_ignore_case(line, "-----END") {
            inside = false;
            if line.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    if holds_private_key(&out) {
        out = MARKER.to_owned();
    }
    Some(out)
}

fn contains_ignore_case(text: &str, needle: &str) -> bool {
    text.as_bytes()
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn key(label: &str) -> String {
        format!("-----BEGIN {label}-----\nMC4CAQAw\nBQYDK2Vw\n-----END {label}-----\n")
    }

    #[test]
    fn keys_anywhere_are_replaced_and_located() {
        let mut value = json!({
            "cert": format!("{CERT}{}", key("PRIVATE KEY")),
            "certs": [CERT, format!("{}{CERT}", key("RSA PRIVATE KEY"))],
            "client": {"ca": format!("{CERT}{}", key("ec private key"))},
            "labels": {"k": key("ENCRYPTED PRIVATE KEY")},
            "plugins": {"x": {"secret": "$enc:v1:AAAA"}},
            "desc": "no key here",
            "n": 1,
        });
        let found = scrub_private_keys(&mut value);
        assert_eq!(
            found,
            [
                "cert",
                "certs[1]",
                "client.ca",
                "labels.k",
                "plugins.x.secret"
            ]
        );
        let text = value.to_string();
        assert!(!holds_private_key(&text), "{value}");
        assert!(!text.contains(SEALED_PREFIX), "{value}");
        assert_eq!(value["cert"], format!("{CERT}{MARKER}\n"));
        assert_eq!(value["certs"][1], format!("{MARKER}\n{CERT}"));
        assert_eq!(value["desc"], "no key here");
    }

    #[test]
    fn undelimited_keys_take_the_whole_text() {
        for text in [
            "-----BEGIN PRIVATE KEY-----MC4CAQAw-----END PRIVATE KEY-----",
            "MC4CAQAw\n-----END PRIVATE KEY-----\n",
        ] {
            let mut value = json!({ "cert": text });
            assert_eq!(scrub_private_keys(&mut value), ["cert"]);
            assert_eq!(value["cert"], MARKER, "{text}");
        }
    }

    #[test]
    fn keys_in_field_names_are_replaced() {
        let mut value = json!({"labels": {(key("PRIVATE KEY")): "v"}});
        let found = scrub_private_keys(&mut value);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(!value.to_string().contains("PRIVATE KEY"), "{value}");
    }

    #[test]
    fn clean_values_are_untouched() {
        let original = json!({"cert": CERT, "list": [1, "a"], "x": {"y": null}});
        let mut value = original.clone();
        assert!(scrub_private_keys(&mut value).is_empty());
        assert_eq!(value, original);
    }
}
