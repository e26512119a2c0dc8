//! The `client-cert-auth` plugin's configuration: per-route client
//! certificates, pinned (`certificates`) or chained to a route's own CAs
//! (`ca`), optionally revoked by CRLs, optionally passed in a header by a
//! trusted front proxy (`cert_header`).
//!
//! Parsed here, once, for both the admin API (which refuses a PEM that does
//! not parse) and the gateway (which builds its verifier from the result).

use std::collections::BTreeMap;
use std::net::IpAddr;

use http::HeaderName;
use ipnet::IpNet;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;
use serde_json::{json, Value};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::PluginSpec;
use crate::client_chain::{
    online_revocation, revocation, verify_depth, OnlineRevocation, Revocation, RevocationSpec,
};
use crate::error::ValidationError;
use crate::resource::{CrlMode, OnlineRevocationSettings, UnknownStatus};
use crate::schema::{
    crl_list_schema, crl_mode_schema, header_name, online_revocation_schema, pem_bundle,
    unknown_status_schema,
};
use crate::x509;

/// The plugin's name in a route's `plugins`.
pub const CLIENT_CERT_AUTH: &str = "client-cert-auth";

/// `client-cert-auth`, validated.
#[derive(Debug, Clone)]
pub struct ClientCertAuth {
    pub required: Requirement,
    /// Pinned leaf certificates: a client presenting exactly one of these
    /// passes.
    pub certificates: Vec<CertificateDer<'static>>,
    /// Trust anchors: a client whose chain leads to one of these passes.
    pub ca: Vec<CertificateDer<'static>>,
    /// nginx `ssl_verify_depth` for chains to `ca` (default 1).
    pub depth: u32,
    pub revocation: Option<Revocation>,
    /// From `revocation` (online checks of chains to `ca`).
    pub online_revocation: Option<OnlineRevocation>,
    pub cert_header: Option<CertHeader>,
}

/// `required`, as WSO2 APK.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    /// No certificate, or one that is not accepted: 401.
    #[default]
    Mandatory,
    /// No certificate passes; one that is sent must be accepted.
    Optional,
}

/// `cert_header`: where a front proxy that terminated TLS passes the
/// client's certificate. The header is believed only from a front proxy
/// named here, by address or by its own client certificate: a certificate
/// the route accepts from end users says nothing about its holder being a
/// proxy, and believing it would let any client speak for any other.
#[derive(Debug, Clone)]
pub struct CertHeader {
    pub name: HeaderName,
    pub encoding: CertEncoding,
    /// Peers whose header is believed.
    pub trusted_sources: Vec<IpNet>,
    /// Front proxies' client certificates: a peer that presents exactly one
    /// of these in the handshake is believed.
    pub trusted_certificates: Vec<CertificateDer<'static>>,
}

impl CertHeader {
    /// Whether `addr` is one of the trusted sources (IPv4-mapped IPv6
    /// addresses count as IPv4).
    pub fn trusts(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.trusted_sources.iter().any(|net| net.contains(&addr))
    }
}

/// How the certificate is written in the header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum CertEncoding {
    /// PEM; line breaks may be spaces or missing (a header is one line).
    #[default]
    #[serde(rename = "pem")]
    Pem,
    /// Percent-encoded PEM (nginx `$ssl_client_escaped_cert`, Envoy `Cert`).
    #[serde(rename = "url-pem")]
    UrlPem,
    /// Base64 of the DER certificate.
    #[serde(rename = "base64-der")]
    Base64Der,
}

/// A setting left out takes its default.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Spec {
    required: Requirement,
    certificates: Vec<String>,
    ca: Vec<String>,
    depth: Option<u32>,
    crl: Option<Vec<String>>,
    crl_mode: Option<CrlMode>,
    unknown_status: Option<UnknownStatus>,
    revocation: Option<OnlineRevocationSettings>,
    cert_header: Option<HeaderSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderSpec {
    name: String,
    #[serde(default)]
    encoding: CertEncoding,
    #[serde(default)]
    trusted_sources: Vec<String>,
    #[serde(default)]
    trusted_certificates: Vec<String>,
}

impl PluginSpec for ClientCertAuth {
    const NAME: &'static str = CLIENT_CERT_AUTH;

