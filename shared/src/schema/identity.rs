//! Schemas of the client-identity plugins (`mtls-auth`, `mtls-acl`,
//! `client-cert-auth`, `forward-client-cert`) and of the revocation settings
//! they share with an SSL object's `client` section.
//!
//! Rules that need more than one field ("`allow` or `deny`, not both") are
//! semantic checks in `crate::validate`, with a message naming the fields.

use serde_json::{json, Value};

/// RFC 9110 token: a header name.
fn header_name() -> Value {
    json!({"type": "string", "pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", "maxLength": 256})
}

/// One PEM bundle (a CA file, a CRL file): large but bounded.
fn pem_bundle() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 1048576})
}

pub(super) fn crl_list_schema() -> Value {
    json!({"type": "array", "items": pem_bundle(), "minItems": 1, "maxItems": 64})
}

pub(super) fn crl_mode_schema() -> Value {
    json!({"enum": ["strict", "leaf_only"]})
}

/// `revocation`: online checks (OCSP, CRL distribution points).
pub(super) fn online_revocation_schema() -> Value {
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

pub(super) fn unknown_status_schema() -> Value {
    json!({"enum": ["allow", "deny"]})
}

/// Kong `mtls-auth` (callista's plugin): which request headers carry which
/// certificate field upstream.
pub(super) fn mtls_auth_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "error_response_code": {"type": "integer", "minimum": 400, "maximum": 599},
            "upstream_cert_header": header_name(),
            "upstream_cert_fingerprint_header": header_name(),
            "upstream_cert_serial_header": header_name(),
            "upstream_cert_i_dn_header": header_name(),
            "upstream_cert_s_dn_header": header_name(),
            "upstream_cert_cn_header": header_name(),
            "upstream_cert_org_header": header_name()
        },
        "additionalProperties": false
    })
}

/// Kong `mtls-acl`, plus `attribute` to read the certificate directly.
pub(super) fn mtls_acl_schema() -> Value {
    let values = json!({
        "type": "array",
        "items": {"type": "string", "maxLength": 4096},
        "minItems": 1,
        "maxItems": 4096
    });
    json!({
        "type": "object",
        "properties": {
            "certificate_header_name": header_name(),
            "attribute": {"enum": [
                "subject_cn", "subject_o", "subject_ou", "issuer_dn", "subject_dn",
                "serial", "fingerprint_sha256", "san_dns", "san_uri", "san_email"
            ]},
            "allow": values,
            "deny": values
        },
        "additionalProperties": false
    })
}

/// WSO2 APK-style per-route client certificates.
pub(super) fn client_cert_auth_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "required": {"enum": ["mandatory", "optional"]},
            "certificates": {
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": 65536},
                "minItems": 1,
                "maxItems": 256
            },
            "ca": {"type": "array", "items": pem_bundle(), "minItems": 1, "maxItems": 64},
            "depth": {"type": "integer", "minimum": 1, "maximum": 100},
            "crl": crl_list_schema(),
            "crl_mode": crl_mode_schema(),
            "unknown_status": unknown_status_schema(),
            "revocation": online_revocation_schema(),
            "cert_header": {
                "type": "object",
                "properties": {
                    "name": header_name(),
                    "encoding": {"enum": ["pem", "url-pem", "base64-der"]},
                    "trusted_sources": {
                        "type": "array",
                        "items": {"type": "string", "minLength": 1, "maxLength": 64},
                        "maxItems": 1024
                    },
                    "trusted_certificates": {
                        "type": "array",
                        "items": {"type": "string", "minLength": 1, "maxLength": 65536},
                        "maxItems": 256
                    }
                },
                "required": ["name"],
                "additionalProperties": false
            }
        },
        "additionalProperties": false
    })
}

