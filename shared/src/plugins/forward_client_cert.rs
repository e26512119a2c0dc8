//! `forward-client-cert`: tells the upstream who the client is, in Envoy's
//! `X-Forwarded-Client-Cert` (XFCC) and/or RFC 9440's `Client-Cert` /
//! `Client-Cert-Chain`, with Envoy's `forward_client_cert_details` modes.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use super::PluginSpec;
use crate::error::ValidationError;

pub const NAME: &str = "forward-client-cert";

/// `forward-client-cert`, validated. A setting left out takes its default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardClientCert {
    pub mode: Mode,
    pub format: Format,
    /// In Envoy's order, each once.
    pub details: Vec<Detail>,
    /// This proxy's own identity, one header token.
    pub by: Option<String>,
}

/// What becomes of the client's XFCC (Envoy's names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Sanitize,
    ForwardOnly,
    AppendForward,
    SanitizeSet,
    AlwaysForwardOnly,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Xfcc,
    Rfc9440,
    Both,
}

impl Format {
    pub fn xfcc(self) -> bool {
        matches!(self, Format::Xfcc | Format::Both)
    }

    pub fn rfc9440(self) -> bool {
        matches!(self, Format::Rfc9440 | Format::Both)
    }
}

/// XFCC elements beyond `Hash` and `By`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detail {
    Cert,
    Chain,
    Subject,
    Uri,
    Dns,
}

impl PluginSpec for ForwardClientCert {
    const NAME: &'static str = NAME;

    /// Envoy's `forward_client_cert_details` and RFC 9440.
    fn schema() -> Value {
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

    fn validate(config: &Value, _: &BTreeMap<String, Value>) -> Result<Self, ValidationError> {
        let mut spec =
            Self::deserialize(config).map_err(|e| ValidationError::Json(e.to_string()))?;
        spec.details.sort();
        spec.details.dedup();
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_kept_in_envoys_order() {
        let config = json!({"format": "both", "details": ["dns", "cert", "dns"]});
        let parsed = ForwardClientCert::validate(&config, &BTreeMap::new()).unwrap();
        assert_eq!(parsed.details, [Detail::Cert, Detail::Dns]);
        assert!(parsed.format.xfcc() && parsed.format.rfc9440());
        assert_eq!(parsed.mode, Mode::Sanitize);
    }

    #[test]
    fn settings_left_out_take_their_defaults_and_unknown_ones_are_refused() {
        let parsed = ForwardClientCert::validate(&json!({}), &BTreeMap::new()).unwrap();
        assert_eq!((parsed.mode, parsed.format), (Mode::Sanitize, Format::Xfcc));
        assert!(parsed.details.is_empty() && parsed.by.is_none());
        let unknown = json!({"mode": "sanitize", "nope": 1});
        assert!(ForwardClientCert::validate(&unknown, &BTreeMap::new()).is_err());
    }
}
