//! Who the client is, as the identity plugins see it, and what its
//! certificate says.
//!
//! The client's identity is the certificate a route verified itself
//! (`client-cert-auth`, which may have taken it from a trusted front proxy's
//! header) or else the certificate the SSL object verified at the handshake.
//! A certificate nobody verified is never an identity.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use percent_encoding::utf8_percent_encode;
use shared::plugins::mtls_acl::Attribute;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::X509Name;

use super::vars::{pem, URI_COMPONENT};
use super::RequestCtx;
use crate::context::PeerCert;

/// Set by `client-cert-auth` when the route's own trust set accepted a
/// certificate: from then on, this is the client's identity.
#[derive(Clone, Debug)]
pub(crate) struct RouteIdentity(pub(crate) Arc<PeerCert>);

/// The request headers an identity plugin set from the verified certificate
/// (after removing whatever the client sent under those names). `mtls-acl`
/// reads a header only when it is listed here.
#[derive(Clone, Debug, Default)]
pub(crate) struct IdentityHeaders(Vec<HeaderName>);

impl IdentityHeaders {
    /// Records that `name` now carries a value derived from the identity.
    pub(crate) fn vouch(ctx: &mut RequestCtx<'_>, name: &HeaderName) {
        match ctx.extensions.get_mut::<IdentityHeaders>() {
            Some(headers) => headers.0.push(name.clone()),
            None => {
                ctx.extensions.insert(IdentityHeaders(vec![name.clone()]));
            }
        }
    }

    pub(crate) fn vouched(ctx: &RequestCtx<'_>, name: &HeaderName) -> bool {
        ctx.extensions
            .get::<IdentityHeaders>()
            .is_some_and(|headers| headers.0.contains(name))
    }
}

/// The client's verified certificate, if any: the route's verdict first,
/// then the handshake's.
pub(crate) fn verified_client<'a>(ctx: &'a RequestCtx<'_>) -> Option<&'a PeerCert> {
    if let Some(RouteIdentity(cert)) = ctx.extensions.get::<RouteIdentity>() {
        return Some(cert);
    }
    ctx.conn.tls.as_ref()?.client_cert.verified()
}

/// Every value `cert` has for `attribute` (several SANs, several OUs, ...;
/// none when absent), written as [`Attribute::normalize`] writes ACL
/// entries.
pub(crate) fn attribute_values(attribute: Attribute, cert: &PeerCert) -> Vec<String> {
    let summary = &cert.summary;
    match attribute {
        Attribute::SubjectCn => subject_values(cert, Rdn::CommonName),
        Attribute::SubjectO => subject_values(cert, Rdn::Organization),
        Attribute::SubjectOu => subject_values(cert, Rdn::OrganizationalUnit),
        Attribute::IssuerDn => vec![summary.issuer.clone()],
        Attribute::SubjectDn => vec![summary.subject.clone()],
        Attribute::Serial => vec![summary.serial.clone()],
        Attribute::FingerprintSha256 => vec![summary.fingerprint_sha256.clone()],
        Attribute::SanDns => sans(cert, "DNS:"),
        Attribute::SanUri => sans(cert, "URI:"),
        Attribute::SanEmail => sans(cert, "email:"),
    }
}

/// Subject attributes read as text.
#[derive(Clone, Copy)]
pub(crate) enum Rdn {
    CommonName,
    Organization,
    OrganizationalUnit,
}

/// The values of one subject attribute, most significant first as they
/// appear in the certificate; values that are not text are left out.
pub(crate) fn subject_values(cert: &PeerCert, rdn: Rdn) -> Vec<String> {
    let Ok((_, parsed)) = X509Certificate::from_der(cert.der.as_ref()) else {
        return Vec::new();
    };
    let name: &X509Name<'_> = parsed.subject();
    let values: Vec<String> = match rdn {
        Rdn::CommonName => name.iter_common_name().filter_map(text).collect(),
        Rdn::Organization => name.iter_organization().filter_map(text).collect(),
        Rdn::OrganizationalUnit => name.iter_organizational_unit().filter_map(text).collect(),
    };
    values
}

fn text(attribute: &x509_parser::x509::AttributeTypeAndValue<'_>) -> Option<String> {
    attribute.as_str().ok().map(str::to_owned)
}

fn sans(cert: &PeerCert, prefix: &str) -> Vec<String> {
    cert.summary
        .sans
        .iter()
        .filter_map(|san| san.strip_prefix(prefix))
        .map(str::to_owned)
        .collect()
}

