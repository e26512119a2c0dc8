//! `mtls-auth` (Kong, callista's plugin): the route needs a verified client
//! certificate, and chosen fields of it travel upstream in request headers,
//! one header per field.

use std::collections::BTreeMap;

use http::{HeaderName, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::PluginSpec;
use crate::error::ValidationError;
use crate::schema::header_name;

pub const NAME: &str = "mtls-auth";

/// `mtls-auth`, validated.
#[derive(Clone, Debug)]
pub struct MtlsAuth {
    /// The answer to a client without a verified certificate (default 401).
    pub status: StatusCode,
    /// Which header carries which field, each header once.
    pub headers: Box<[(HeaderName, CertField)]>,
}

/// A certificate field `mtls-auth` sends upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertField {
    /// `upstream_cert_header`: the PEM, URL-encoded.
    EscapedPem,
    Fingerprint,
    Serial,
    IssuerDn,
    SubjectDn,
    CommonName,
    Organization,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    error_response_code: Option<u16>,
    upstream_cert_header: Option<String>,
    upstream_cert_fingerprint_header: Option<String>,
    upstream_cert_serial_header: Option<String>,
    upstream_cert_i_dn_header: Option<String>,
    upstream_cert_s_dn_header: Option<String>,
    upstream_cert_cn_header: Option<String>,
    upstream_cert_org_header: Option<String>,
}

impl PluginSpec for MtlsAuth {
    const NAME: &'static str = NAME;

    /// Which request headers carry which certificate field upstream.
    fn schema() -> Value {
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

    fn validate(config: &Value, _: &BTreeMap<String, Value>) -> Result<Self, ValidationError> {
        check_distinct_headers(config)?;
        let spec = Spec::deserialize(config).map_err(|e| ValidationError::Json(e.to_string()))?;
        let status = StatusCode::from_u16(spec.error_response_code.unwrap_or(401))
            .map_err(|_| ValidationError::field("error_response_code", "is not an HTTP status"))?;
        let configured = [
            (
                "upstream_cert_header",
                spec.upstream_cert_header,
                CertField::EscapedPem,
            ),
            (
                "upstream_cert_fingerprint_header",
                spec.upstream_cert_fingerprint_header,
                CertField::Fingerprint,
            ),
            (
                "upstream_cert_serial_header",
                spec.upstream_cert_serial_header,
                CertField::Serial,
            ),
            (
                "upstream_cert_i_dn_header",
                spec.upstream_cert_i_dn_header,
                CertField::IssuerDn,
            ),
            (
                "upstream_cert_s_dn_header",
                spec.upstream_cert_s_dn_header,
                CertField::SubjectDn,
            ),
            (
                "upstream_cert_cn_header",
                spec.upstream_cert_cn_header,
                CertField::CommonName,
            ),
            (
                "upstream_cert_org_header",
                spec.upstream_cert_org_header,
                CertField::Organization,
            ),
        ];
        let headers = configured
            .into_iter()
            .filter_map(|(setting, name, field)| Some((setting, name?, field)))
            .map(|(setting, name, field)| {
                HeaderName::from_bytes(name.as_bytes())
                    .map(|name| (name, field))
                    .map_err(|_| ValidationError::field(setting, "is not a valid header name"))
            })
            .collect::<Result<_, _>>()?;
        Ok(MtlsAuth { status, headers })
    }
}

/// Each certificate field goes under its own header: with two settings
/// naming one header (header names ignore case) the second value would
/// replace the first, and an upstream or `mtls-acl` reading that header
/// would get a field nobody meant.
fn check_distinct_headers(config: &Value) -> Result<(), ValidationError> {
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

/// Whether the route's `mtls-auth` (raw, as `route` holds it) sets
/// `header`: such a header carries a field of a verified certificate.
pub(super) fn sets_header(route: &BTreeMap<String, Value>, header: &str) -> bool {
    let settings = route.get(NAME).and_then(Value::as_object);
    settings.is_some_and(|settings| {
        settings.iter().any(|(setting, name)| {
            setting.ends_with("_header")
                && name
                    .as_str()
                    .is_some_and(|name| name.eq_ignore_ascii_case(header))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_become_typed_headers() {
        let config = json!({"upstream_cert_cn_header": "X-Client-CN", "error_response_code": 403});
        let auth = MtlsAuth::validate(&config, &BTreeMap::new()).unwrap();
        assert_eq!(auth.status, StatusCode::FORBIDDEN);
        assert_eq!(
            *auth.headers,
            [(
                HeaderName::from_static("x-client-cn"),
                CertField::CommonName
            )]
        );
        let default = MtlsAuth::validate(&json!({}), &BTreeMap::new()).unwrap();
        assert_eq!(default.status, StatusCode::UNAUTHORIZED);
    }
}
