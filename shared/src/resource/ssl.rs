use std::fmt;

use serde::{Deserialize, Serialize};

use super::Metadata;

/// An SSL object (APISIX `ssls`): server certificates for a set of SNIs, with
/// optional client-certificate verification; or (`type: client`) a client
/// identity used towards upstreams.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Ssl {
    #[serde(flatten)]
    pub metadata: Metadata,
    #[serde(rename = "type", default)]
    pub kind: SslType,
    pub cert: String,
    /// The private key, PEM. Never returned by the admin API.
    pub key: String,
    /// Extra certificate/key pairs (e.g. ECDSA next to RSA for the same SNIs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snis: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientSettings>,
    #[serde(default = "enabled")]
    pub status: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_protocols: Option<Vec<String>>,
    /// OCSP stapling of the server certificates (APISIX's field names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocsp_stapling: Option<OcspStaplingSettings>,
}

impl fmt::Debug for Ssl {
    /// Never prints the private keys (`key`, `keys`), nor the certificates'
    /// PEM.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ssl")
            .field("metadata", &self.metadata)
            .field("kind", &self.kind)
            .field("cert", &"<PEM>")
            .field("key", &"<redacted>")
            .field("certs", &self.certs.len())
            .field(
                "keys",
                &self.keys.iter().map(|_| "<redacted>").collect::<Vec<_>>(),
            )
            .field("sni", &self.sni)
            .field("snis", &self.snis)
            .field("client", &self.client)
            .field("status", &self.status)
            .field("ssl_protocols", &self.ssl_protocols)
            .field("ocsp_stapling", &self.ocsp_stapling)
            .finish()
    }
}

/// `type` of an SSL object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SslType {
    #[default]
    Server,
    Client,
}

/// `client`: verification of client certificates for this SSL object's SNIs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ClientSettings {
    /// Trusted CA certificates, PEM (one or more).
    pub ca: String,
    /// nginx `ssl_verify_depth`: the longest chain accepted, counted in
    /// certificates above the leaf (1 = issued directly by a trusted CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<u32>,
    /// Paths that may be served without a verified client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_mtls_uri_regex: Option<Vec<String>>,
    /// Certificate revocation lists, PEM (`X509 CRL`; an entry may hold
    /// several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_mode: Option<CrlMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_status: Option<UnknownStatus>,
    /// Online revocation checks (OCSP, CRL distribution points).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<OnlineRevocationSettings>,
}

/// `revocation` of a `client` section or of `client-cert-auth`: the
/// revocation status of client certificates asked of their CA online (the
/// OCSP responder in their Authority Information Access, the CRLs of their
/// CRL Distribution Points). Every field is optional; see
/// `shared::validate::OnlineRevocation` for the defaults.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnlineRevocationSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<RevocationMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocsp: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_distribution_points: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_ttl: Option<u64>,
}

/// What a certificate whose status is not known yet gets (`revocation.mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationMode {
    /// No online check.
    Off,
    /// Accepted (and logged) while the answer is fetched in the background.
    #[default]
    SoftFail,
    /// The handshake waits up to `timeout_ms` for an answer, then refuses.
    HardFail,
}

/// `ocsp_stapling`: the gateway fetches the OCSP response for its own
/// certificate and sends it in the handshake.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OcspStaplingSettings {
    #[serde(default)]
    pub enabled: bool,
    /// Seconds a response is used before it is fetched again (sooner when
    /// its `nextUpdate` comes first). Default 3600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_ttl: Option<u64>,
}

/// How much of a client's chain the CRLs are checked against (`crl_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrlMode {
    /// Every certificate of the chain, and a CRL past its `nextUpdate` is an
    /// error (nginx `ssl_crl`).
    #[default]
    Strict,
    /// The client's own certificate only, and a CRL past its `nextUpdate`
    /// still counts.
    LeafOnly,
}

/// What happens to a certificate whose issuer published no CRL
/// (`unknown_status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownStatus {
    Allow,
    /// Refused, as nginx does.
    #[default]
    Deny,
}

fn enabled() -> u8 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_a_private_key() {
        let key = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n";
        let ssl = Ssl {
            metadata: Metadata {
                id: Some("1".into()),
                ..Metadata::default()
            },
            cert: "-----BEGIN CERTIFICATE-----\nY2VydA==\n-----END CERTIFICATE-----\n".into(),
            key: key.into(),
            certs: vec!["C2".into()],
            keys: vec![key.into()],
            sni: Some("test.com".into()),
            ..Ssl::default()
        };
        let printed = format!("{ssl:?}");
        assert!(!printed.contains("PRIVATE KEY"), "{printed}");
        assert!(!printed.contains("c2VjcmV0"), "{printed}");
        assert!(printed.contains(r#"key: "<redacted>""#), "{printed}");
        assert!(printed.contains(r#"sni: Some("test.com")"#), "{printed}");
        assert!(printed.contains(r#"id: Some("1")"#), "{printed}");
    }
}