/// The leaf as URL-encoded PEM (nginx `$ssl_client_escaped_cert`).
pub(crate) fn escaped_pem(der: &[u8]) -> String {
    utf8_percent_encode(&pem(der), URI_COMPONENT).to_string()
}

/// `text` as a header value. Certificate fields are attacker-chosen text:
/// control characters become spaces rather than ending the header.
pub(crate) fn header_value(text: &str) -> Option<HeaderValue> {
    if let Ok(value) = HeaderValue::from_str(text) {
        return Some(value);
    }
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    HeaderValue::from_bytes(cleaned.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use rcgen::{DnType, SanType};

    use super::*;
    use crate::plugins::testing::{ctx_with, peer, route_verified, Pki};

    #[test]
    fn reads_subject_attributes_and_sans() {
        let pki = Pki::new();
        let cert = pki.client_with(|p| {
            p.distinguished_name
                .push(DnType::OrganizationalUnitName, "Payments");
            // A second OU (rcgen keeps one value per type otherwise).
            p.distinguished_name
                .push(DnType::CustomDnType(vec![2, 5, 4, 11]), "EU");
            p.subject_alt_names = vec![
                SanType::URI("spiffe://example.org/ns/prod/sa/pay".try_into().unwrap()),
                SanType::DnsName("pay.example.org".try_into().unwrap()),
                SanType::URI("https://pay.example.org".try_into().unwrap()),
                SanType::Rfc822Name("ops@example.org".try_into().unwrap()),
            ];
        });
        let cert = peer(&cert);
        assert_eq!(attribute_values(Attribute::SubjectCn, &cert), ["client1"]);
        assert_eq!(
            attribute_values(Attribute::SubjectO, &cert),
            ["Callista Enterprise AB"]
        );
        assert_eq!(
            attribute_values(Attribute::SubjectOu, &cert),
            ["Payments", "EU"]
        );
        assert_eq!(
            attribute_values(Attribute::SanUri, &cert),
            [
                "spiffe://example.org/ns/prod/sa/pay",
                "https://pay.example.org"
            ]
        );
        assert_eq!(
            attribute_values(Attribute::SanDns, &cert),
            ["pay.example.org"]
        );
        assert_eq!(
            attribute_values(Attribute::SanEmail, &cert),
            ["ops@example.org"]
        );
        assert_eq!(
            attribute_values(Attribute::SubjectDn, &cert),
            ["CN=client1,OU=EU,OU=Payments,O=Callista Enterprise AB,ST=Sweden,C=SE"]
        );
        assert_eq!(
            attribute_values(Attribute::IssuerDn, &cert),
            ["CN=Test Root CA"]
        );
        let summary = &cert.summary;
        assert_eq!(
            attribute_values(Attribute::Serial, &cert),
            std::slice::from_ref(&summary.serial)
        );
        assert_eq!(
            attribute_values(Attribute::FingerprintSha256, &cert),
            std::slice::from_ref(&summary.fingerprint_sha256)
        );
    }

    #[test]
    fn normalizes_hex_acl_entries() {
        assert_eq!(Attribute::Serial.normalize("0a:1b"), "0A1B");
        assert_eq!(Attribute::FingerprintSha256.normalize("AB:cd"), "abcd");
        assert_eq!(Attribute::SubjectO.normalize("Ab:c"), "Ab:c");
    }

    #[test]
    fn the_route_identity_beats_the_handshake() {
        let pki = Pki::new();
        let (handshake, route) = (pki.client("handshake"), pki.client("route"));
        let conn = ctx_with(Some(&handshake));
        let mut ctx = conn.ctx();
        let subject =
            |ctx: &RequestCtx<'_>| verified_client(ctx).map(|c| c.summary.subject.clone());
        assert_eq!(subject(&ctx), Some(peer(&handshake).summary.subject));
        route_verified(&mut ctx, &route);
        assert_eq!(subject(&ctx), Some(peer(&route).summary.subject));
        let anonymous = ctx_with(None);
        assert_eq!(subject(&anonymous.ctx()), None);
    }

    #[test]
    fn header_values_never_carry_control_characters() {
        assert_eq!(header_value("CN=a").unwrap(), "CN=a");
        assert_eq!(header_value("a\r\nInjected: 1").unwrap(), "a  Injected: 1");
    }
}
