//! Fixtures for plugin tests: an rcgen PKI shaped like the Kong
//! walkthrough's (`C=SE, ST=Sweden, O=Callista Enterprise AB, CN=client1`),
//! connections presenting its certificates, request contexts, and reading
//! the responses plugins answer with.

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;

use http::request::Parts;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;
use serde_json::Value;
use shared::plugins::PluginConfigs;
use shared::x509::CertSummary;

use super::identity::RouteIdentity;
use super::{build_one, Flow, Plugin, RequestCtx};
use crate::context::{ClientCert, ConnInfo, MtlsPolicy, PeerCert, TlsInfo};

/// The plugin `name` configured with `config`, validated as the admin API
/// does (errors are the admin API's messages) and built.
pub(crate) fn build(name: &str, config: &Value) -> Result<Box<dyn Plugin>, String> {
    let route = serde_json::json!({ name: config });
    build_in(&route, name)
}

/// The plugin `name` of a route's `plugins` (validated together, so rules
/// between plugins hold), built.
pub(crate) fn build_in(plugins: &Value, name: &str) -> Result<Box<dyn Plugin>, String> {
    let plugins = serde_json::from_value(plugins.clone()).map_err(|e| e.to_string())?;
    let configs = PluginConfigs::validate(&plugins).map_err(|e| e.to_string())?;
    let config = configs.get(name).expect("the plugin is configured");
    let (_, plugin) = build_one(config).map_err(|e| e.to_string())?;
    Ok(plugin)
}

/// A certificate authority and the certificates it issues.
pub(crate) struct Pki {
    issuer: Issuer<'static, KeyPair>,
    pub(crate) ca: TestCert,
}

/// An issued certificate.
#[derive(Clone)]
pub(crate) struct TestCert {
    pub(crate) der: CertificateDer<'static>,
    pub(crate) pem: String,
}

impl Pki {
    /// `CN=Test Root CA`.
    pub(crate) fn new() -> Pki {
        Pki::named("Test Root CA")
    }

    pub(crate) fn named(cn: &str) -> Pki {
        let (params, key) = ca_params(cn);
        let cert = params.self_signed(&key).unwrap();
        Pki::issuing_as(cert, params, key)
    }

    /// An intermediate CA issued by this one.
    pub(crate) fn intermediate(&self, cn: &str) -> Pki {
        let (mut params, key) = ca_params(cn);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pki::issuing_as(cert, params, key)
    }

    fn issuing_as(cert: rcgen::Certificate, params: CertificateParams, key: KeyPair) -> Pki {
        let ca = TestCert {
            der: cert.der().clone(),
            pem: cert.pem(),
        };
        Pki {
            issuer: Issuer::new(params, key),
            ca,
        }
    }

    /// `C=SE, ST=Sweden, O=Callista Enterprise AB, CN=<cn>`.
    pub(crate) fn client(&self, cn: &str) -> TestCert {
        self.client_in(cn, "Callista Enterprise AB")
    }

    pub(crate) fn client_in(&self, cn: &str, org: &str) -> TestCert {
        self.issue(cn, org, |_| {})
    }

    /// `client1` of Callista Enterprise AB, with `more` applied before the
    /// CN is added (extra RDNs land between `O` and `CN`).
    pub(crate) fn client_with(&self, more: impl FnOnce(&mut CertificateParams)) -> TestCert {
        self.issue("client1", "Callista Enterprise AB", more)
    }

    /// A client certificate with the given serial number.
    pub(crate) fn client_with_serial(&self, cn: &str, serial: u64) -> TestCert {
        self.issue(cn, "Callista Enterprise AB", |params| {
            params.serial_number = Some(serial.into());
        })
    }

    fn issue(&self, cn: &str, org: &str, more: impl FnOnce(&mut CertificateParams)) -> TestCert {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        // The default name holds a CN, which would come first.
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CountryName, "SE");
        params
            .distinguished_name
            .push(DnType::StateOrProvinceName, "Sweden");
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
        more(&mut params);
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        TestCert {
            der: cert.der().clone(),
            pem: cert.pem(),
        }
    }

    /// A CRL of this CA revoking `serials`.
    pub(crate) fn crl(&self, serials: &[u64]) -> String {
        let now = time::OffsetDateTime::now_utc();
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - time::Duration::days(1),
            next_update: now + time::Duration::days(30),
            crl_number: 1u64.into(),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|serial| rcgen::RevokedCertParams {
                    serial_number: (*serial).into(),
                    revocation_time: now - time::Duration::hours(1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }
}

/// A CA named `CN=<cn>`, and its new key.
fn ca_params(cn: &str) -> (CertificateParams, KeyPair) {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (params, KeyPair::generate().unwrap())
}

/// The certificate as the TLS layer records it.
pub(crate) fn peer(cert: &TestCert) -> PeerCert {
    PeerCert {
        der: cert.der.clone(),
        summary: CertSummary::from_der(&cert.der).unwrap(),
        intermediates: Vec::new(),
    }
}

/// A connection, owned, to borrow request contexts from.
pub(crate) struct Conn(pub(crate) ConnInfo);

/// A TLS connection from 192.0.2.10 whose SSL object verified `cert` (or
/// to which none was presented).
pub(crate) fn ctx_with(cert: Option<&TestCert>) -> Conn {
    let client_cert = match cert {
        Some(cert) => ClientCert::Verified(Arc::new(peer(cert))),
        None => ClientCert::None,
    };
    tls_conn(client_cert, "192.0.2.10:50000")
}

pub(crate) fn tls_conn(client_cert: ClientCert, remote: &str) -> Conn {
    Conn(ConnInfo::new(
        remote.parse::<SocketAddr>().unwrap(),
        "127.0.0.1:9443".parse().unwrap(),
        Some(TlsInfo {
            server_name: Some("test.com".to_owned()),
            ssl_id: Arc::from("1"),
            protocol: "TLSv1.3",
            resumed: false,
            client_cert,
            mtls: MtlsPolicy::Off,
            client_policy: Default::default(),
        }),
    ))
}

impl Conn {
    pub(crate) fn ctx(&self) -> RequestCtx<'_> {
        RequestCtx {
            conn: &self.0,
            route_id: "r1",
            host: Some("test.com"),
            uri: "/mtls/api",
            request_uri: "/mtls/api",
            extensions: http::Extensions::new(),
        }
    }
}

/// What `client-cert-auth` records after accepting `cert`.
pub(crate) fn route_verified(ctx: &mut RequestCtx<'_>, cert: &TestCert) {
    ctx.extensions.insert(RouteIdentity(Arc::new(peer(cert))));
}

/// A request for `/mtls/api` with `headers`.
pub(crate) fn request(headers: &[(&str, &str)]) -> Parts {
    let mut builder = Request::builder().uri("/mtls/api");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}

/// Every value of `name`, as text.
pub(crate) fn values(req: &Parts, name: &str) -> Vec<String> {
    req.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The response a plugin answered with; panics when it let the request go.
pub(crate) async fn answered(flow: Flow) -> (StatusCode, HeaderMap, String) {
    let ControlFlow::Break(response) = flow else {
        panic!("the plugin let the request through");
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}