    /// WSO2 APK-style per-route client certificates.
    fn schema() -> Value {
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

    fn validate(config: &Value, _: &BTreeMap<String, Value>) -> Result<Self, ValidationError> {
        ClientCertAuth::from_config(config)
    }
}

impl ClientCertAuth {
    /// Validates a configuration that passed the plugin's JSON schema.
    /// Field names in errors are relative to the plugin (`certificates[1]`).
    pub fn from_config(config: &Value) -> Result<ClientCertAuth, ValidationError> {
        let spec = Spec::deserialize(config).map_err(|e| ValidationError::Json(e.to_string()))?;
        if spec.certificates.is_empty() && spec.ca.is_empty() {
            return Err(ValidationError::field(
                "certificates",
                "give `certificates` (pinned client certificates) and/or `ca`",
            ));
        }
        let certificates = pinned("certificates", &spec.certificates)?;
        let ca = anchors(&spec.ca)?;
        let depth = verify_depth("", spec.depth)?;
        let revocation = revocation(
            "",
            RevocationSpec {
                crl: spec.crl.as_deref(),
                mode: spec.crl_mode,
                unknown_status: spec.unknown_status,
            },
            &ca,
        )?;
        let online_revocation = online_revocation("", spec.revocation.as_ref())?;
        if online_revocation.is_some() && ca.is_empty() {
            return Err(ValidationError::field(
                "revocation",
                "has no effect without `ca` (pinned certificates are not checked online)",
            ));
        }
        let cert_header = spec.cert_header.map(cert_header).transpose()?;
        Ok(ClientCertAuth {
            required: spec.required,
            certificates,
            ca,
            depth,
            revocation,
            online_revocation,
            cert_header,
        })
    }

    /// The names a TLS server should list in its CertificateRequest for this
    /// route (DER `Name`s): the subject of each CA and the issuer of each
    /// pinned or trusted front proxy's certificate, so that a client (a
    /// browser, a proxy) offers a matching certificate.
    pub fn ca_names(&self) -> Vec<Vec<u8>> {
        let name = |der: &CertificateDer<'_>, issuer: bool| {
            X509Certificate::from_der(der.as_ref())
                .ok()
                .map(|(_, cert)| {
                    let name = if issuer {
                        cert.issuer()
                    } else {
                        cert.subject()
                    };
                    name.as_raw().to_vec()
                })
        };
        let subjects = self.ca.iter().filter_map(|der| name(der, false));
        let proxies = self
            .cert_header
            .iter()
            .flat_map(|header| &header.trusted_certificates);
        let issuers = self
            .certificates
            .iter()
            .chain(proxies)
            .filter_map(|der| name(der, true));
        subjects.chain(issuers).collect()
    }
}

/// Each entry holds exactly one certificate: pinning a whole chain by
/// mistake would pin its CA as a client certificate.
fn pinned(field: &str, pems: &[String]) -> Result<Vec<CertificateDer<'static>>, ValidationError> {
    pems.iter()
        .enumerate()
        .map(|(i, pem)| {
            let field = format!("{field}[{i}]");
            let mut certs = x509::parse_certs(pem)
                .map_err(|e| ValidationError::field(&field, e.to_string()))?;
            match certs.len() {
                1 => Ok(certs.remove(0)),
                n => Err(ValidationError::field(
                    field,
                    format!("holds {n} certificates; pin one client certificate per entry"),
                )),
            }
        })
        .collect()
}

fn anchors(pems: &[String]) -> Result<Vec<CertificateDer<'static>>, ValidationError> {
    let mut all = Vec::new();
    for (i, pem) in pems.iter().enumerate() {
        let certs = x509::parse_certs(pem)
            .map_err(|e| ValidationError::field(format!("ca[{i}]"), e.to_string()))?;
        all.extend(certs);
    }
    Ok(all)
}