/// Envoy's `forward_client_cert_details` and RFC 9440.
pub(super) fn forward_client_cert_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "mode": {"enum": [
                "sanitize", "forward_only", "append_forward", "sanitize_set", "always_forward_only"
            ]},
            "format": {"enum": ["xfcc", "rfc9440", "both"]},
            "details": {
                "type": "array",
                "items": {"enum": ["cert", "chain", "subject", "uri", "dns"]},
                "uniqueItems": true
            },
            // Envoy's `By`: this proxy's own identity (a URI SAN of its
            // certificate). One header token, no separators or quotes.
            "by": {"type": "string", "minLength": 1, "maxLength": 2048, "pattern": "^[\\x21-\\x7e]+$"}
        },
        "additionalProperties": false
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::error::ValidationError;
    use crate::resource::Kind;
    use crate::schema::check;

    fn route(name: &str, conf: serde_json::Value) -> serde_json::Value {
        json!({"uri": "/", "upstream_id": "1", "plugins": {name: conf}})
    }

    fn refused(name: &str, conf: serde_json::Value) -> String {
        match check(Kind::Routes, &route(name, conf.clone())) {
            Err(ValidationError::Schema(message)) => message,
            other => panic!("{name} {conf}: expected a schema error, got {other:?}"),
        }
    }

    #[test]
    fn accepts_the_documented_shapes() {
        let ok = [
            ("mtls-auth", json!({})),
            (
                "mtls-auth",
                json!({"upstream_cert_s_dn_header": "X-Client-Cert-Dn", "error_response_code": 403}),
            ),
            (
                "mtls-acl",
                json!({"certificate_header_name": "X-O", "allow": ["a"]}),
            ),
            (
                "mtls-acl",
                json!({"attribute": "san_uri", "deny": ["spiffe://x/y"]}),
            ),
            (
                "client-cert-auth",
                json!({"required": "optional", "ca": ["pem"], "crl": ["pem"], "crl_mode": "leaf_only",
                       "unknown_status": "allow",
                       "cert_header": {"name": "X-WSO2-CLIENT-CERTIFICATE", "encoding": "base64-der",
                                       "trusted_sources": ["10.0.0.0/8"]}}),
            ),
            ("forward-client-cert", json!({})),
            (
                "forward-client-cert",
                json!({"mode": "append_forward", "format": "both", "details": ["subject", "uri"],
                       "by": "spiffe://portcullis/gw"}),
            ),
        ];
        for (name, conf) in ok {
            assert_eq!(
                check(Kind::Routes, &route(name, conf.clone())),
                Ok(()),
                "{name} {conf}"
            );
        }
    }

    #[test]
    fn refuses_typos_and_bad_values() {
        let bad = [
            (
                "mtls-auth",
                json!({"upstream_cert_dn_header": "X"}),
                "upstream_cert_dn_header",
            ),
            (
                "mtls-auth",
                json!({"upstream_cert_cn_header": "Bad Name"}),
                "upstream_cert_cn_header",
            ),
            (
                "mtls-acl",
                json!({"attribute": "subject_c", "allow": ["a"]}),
                "attribute",
            ),
            (
                "mtls-acl",
                json!({"attribute": "subject_o", "allow": []}),
                "allow",
            ),
            (
                "client-cert-auth",
                json!({"required": "always"}),
                "required",
            ),
            (
                "client-cert-auth",
                json!({"ca": ["x"], "crl_mode": "lax"}),
                "crl_mode",
            ),
            (
                "client-cert-auth",
                json!({"cert_header": {"encoding": "pem"}}),
                "name",
            ),
            ("forward-client-cert", json!({"mode": "set"}), "mode"),
            (
                "forward-client-cert",
                json!({"details": ["hash"]}),
                "details",
            ),
            ("forward-client-cert", json!({"by": "a;b c"}), "by"),
        ];
        for (name, conf, needle) in bad {
            let message = refused(name, conf.clone());
            assert!(message.contains(needle), "{name} {conf}: {message}");
        }
    }
}
