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
            "mtls-acl" => mtls_acl(config, plugins.get("mtls-auth")),
            "mtls-auth" => check_mtls_auth(config),
            _ => Ok(()),
        };
        checked.map_err(|e| e.within(&format!("plugins.{name}")))?;
    }
    Ok(())
}

/// `mtls-auth` sends each certificate field under its own header: with two
/// settings naming one header (header names ignore case) the second value
/// would replace the first, and an upstream or `mtls-acl` reading that
/// header would get a field nobody meant.
pub fn check_mtls_auth(config: &Value) -> Result<(), ValidationError> {
    let Some(settings) = config.as_object() else {
        return Ok(());
    };
    let headers: Vec<(&String, &str)> = settings
        .iter()
        .filter(|(setting, _)| setting.ends_with("_header"))
        .filter_map(|(setting, name)| Some((setting, name.as_str()?)))
        .collect();
    for (i, (first, name)) in headers.iter().enumerate() {
        let same = headers[i + 1..]
            .iter()
            .find(|(_, other)| other.eq_ignore_ascii_case(name));
        if let Some((second, _)) = same {
            return Err(ValidationError::field(
                *second,
                format!("names the same header as `{first}` ({name:?}); give each its own header"),
            ));
        }
    }
    Ok(())
}

/// Exactly one list (`allow` or `deny`) and exactly one source of the value
/// (`certificate_header_name` or `attribute`). A header must be one that
/// the route's `mtls-auth` sets: any other header is the client's own word,
/// which the ACL never reads (it would refuse everyone).
fn mtls_acl(config: &Value, mtls_auth: Option<&Value>) -> Result<(), ValidationError> {
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
    let header = match (config.get("certificate_header_name"), has("attribute")) {
        (Some(_), true) => {
            return Err(ValidationError::field(
                "attribute",
                "give either `certificate_header_name` or `attribute`, not both",
            ))
        }
        (None, false) => {
            return Err(ValidationError::field(
                "attribute",
                "one of `certificate_header_name` or `attribute` is required",
            ))
        }
        (None, true) => return Ok(()),
        (Some(header), false) => header.as_str().unwrap_or_default(),
    };
    let set_by_mtls_auth = mtls_auth.and_then(Value::as_object).is_some_and(|auth| {
        auth.iter().any(|(setting, name)| {
            setting.ends_with("_header")
                && name
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(header))
        })
    });
    if set_by_mtls_auth {
        return Ok(());
    }
    Err(ValidationError::field(
        "certificate_header_name",
        format!(
            "no mtls-auth setting of this route sets {header:?}; set it with mtls-auth \
             (e.g. upstream_cert_org_header) or use `attribute`"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check_one(name: &str, config: Value) -> Result<(), ValidationError> {
        check(&BTreeMap::from([(name.to_owned(), config)]))
    }

    #[test]
    fn mtls_acl_reads_a_header_only_mtls_auth_sets() {
        let acl = json!({"certificate_header_name": "X-Client-Cert-Organization",
                         "allow": ["Callista Enterprise AB"]});
        let auth = json!({"upstream_cert_org_header": "x-client-cert-organization"});
        let plugins = BTreeMap::from([
            ("mtls-acl".to_owned(), acl.clone()),
            ("mtls-auth".to_owned(), auth),
        ]);
        assert_eq!(check(&plugins), Ok(()));
        let err = check_one("mtls-acl", acl).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "invalid plugins.mtls-acl.certificate_header_name: no mtls-auth setting"
            ),
            "{err}"
        );
    }

    #[test]
    fn mtls_auth_refuses_two_settings_naming_one_header() {
        let distinct = json!({"upstream_cert_cn_header": "X-Client-CN",
                              "upstream_cert_org_header": "X-Client-O"});
        assert_eq!(check_one("mtls-auth", distinct), Ok(()));
        let same = json!({"upstream_cert_cn_header": "X-Client-Id",
                          "upstream_cert_org_header": "x-client-id"});
        assert_eq!(
            check_one("mtls-auth", same).unwrap_err().to_string(),
            "invalid plugins.mtls-auth.upstream_cert_org_header: names the same header as \
             `upstream_cert_cn_header` (\"X-Client-Id\"); give each its own header"
        );
    }

    #[test]
    fn mtls_acl_needs_one_list_and_one_source() {
        let ok = json!({"attribute": "subject_o", "allow": ["Callista Enterprise AB"]});
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