fn cert_header(spec: HeaderSpec) -> Result<CertHeader, ValidationError> {
    let trusted_sources = spec
        .trusted_sources
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            parse_source(raw).ok_or_else(|| {
                ValidationError::field(
                    format!("cert_header.trusted_sources[{i}]"),
                    "must be an IP address or a CIDR such as 10.0.0.0/8",
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let trusted_certificates = pinned(
        "cert_header.trusted_certificates",
        &spec.trusted_certificates,
    )?;
    if trusted_sources.is_empty() && trusted_certificates.is_empty() {
        return Err(ValidationError::field(
            "cert_header",
            "name the front proxies whose header is believed: `trusted_sources` \
             (addresses) and/or `trusted_certificates` (their client certificates)",
        ));
    }
    let name = HeaderName::from_bytes(spec.name.as_bytes())
        .map_err(|_| ValidationError::field("cert_header.name", "is not a valid header name"))?;
    Ok(CertHeader {
        name,
        encoding: spec.encoding,
        trusted_sources,
        trusted_certificates,
    })
}

/// `10.0.0.0/8`, `::1/128`, or a bare address (a single host).
fn parse_source(raw: &str) -> Option<IpNet> {
    raw.parse::<IpNet>()
        .ok()
        .or_else(|| raw.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|net| net.trunc())
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use serde_json::json;

    use super::*;

    fn ca(cn: &str) -> (String, Issuer<'static, KeyPair>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), Issuer::new(params, key))
    }

    fn client(issuer: &Issuer<'static, KeyPair>, cn: &str) -> String {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, issuer).unwrap().pem()
    }

    fn field_of(err: ValidationError) -> String {
        match err {
            ValidationError::Field { field, .. } => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_full_configuration() {
        let (ca_pem, issuer) = ca("Route CA");
        let pinned = client(&issuer, "pinned");
        let config = json!({
            "required": "optional",
            "certificates": [pinned],
            "ca": [ca_pem],
            "depth": 2,
            "cert_header": {
                "name": "X-WSO2-CLIENT-CERTIFICATE",
                "encoding": "url-pem",
                "trusted_sources": ["10.0.0.0/8", "::1", "192.168.1.7"],
                "trusted_certificates": [client(&issuer, "front proxy")]
            }
        });
        let parsed = ClientCertAuth::from_config(&config).unwrap();
        assert_eq!(parsed.required, Requirement::Optional);
        assert_eq!((parsed.certificates.len(), parsed.ca.len()), (1, 1));
        assert_eq!(parsed.depth, 2);
        assert!(parsed.revocation.is_none());
        let header = parsed.cert_header.unwrap();
        assert_eq!(header.encoding, CertEncoding::UrlPem);
        assert!(header.trusts("10.1.2.3".parse().unwrap()));
        assert!(header.trusts("::ffff:10.1.2.3".parse().unwrap()));
        assert!(header.trusts("::1".parse().unwrap()));
        assert!(header.trusts("192.168.1.7".parse().unwrap()));
        assert!(!header.trusts("192.168.1.8".parse().unwrap()));
        assert!(!header.trusts("127.0.0.1".parse().unwrap()));
        assert_eq!(header.trusted_certificates.len(), 1);
    }

    #[test]
    fn names_the_ca_subjects_and_pinned_issuers() {
        let (ca_pem, issuer) = ca("Route CA");
        let (other_pem, other) = ca("Other CA");
        let (_, proxies) = ca("Proxy CA");
        let config = json!({
            "ca": [ca_pem],
            "certificates": [client(&other, "x")],
            "cert_header": {"name": "X-C", "trusted_certificates": [client(&proxies, "proxy")]}
        });
        let parsed = ClientCertAuth::from_config(&config).unwrap();
        let names: Vec<String> = parsed
            .ca_names()
            .iter()
            .map(|der| {
                x509_parser::x509::X509Name::from_der(der)
                    .unwrap()
                    .1
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["CN=Route CA", "CN=Other CA", "CN=Proxy CA"]);
        drop((issuer, other_pem));
    }

    #[test]
    fn refuses_bad_configurations_naming_the_field() {
        let (ca_pem, issuer) = ca("Route CA");
        let leaf = client(&issuer, "a");
        let cases = [
            (json!({"required": "mandatory"}), "certificates"),
            (json!({"certificates": ["nope"]}), "certificates[0]"),
            (
                json!({"certificates": [format!("{leaf}{ca_pem}")]}),
                "certificates[0]",
            ),
            (
                json!({"ca": [ca_pem, "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"]}),
                "ca[1]",
            ),
            (json!({"ca": [ca_pem], "depth": 0}), "depth"),
            (json!({"ca": [ca_pem], "crl": ["not a crl"]}), "crl[0]"),
            (json!({"ca": [ca_pem], "crl_mode": "strict"}), "crl_mode"),
            (
                json!({"ca": [ca_pem], "cert_header": {"name": "X-C", "trusted_sources": ["10.0.0.0/33"]}}),
                "cert_header.trusted_sources[0]",
            ),
            // Believed from nobody: no front proxy is named.
            (
                json!({"ca": [ca_pem], "cert_header": {"name": "X-C"}}),
                "cert_header",
            ),
            (
                json!({"ca": [ca_pem], "cert_header": {"name": "X-C", "trusted_sources": []}}),
                "cert_header",
            ),
            (
                json!({"ca": [ca_pem], "cert_header": {"name": "X-C", "trusted_certificates": ["nope"]}}),
                "cert_header.trusted_certificates[0]",
            ),
            (
                json!({"ca": [ca_pem], "cert_header": {"name": "X-C", "trusted_certificates": [format!("{leaf}{ca_pem}")]}}),
                "cert_header.trusted_certificates[0]",
            ),
        ];
        for (config, field) in cases {
            let err = ClientCertAuth::from_config(&config).unwrap_err();
            assert_eq!(field_of(err), field, "{config}");
        }
    }
}
