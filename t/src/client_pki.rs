//! Client certificates carrying what the identity plugins read (organization,
//! state, country, URI SANs, chosen serial numbers), and CRLs revoking them,
//! made with rcgen (X.509 v3), issued by a root CA or an intermediate one.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SanType, SerialNumber,
};

use crate::pki::Leaf;

/// A certificate authority for client certificates.
pub struct ClientCa {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// What goes into one client certificate besides its CN.
#[derive(Clone, Debug, Default)]
pub struct ClientSpec<'a> {
    /// `O`; with it, the subject also gets `ST=Sweden` and `C=SE`, as the
    /// Kong walkthrough's certificates.
    pub org: Option<&'a str>,
    pub serial: Option<u64>,
    pub uris: &'a [&'a str],
    /// Valid during 2020 only: long expired.
    pub expired: bool,
}

impl ClientCa {
    /// A new self-signed CA named `CN=<cn>`.
    pub fn new(cn: &str) -> ClientCa {
        let key = KeyPair::generate().expect("generate a CA key");
        let params = ca_params(cn);
        let cert = params.self_signed(&key).expect("self-sign a CA");
        ClientCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// An intermediate CA `CN=<cn>` with serial number `serial` (which this
    /// CA's [`ClientCa::crl`] can revoke), signed by this one. Its `cert_pem`
    /// is its own certificate only: a client sends it after its leaf.
    pub fn intermediate(&self, cn: &str, serial: u64) -> ClientCa {
        let key = KeyPair::generate().expect("generate an intermediate key");
        let mut params = ca_params(cn);
        params.serial_number = Some(SerialNumber::from(serial));
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign an intermediate");
        ClientCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// `C=SE, ST=Sweden, O=<org>, CN=<cn>`: RFC 2253
    /// `CN=<cn>,O=<org>,ST=Sweden,C=SE`.
    pub fn client(&self, cn: &str, org: &str) -> Leaf {
        self.client_with(
            cn,
            &ClientSpec {
                org: Some(org),
                ..ClientSpec::default()
            },
        )
    }

    pub fn client_with(&self, cn: &str, spec: &ClientSpec<'_>) -> Leaf {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        if let Some(org) = spec.org {
            params.distinguished_name.push(DnType::CountryName, "SE");
            params
                .distinguished_name
                .push(DnType::StateOrProvinceName, "Sweden");
            params
                .distinguished_name
                .push(DnType::OrganizationName, org);
        }
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = spec.serial.map(SerialNumber::from);
        if spec.expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        params.subject_alt_names = spec
            .uris
            .iter()
            .map(|uri| SanType::URI((*uri).try_into().expect("an IA5 URI")))
            .collect();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params)
    }

    /// A server certificate for the DNS name `name`.
    pub fn server(&self, name: &str) -> Leaf {
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("a DNS name");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A CRL (PEM) of this CA revoking the certificates with `serials`,
    /// valid from yesterday for 30 days.
    pub fn crl(&self, serials: &[u64]) -> String {
        const DAY: Duration = Duration::from_secs(86_400);
        let yesterday = SystemTime::now() - DAY;
        let params = CertificateRevocationListParams {
            this_update: yesterday.into(),
            next_update: (yesterday + 30 * DAY).into(),
            crl_number: SerialNumber::from(serials.len() as u64 + 1),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from(*serial),
                    revocation_time: yesterday.into(),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.issuer)
            .and_then(|crl| crl.pem())
            .expect("sign a CRL")
    }

    fn sign(&self, mut params: CertificateParams) -> Leaf {
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("generate a leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign a leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A CA named `CN=<cn>` that signs certificates and CRLs.
fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}
