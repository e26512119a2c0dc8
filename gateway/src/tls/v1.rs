//! X.509 version 1 client certificates.
//!
//! `openssl x509 -req` without `-extfile` (the recipe of the APISIX client
//! mTLS walkthrough) writes version 1 certificates, which nginx, APISIX and
//! Kong accept and webpki refuses to parse. A v1 leaf carries no extensions
//! (no key usage, no basic constraints), so the only sound chain for it is the
//! shortest one: it must be issued directly by a trust anchor. v1 certificates
//! are never accepted as intermediates (webpki refuses them there too).

use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::error::X509Error;
use x509_parser::prelude::{FromDer, X509Certificate, X509Version};
use x509_parser::x509::SubjectPublicKeyInfo;

use super::cert_error::ClientCertError;

/// The parts of a trust anchor needed to check a v1 leaf it issued.
pub(crate) struct V1Issuer {
    /// DER of the anchor's subject name, compared with the leaf's issuer.
    subject: Vec<u8>,
    /// DER `SubjectPublicKeyInfo` of the anchor.
    spki: Vec<u8>,
}

impl V1Issuer {
    pub(crate) fn from_ca(
        der: &CertificateDer<'_>,
    ) -> Result<V1Issuer, x509_parser::nom::Err<X509Error>> {
        let (_, ca) = X509Certificate::from_der(der.as_ref())?;
        Ok(V1Issuer {
            subject: ca.subject().as_raw().to_vec(),
            spki: ca.public_key().raw.to_vec(),
        })
    }

    fn signed(&self, leaf: &X509Certificate<'_>) -> bool {
        SubjectPublicKeyInfo::from_der(&self.spki)
            .is_ok_and(|(_, spki)| leaf.verify_signature(Some(&spki)).is_ok())
    }
}

/// A v1 leaf that passed [`verify_leaf`], named for the operator's log.
pub(crate) struct V1Leaf {
    pub(crate) subject: String,
    pub(crate) serial: String,
    /// Issuer and serial number: identifies the certificate.
    pub(crate) identity: Vec<u8>,
}

/// Accepts a v1 `leaf` issued (and signed) by one of `issuers` and valid at
/// `now`. Self-issued certificates are refused: a v1 certificate cannot say
/// whether it is a CA, and a self-signed leaf proves nothing.
pub(crate) fn verify_leaf(
    leaf: &CertificateDer<'_>,
    issuers: &[V1Issuer],
    now: UnixTime,
) -> Result<V1Leaf, ClientCertError> {
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| ClientCertError::Malformed(e.to_string()))?;
    if cert.version() != X509Version::V1 {
        return Err(ClientCertError::Malformed(format!(
            "X.509 version {} is not supported",
            cert.version().0.saturating_add(1)
        )));
    }
    let issuer = cert.issuer().as_raw();
    if issuer == cert.subject().as_raw() {
        return Err(ClientCertError::SelfSigned);
    }
    let mut named = issuers.iter().filter(|ca| ca.subject == issuer).peekable();
    if named.peek().is_none() {
        return Err(ClientCertError::UnknownIssuer);
    }
    if !named.any(|ca| ca.signed(&cert)) {
        return Err(ClientCertError::BadSignature);
    }
    check_validity(&cert, now)?;
    Ok(V1Leaf {
        subject: cert.subject().to_string(),
        serial: cert.raw_serial_as_string(),
        identity: [issuer, cert.raw_serial()].concat(),
    })
}

fn check_validity(cert: &X509Certificate<'_>, now: UnixTime) -> Result<(), ClientCertError> {
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let validity = cert.validity();
    if now < validity.not_before.timestamp() {
        return Err(ClientCertError::NotYetValid);
    }
    if now > validity.not_after.timestamp() {
        return Err(ClientCertError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::tls::testing::WalkthroughPki;

    fn at(secs: u64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(secs))
    }

    #[test]
    fn checks_issuer_signature_and_dates() {
        let pki = WalkthroughPki::new();
        let issuers = [V1Issuer::from_ca(&pki.cert("ca.cer")).unwrap()];
        let verify =
            |file: &str, now| verify_leaf(&pki.cert(file), &issuers, now).map(|leaf| leaf.subject);

        assert_eq!(verify("client.cer", UnixTime::now()).unwrap(), "CN=CLIENT");
        assert_eq!(
            verify("client.cer", at(0)).unwrap_err(),
            ClientCertError::NotYetValid
        );
        // `-days 36500` from now ends before the year 2200.
        let year_2200 = 7_258_118_400;
        assert_eq!(
            verify("client.cer", at(year_2200)).unwrap_err(),
            ClientCertError::Expired
        );
        assert_eq!(
            verify("stranger.cer", UnixTime::now()).unwrap_err(),
            ClientCertError::UnknownIssuer
        );
        assert_eq!(
            verify("forged.cer", UnixTime::now()).unwrap_err(),
            ClientCertError::BadSignature
        );
        assert_eq!(
            verify("selfsigned.cer", UnixTime::now()).unwrap_err(),
            ClientCertError::SelfSigned
        );
        assert_eq!(
            verify("ca.cer", UnixTime::now()).unwrap_err(),
            ClientCertError::SelfSigned
        );
    }

    #[test]
    fn refuses_v3_and_garbage() {
        let pki = WalkthroughPki::new();
        let issuers = [V1Issuer::from_ca(&pki.cert("ca.cer")).unwrap()];
        let v3 = crate::tls::testing::Ca::new("V3").client("v3");
        assert!(matches!(
            verify_leaf(v3.leaf(), &issuers, UnixTime::now()),
            Err(ClientCertError::Malformed(_))
        ));
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(matches!(
            verify_leaf(&garbage, &issuers, UnixTime::now()),
            Err(ClientCertError::Malformed(_))
        ));
    }
}
