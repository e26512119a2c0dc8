//! `ocsp_stapling` of an SSL object: what the gateway needs to fetch the
//! OCSP response of each of its certificates.

use std::time::Duration;

use super::{CertKeyPair, ValidationError};
use crate::resource::OcspStaplingSettings;
use crate::x509;

/// APISIX's default `cache_ttl`.
const DEFAULT_CACHE_TTL: u64 = 3600;

/// Validated `ocsp_stapling` with `enabled: true`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OcspStapling {
    /// How long a response is used before it is fetched again, at most.
    pub cache_ttl: Duration,
    /// Per certificate pair (`cert`, then `certs[i]`): its responder URL.
    pub responders: Vec<String>,
}

impl OcspStapling {
    /// Every pair needs an `http://` OCSP responder in its certificate and
    /// its issuer's certificate after it in the chain (the request names the
    /// certificate by its issuer's name and key).
    pub(super) fn new(
        settings: &OcspStaplingSettings,
        pairs: &[CertKeyPair],
    ) -> Result<OcspStapling, ValidationError> {
        let responders = pairs
            .iter()
            .enumerate()
            .map(|(i, pair)| responder(&field(i), pair))
            .collect::<Result<_, _>>()?;
        Ok(OcspStapling {
            cache_ttl: Duration::from_secs(settings.cache_ttl.unwrap_or(DEFAULT_CACHE_TTL)),
            responders,
        })
    }
}

fn field(pair: usize) -> String {
    match pair {
        0 => "cert".to_owned(),
        n => format!("certs[{}]", n - 1),
    }
}

fn responder(field: &str, pair: &CertKeyPair) -> Result<String, ValidationError> {
    let refuse =
        |reason: String| ValidationError::field("ocsp_stapling", format!("{field}: {reason}"));
    let leaf = pair
        .chain
        .first()
        .ok_or_else(|| refuse("no certificate".into()))?;
    if pair.chain.len() < 2 {
        return Err(refuse(
            "the issuer's certificate must follow the certificate (the OCSP request names the certificate by its issuer)".into(),
        ));
    }
    let urls = x509::ocsp_urls(leaf).map_err(|e| refuse(e.to_string()))?;
    urls.into_iter()
        .find(|url| url.starts_with("http://"))
        .ok_or_else(|| {
            refuse(
                "the certificate names no http:// OCSP responder (Authority Information Access)"
                    .into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
    use serde_json::json;

    use crate::resource::Kind;
    use crate::testing::ocsp_aia;
    use crate::validate::{validate, Valid, ValidationError};
    use crate::x509::test_pki::TestCa;

    /// A leaf for a.test with `url` as its responder, and its key.
    fn leaf(ca: &TestCa, url: Option<&str>) -> (String, String) {
        let mut params = CertificateParams::new(vec!["a.test".to_owned()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, "a.test");
        params.custom_extensions.extend(url.map(ocsp_aia));
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let cert = params.signed_by(&key, &ca.issuer).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    fn ssl(
        cert: String,
        key: String,
        stapling: serde_json::Value,
    ) -> Result<Valid, ValidationError> {
        validate(
            Kind::Ssls,
            "1",
            &json!({"sni": "a.test", "cert": cert, "key": key, "ocsp_stapling": stapling}),
        )
    }

    #[test]
    fn stapling_takes_the_responder_from_the_certificate() {
        let ca = TestCa::new("OCSP CA", &PKCS_ECDSA_P256_SHA256);
        let (cert, key) = leaf(&ca, Some("http://127.0.0.1:8888/ocsp"));
        let chain = format!("{cert}{}", ca.cert_pem());
        let Ok(Valid::Ssl(valid)) = ssl(
            chain.clone(),
            key.clone(),
            json!({"enabled": true, "cache_ttl": 120}),
        ) else {
            panic!("valid");
        };
        let stapling = valid.ocsp_stapling.as_ref().expect("enabled");
        assert_eq!(stapling.responders, ["http://127.0.0.1:8888/ocsp"]);
        assert_eq!(stapling.cache_ttl.as_secs(), 120);

        let Ok(Valid::Ssl(off)) = ssl(chain.clone(), key.clone(), json!({"enabled": false})) else {
            panic!("valid");
        };
        assert!(off.ocsp_stapling.is_none());

        let err = ssl(cert, key.clone(), json!({"enabled": true})).expect_err("no issuer");
        assert!(
            err.to_string().contains("issuer's certificate must follow"),
            "{err}"
        );
        let err = ssl(chain, key, json!({"enabled": true, "cache_ttl": 5})).expect_err("ttl");
        assert!(err.to_string().contains("cache_ttl"), "{err}");
    }

    #[test]
    fn stapling_needs_an_http_responder() {
        let ca = TestCa::new("OCSP CA", &PKCS_ECDSA_P256_SHA256);
        for url in [None, Some("ldap://ca.test/ocsp")] {
            let (cert, key) = leaf(&ca, url);
            let chain = format!("{cert}{}", ca.cert_pem());
            let err = ssl(chain, key, json!({"enabled": true})).expect_err("no responder");
            assert!(
                err.to_string().contains("no http:// OCSP responder"),
                "{err}"
            );
        }
    }
}
