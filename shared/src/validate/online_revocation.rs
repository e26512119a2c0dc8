//! `revocation` of an SSL object's `client` section and of `client-cert-auth`:
//! online revocation checks. Checked here for both, so the two cannot drift
//! apart.

use std::time::Duration;

use super::ValidationError;
use crate::resource::{OnlineRevocationSettings, RevocationMode};

/// How long a handshake waits for an answer under `hard_fail` by default.
const DEFAULT_TIMEOUT_MS: u64 = 2000;
/// How long an answer is used at most by default (sooner at its
/// `nextUpdate`).
const DEFAULT_CACHE_TTL: u64 = 3600;

/// Validated `revocation` with a mode other than `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OnlineRevocation {
    /// `soft_fail` (default) or `hard_fail`.
    pub mode: RevocationMode,
    /// Ask the OCSP responder of the certificate's Authority Information
    /// Access (default true).
    pub ocsp: bool,
    /// Fetch the CRLs of the certificate's CRL Distribution Points (default
    /// true).
    pub crl_distribution_points: bool,
    /// Check the client's own certificate only, not its intermediates
    /// (default true).
    pub leaf_only: bool,
    /// `timeout_ms` (default 2000).
    pub timeout: Duration,
    /// `cache_ttl` in seconds (default 3600).
    pub cache_ttl: Duration,
}

impl OnlineRevocation {
    /// Whether a certificate without an answer is refused.
    pub fn hard(&self) -> bool {
        self.mode == RevocationMode::HardFail
    }
}

/// `None` for `mode: off`. `prefix` prefixes the field names in errors
/// (`client` gives `client.revocation`).
pub(super) fn online_revocation(
    prefix: &str,
    settings: Option<&OnlineRevocationSettings>,
) -> Result<Option<OnlineRevocation>, ValidationError> {
    let Some(settings) = settings else {
        return Ok(None);
    };
    let mode = settings.mode.unwrap_or_default();
    if mode == RevocationMode::Off {
        return Ok(None);
    }
    let ocsp = settings.ocsp.unwrap_or(true);
    let crl_distribution_points = settings.crl_distribution_points.unwrap_or(true);
    if !ocsp && !crl_distribution_points {
        let field = if prefix.is_empty() {
            "revocation".to_owned()
        } else {
            format!("{prefix}.revocation")
        };
        return Err(ValidationError::field(
            field,
            "enable `ocsp` and/or `crl_distribution_points`, or set `mode: off`",
        ));
    }
    Ok(Some(OnlineRevocation {
        mode,
        ocsp,
        crl_distribution_points,
        leaf_only: settings.leaf_only.unwrap_or(true),
        timeout: Duration::from_millis(settings.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)),
        cache_ttl: Duration::from_secs(settings.cache_ttl.unwrap_or(DEFAULT_CACHE_TTL)),
    }))
}

#[cfg(test)]
mod tests {
    use rcgen::PKCS_ECDSA_P256_SHA256;
    use serde_json::{json, Value};

    use crate::resource::{Kind, RevocationMode};
    use crate::validate::{validate, ClientCertAuth, Valid, ValidationError};
    use crate::x509::test_pki::TestCa;

    fn ssl_with_revocation(revocation: Value) -> Result<Valid, ValidationError> {
        let server_ca = TestCa::new("Server CA", &PKCS_ECDSA_P256_SHA256);
        let server = server_ca.leaf("test.com", &["test.com"], vec![], &PKCS_ECDSA_P256_SHA256);
        let ca = TestCa::new("Client CA", &PKCS_ECDSA_P256_SHA256);
        let body = json!({"sni": "test.com", "cert": server.cert, "key": server.key,
            "client": {"ca": ca.cert_pem(), "revocation": revocation}});
        validate(Kind::Ssls, "1", &body)
    }

    fn online(result: Result<Valid, ValidationError>) -> Option<super::OnlineRevocation> {
        match result {
            Ok(Valid::Ssl(ssl)) => ssl.client.as_ref().unwrap().online_revocation,
            other => panic!("expected an SSL object, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_documented_ones() {
        let parsed = online(ssl_with_revocation(json!({}))).expect("on by default");
        assert_eq!(parsed.mode, RevocationMode::SoftFail);
        assert!(parsed.ocsp && parsed.crl_distribution_points && parsed.leaf_only);
        assert_eq!(parsed.timeout.as_millis(), 2000);
        assert_eq!(parsed.cache_ttl.as_secs(), 3600);
        let parsed = online(ssl_with_revocation(
            json!({"mode": "hard_fail", "ocsp": false, "leaf_only": false, "timeout_ms": 300, "cache_ttl": 5}),
        ))
        .unwrap();
        assert!(parsed.hard() && !parsed.ocsp && !parsed.leaf_only);
        assert_eq!(
            (parsed.timeout.as_millis(), parsed.cache_ttl.as_secs()),
            (300, 5)
        );
        assert!(online(ssl_with_revocation(json!({"mode": "off"}))).is_none());
    }

    #[test]
    fn refuses_bad_settings_naming_the_field() {
        let cases = [
            (json!({"mode": "strict"}), "client.revocation.mode"),
            (json!({"timeout_ms": 0}), "client.revocation.timeout_ms"),
            (json!({"cache_ttl": 0}), "client.revocation.cache_ttl"),
            (json!({"nonce": true}), "client.revocation"),
            (
                json!({"ocsp": false, "crl_distribution_points": false}),
                "client.revocation",
            ),
        ];
        for (revocation, field) in cases {
            match ssl_with_revocation(revocation.clone()) {
                Err(ValidationError::Field { field: blamed, .. }) => {
                    assert_eq!(blamed, field, "{revocation}")
                }
                Err(ValidationError::Schema(reason)) => {
                    assert!(reason.contains("revocation"), "{revocation}: {reason}")
                }
                other => panic!("{revocation}: expected an error, got {other:?}"),
            }
        }
    }

    #[test]
    fn client_cert_auth_takes_the_same_object() {
        let ca = TestCa::new("Route CA", &PKCS_ECDSA_P256_SHA256);
        let config = json!({"ca": [ca.cert_pem()], "revocation": {"mode": "hard_fail"}});
        let parsed = ClientCertAuth::from_config(&config).unwrap();
        assert!(parsed.online_revocation.unwrap().hard());
        let config = json!({"ca": [ca.cert_pem()], "revocation": {"ocsp": false, "crl_distribution_points": false}});
        match ClientCertAuth::from_config(&config) {
            Err(ValidationError::Field { field, .. }) => assert_eq!(field, "revocation"),
            other => panic!("expected a field error, got {other:?}"),
        }
    }
}
