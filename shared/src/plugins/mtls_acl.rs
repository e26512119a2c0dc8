//! `mtls-acl` (Kong), plus `attribute` to read the certificate directly: an
//! access list over one value of the client's identity, read either from a
//! header the route's `mtls-auth` sets or from the verified certificate.

use std::collections::{BTreeMap, HashSet};

use http::HeaderName;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{mtls_auth, PluginSpec};
use crate::error::{exactly_one, OneOf, ValidationError};
use crate::schema::header_name;

pub const NAME: &str = "mtls-acl";

/// `mtls-acl`, validated.
#[derive(Clone, Debug)]
pub struct MtlsAcl {
    pub source: Source,
    /// Entries as the source's values are written ([`Attribute::normalize`]).
    pub list: List,
}

/// Where the value comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A header the route's `mtls-auth` sets from the verified certificate.
    Header(HeaderName),
    Attribute(Attribute),
}

#[derive(Clone, Debug)]
pub enum List {
    Allow(HashSet<String>),
    Deny(HashSet<String>),
}

/// A certificate attribute an ACL can match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attribute {
    SubjectCn,
    SubjectO,
    SubjectOu,
    /// RFC 2253, as `$ssl_client_i_dn`.
    IssuerDn,
    /// RFC 2253, as `$ssl_client_s_dn`.
    SubjectDn,
    /// Uppercase hex, as `$ssl_client_serial`.
    Serial,
    /// Lowercase hex of the DER's SHA-256.
    FingerprintSha256,
    SanDns,
    /// SPIFFE IDs are URI SANs.
    SanUri,
    SanEmail,
}

impl Attribute {
    /// An ACL entry as the attribute's values are written: hex values
    /// compare without colons and in the case the gateway prints them, so
    /// `AB:CD` pasted from `openssl x509 -serial` still matches.
    pub fn normalize(self, configured: &str) -> String {
        match self {
            Attribute::Serial => configured.replace(':', "").to_ascii_uppercase(),
            Attribute::FingerprintSha256 => configured.replace(':', "").to_ascii_lowercase(),
            _ => configured.to_owned(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    certificate_header_name: Option<String>,
    attribute: Option<Attribute>,
    allow: Option<Vec<String>>,
    deny: Option<Vec<String>>,
}

impl PluginSpec for MtlsAcl {
    const NAME: &'static str = NAME;

    fn schema() -> Value {
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

    /// Exactly one list (`allow` or `deny`) and exactly one source of the
    /// value (`certificate_header_name` or `attribute`). A header must be
    /// one that the route's `mtls-auth` sets: any other header is the
    /// client's own word, which the ACL never reads (it would refuse
    /// everyone).
    fn validate(config: &Value, route: &BTreeMap<String, Value>) -> Result<Self, ValidationError> {
        let spec = Spec::deserialize(config).map_err(|e| ValidationError::Json(e.to_string()))?;
        let (allow, entries) =
            match exactly_one(("allow", spec.allow), ("deny", spec.deny), "allow")? {
                OneOf::First(allow) => (true, allow),
                OneOf::Second(deny) => (false, deny),
            };
        let source = source(spec.certificate_header_name, spec.attribute, route)?;
        let entries: HashSet<String> = entries
            .iter()
            .map(|entry| match &source {
                Source::Attribute(attribute) => attribute.normalize(entry),
                Source::Header(_) => entry.clone(),
            })
            .collect();
        let list = if allow {
            List::Allow(entries)
        } else {
            List::Deny(entries)
        };
        Ok(MtlsAcl { source, list })
    }
}

fn source(
    header: Option<String>,
    attribute: Option<Attribute>,
    route: &BTreeMap<String, Value>,
) -> Result<Source, ValidationError> {
    let header = match exactly_one(
        ("certificate_header_name", header),
        ("attribute", attribute),
        "attribute",
    )? {
        OneOf::First(header) => header,
        OneOf::Second(attribute) => return Ok(Source::Attribute(attribute)),
    };
    if !mtls_auth::sets_header(route, &header) {
        return Err(ValidationError::field(
            "certificate_header_name",
            format!(
                "no mtls-auth setting of this route sets {header:?}; set it with mtls-auth \
                 (e.g. upstream_cert_org_header) or use `attribute`"
            ),
        ));
    }
    HeaderName::from_bytes(header.as_bytes())
        .map(Source::Header)
        .map_err(|_| {
            ValidationError::field("certificate_header_name", "is not a valid header name")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_entries_are_normalised_once() {
        let config = json!({"attribute": "serial", "allow": ["ab:cd"]});
        let acl = MtlsAcl::validate(&config, &BTreeMap::new()).unwrap();
        match acl.list {
            List::Allow(entries) => assert!(entries.contains("ABCD")),
            List::Deny(_) => panic!("an allow list"),
        }
    }
}
