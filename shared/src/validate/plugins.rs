//! Semantic checks of plugin configurations, beyond their JSON schemas:
//! PEMs and CRLs that parse, settings that exclude each other.

use std::collections::BTreeMap;

use serde_json::Value;

use super::client_cert_auth::{ClientCertAuth, CLIENT_CERT_AUTH};
use super::ValidationError;

/// Checks every plugin of a route; errors name `plugins.<name>.<field>`.
pub(super) fn check(plugins: &BTreeMap<String, Value>) -> Result<(), ValidationError> {
    for (name, config) in plugins {
        let checked = match name.as_str() {
            CLIENT_CERT_AUTH => ClientCertAuth::from_config(config).map(drop),
            "mtls-acl" => mtls_acl(config),
            _ => Ok(()),
        };
        checked.map_err(|e| e.within(&format!("plugins.{name}")))?;
    }
    Ok(())
}

/// Exactly one list (`allow` or `deny`) and exactly one source of the value
/// (`certificate_header_name` or `attribute`).
fn mtls_acl(config: &Value) -> Result<(), ValidationError> {
    let has = |field: &str| config.get(field).is_some();
    match (has("allow"), has("deny")) {
        (true, true) => {
            return Err(ValidationError::field(
                "allow",
                "give either `allow` or `deny`, not both",
            ))
        }
        (false, false) => {
            return Err(ValidationError::field(
                "allow",
                "one of `allow` or `deny` is required",
            ))
        }
        _ => {}
    }
    match (has("certificate_header_name"), has("attribute")) {
        (true, true) => Err(ValidationError::field(
            "attribute",
            "give either `certificate_header_name` or `attribute`, not both",
        )),
        (false, false) => Err(ValidationError::field(
            "attribute",
            "one of `certificate_header_name` or `attribute` is required",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check_one(name: &str, config: Value) -> Result<(), ValidationError> {
        check(&BTreeMap::from([(name.to_owned(), config)]))
    }

    #[test]
    fn mtls_acl_needs_one_list_and_one_source() {
        let ok = json!({"attribute": "subject_o", "allow": ["Callista Enterprise AB"]});
        assert_eq!(check_one("mtls-acl", ok), Ok(()));
        let ok = json!({"certificate_header_name": "X-O", "deny": ["Other Corp"]});
        assert_eq!(check_one("mtls-acl", ok), Ok(()));
        let both = json!({"attribute": "subject_o", "allow": ["a"], "deny": ["b"]});
        assert_eq!(
            check_one("mtls-acl", both).unwrap_err().to_string(),
            "invalid plugins.mtls-acl.allow: give either `allow` or `deny`, not both"
        );
        let neither = json!({"attribute": "subject_o"});
        assert!(check_one("mtls-acl", neither).is_err());
        let two_sources =
            json!({"attribute": "subject_o", "certificate_header_name": "X-O", "allow": ["a"]});
        assert!(check_one("mtls-acl", two_sources).is_err());
        let no_source = json!({"allow": ["a"]});
        assert!(check_one("mtls-acl", no_source).is_err());
    }

    #[test]
    fn client_cert_auth_pems_are_parsed() {
        let err = check_one("client-cert-auth", json!({"ca": ["garbage"]})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid plugins.client-cert-auth.ca[0]: no PEM certificate found"
        );
        assert_eq!(check_one("proxy-rewrite", json!({"uri": "/"})), Ok(()));
    }
}
