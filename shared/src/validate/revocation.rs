//! The chain settings shared by an SSL object's `client` section and the
//! `client-cert-auth` plugin: `depth`, `crl`, `crl_mode`, `unknown_status`.
//! Checked here for both, so the two verifiers cannot drift apart.

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use super::ValidationError;
use crate::resource::{CrlMode, UnknownStatus};
use crate::x509::{self, CrlSummary};

/// Validated revocation settings: every CRL parsed.
#[derive(Debug, Clone)]
pub struct Revocation {
    /// Every CRL of every `crl` entry, in order.
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    pub summaries: Vec<CrlSummary>,
    pub mode: CrlMode,
    pub unknown_status: UnknownStatus,
}

impl Revocation {
    /// One line per CRL past its `nextUpdate` at `now` (unix seconds): with
    /// `crl_mode: strict` such a CRL refuses every certificate it covers.
    pub fn stale_crls(&self, now: i64) -> Vec<String> {
        self.summaries
            .iter()
            .filter(|crl| crl.is_stale_at(now))
            .map(|crl| format!("the CRL of {} is past its nextUpdate", crl.issuer))
            .collect()
    }
}

/// Refuses a CRL that names one of `ca` as its issuer without being signed
/// by it: such a CRL would make every certificate of that CA fail at
/// verification time. (A CRL of another issuer, e.g. an intermediate CA, is
/// checked when a chain through that issuer is verified.)
fn check_signers(
    field: &str,
    revocation: &Revocation,
    ca: &[CertificateDer<'_>],
) -> Result<(), ValidationError> {
    let anchors: Vec<X509Certificate<'_>> = ca
        .iter()
        .filter_map(|der| X509Certificate::from_der(der.as_ref()).ok())
        .map(|(_, cert)| cert)
        .collect();
    for (i, der) in revocation.crls.iter().enumerate() {
        let Ok((_, crl)) = CertificateRevocationList::from_der(der.as_ref()) else {
            continue;
        };
        let mut named = anchors
            .iter()
            .filter(|cert| cert.subject().as_raw() == crl.issuer().as_raw())
            .peekable();
        if named.peek().is_some()
            && !named.any(|cert| crl.verify_signature(cert.public_key()).is_ok())
        {
            return Err(ValidationError::field(
                field,
                format!(
                    "CRL #{i} names {} as its issuer but is not signed by that CA",
                    revocation
                        .summaries
                        .get(i)
                        .map_or("its CA", |s| s.issuer.as_str())
                ),
            ));
        }
    }
    Ok(())
}

/// The raw settings, as found in the object.
pub(super) struct RevocationSpec<'a> {
    pub(super) crl: Option<&'a [String]>,
    pub(super) mode: Option<CrlMode>,
    pub(super) unknown_status: Option<UnknownStatus>,
}

/// nginx `ssl_verify_depth`: 1 unless given, never 0 (a chain always has
/// its leaf). `prefix` as in [`revocation`].
pub(super) fn verify_depth(prefix: &str, depth: Option<u32>) -> Result<u32, ValidationError> {
    match depth.unwrap_or(1) {
        0 => Err(ValidationError::field(
            prefixed(prefix, "depth"),
            "must be at least 1",
        )),
        depth => Ok(depth),
    }
}

/// `None` without `crl`. A CRL naming one of `ca` as its issuer must be
/// signed by it. `prefix` prefixes the field names in errors (`client` gives
/// `client.crl[1]`; empty gives `crl[1]`).
pub(super) fn revocation(
    prefix: &str,
    spec: RevocationSpec<'_>,
    ca: &[CertificateDer<'_>],
) -> Result<Option<Revocation>, ValidationError> {
    let named = |name: &str| prefixed(prefix, name);
    let crl = spec.crl.unwrap_or_default();
    if crl.is_empty() {
        for (set, name) in [
            (spec.mode.is_some(), "crl_mode"),
            (spec.unknown_status.is_some(), "unknown_status"),
        ] {
            if set {
                return Err(ValidationError::field(
                    named(name),
                    "has no effect without `crl`",
                ));
            }
        }
        return Ok(None);
    }
    let mut crls = Vec::new();
    for (i, pem) in crl.iter().enumerate() {
        let parsed = x509::parse_crls(pem)
            .map_err(|e| ValidationError::field(named(&format!("crl[{i}]")), e.to_string()))?;
        crls.extend(parsed);
    }
    let summaries = crls
        .iter()
        .map(CrlSummary::from_der)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ValidationError::field(named("crl"), e.to_string()))?;
    let revocation = Revocation {
        crls,
        summaries,
        mode: spec.mode.unwrap_or_default(),
        unknown_status: spec.unknown_status.unwrap_or_default(),
    };
    check_signers(&named("crl"), &revocation, ca)?;
    Ok(Some(revocation))
}

fn prefixed(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

#[cfg(test)]
mod tests {
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
