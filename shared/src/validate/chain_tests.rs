//! The client-certificate chain settings (`crate::client_chain`) as an SSL
//! object and `client-cert-auth` see them, through [`super::validate`].

#[cfg(test)]
mod crl {
    use rcgen::{
        CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber,
        PKCS_ECDSA_P256_SHA256,
    };
    use serde_json::{json, Value};

    use crate::resource::Kind;
    use crate::validate::{validate, ClientCertAuth, Valid, ValidationError};
    use crate::x509::test_pki::TestCa;

    fn crl(ca: &TestCa, next_update_days: i64) -> String {
        let now = time::OffsetDateTime::now_utc();
        CertificateRevocationListParams {
            this_update: now - time::Duration::days(40),
            next_update: now + time::Duration::days(next_update_days),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(42u64),
                revocation_time: now - time::Duration::days(40),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&ca.issuer)
        .unwrap()
        .pem()
        .unwrap()
    }

    fn ssl_with_client(client: Value) -> Result<Valid, ValidationError> {
        let server_ca = TestCa::new("Server CA", &PKCS_ECDSA_P256_SHA256);
        let server = server_ca.leaf("test.com", &["test.com"], vec![], &PKCS_ECDSA_P256_SHA256);
        let body =
            json!({"sni": "test.com", "cert": server.cert, "key": server.key, "client": client});
        validate(Kind::Ssls, "1", &body)
    }

    #[test]
    fn ssl_objects_take_crls() {
        let ca = TestCa::new("Client CA", &PKCS_ECDSA_P256_SHA256);
        let client = json!({"ca": ca.cert_pem(), "crl": [crl(&ca, 30)], "crl_mode": "leaf_only"});
        let Ok(Valid::Ssl(ssl)) = ssl_with_client(client) else {
            panic!("refused a valid CRL");
        };
        let revocation = ssl.client.as_ref().unwrap().revocation.as_ref().unwrap();
        assert_eq!(revocation.crls.len(), 1);
        assert_eq!(revocation.mode, crate::resource::CrlMode::LeafOnly);
        assert_eq!(
            revocation.unknown_status,
            crate::resource::UnknownStatus::Deny
        );
        assert!(ssl.warnings.is_empty(), "{:?}", ssl.warnings);
    }

    #[test]
    fn stale_crls_are_accepted_with_a_warning() {
        let ca = TestCa::new("Client CA", &PKCS_ECDSA_P256_SHA256);
        let client = json!({"ca": ca.cert_pem(), "crl": [crl(&ca, -1)]});
        let Ok(Valid::Ssl(ssl)) = ssl_with_client(client) else {
            panic!("refused a stale CRL");
        };
        assert_eq!(
            ssl.warnings,
            ["client.crl: the CRL of CN=Client CA is past its nextUpdate"]
        );
    }

    #[test]
    fn refuses_bad_crls_naming_the_field() {
        let ca = TestCa::new("Client CA", &PKCS_ECDSA_P256_SHA256);
        let impostor = TestCa::new("Client CA", &PKCS_ECDSA_P256_SHA256);
        let cases = [
            (
                json!({"ca": ca.cert_pem(), "crl": ["garbage"]}),
                "client.crl[0]",
            ),
            (
                json!({"ca": ca.cert_pem(), "crl": [crl(&impostor, 30)]}),
                "client.crl",
            ),
            (
                json!({"ca": ca.cert_pem(), "unknown_status": "allow"}),
                "client.unknown_status",
            ),
        ];
        for (client, field) in cases {
            match ssl_with_client(client.clone()) {
                Err(ValidationError::Field {
                    field: blamed,
                    reason,
                }) => {
                    assert_eq!(blamed, field, "{reason}")
                }
                other => panic!("{client}: expected a field error, got {other:?}"),
            }
        }
        // Another issuer's CRL (an intermediate's) cannot be checked here.
        let other = TestCa::new("Intermediate", &PKCS_ECDSA_P256_SHA256);
        let client = json!({"ca": ca.cert_pem(), "crl": [crl(&other, 30)]});
        assert!(ssl_with_client(client).is_ok());
    }

    #[test]
    fn client_cert_auth_applies_the_same_rules() {
        let ca = TestCa::new("Route CA", &PKCS_ECDSA_P256_SHA256);
        let impostor = TestCa::new("Route CA", &PKCS_ECDSA_P256_SHA256);
        let cases = [
            (json!({"ca": [ca.cert_pem()], "depth": 0}), "depth"),
            (
                json!({"ca": [ca.cert_pem()], "crl": [crl(&impostor, 30)]}),
                "crl",
            ),
            (
                json!({"ca": [ca.cert_pem()], "crl_mode": "leaf_only"}),
                "crl_mode",
            ),
        ];
        for (config, field) in cases {
            match ClientCertAuth::from_config(&config) {
                Err(ValidationError::Field { field: blamed, .. }) => assert_eq!(blamed, field),
                other => panic!("{config}: expected a field error, got {other:?}"),
            }
        }
        let config = json!({"ca": [ca.cert_pem()], "crl": [crl(&ca, 30)]});
        let parsed = ClientCertAuth::from_config(&config).unwrap();
        assert_eq!(
            (parsed.depth, parsed.revocation.unwrap().crls.len()),
            (1, 1)
        );
    }
}

#[cfg(test)]
mod online {
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

    fn online(
        result: Result<Valid, ValidationError>,
    ) -> Option<crate::client_chain::OnlineRevocation> {
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
