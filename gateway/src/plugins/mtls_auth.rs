//! `mtls-auth`, as the Kong plugin of the same name: the route needs a
//! verified client certificate (else 401
//! `{"error":"invalid_request","error_description":"mTLS client not provided or invalid"}`),
//! and chosen fields of it travel upstream in request headers:
//!
//! | setting | header value |
//! |---|---|
//! | `upstream_cert_header` | the PEM, URL-encoded (`$ssl_client_escaped_cert`) |
//! | `upstream_cert_fingerprint_header` | SHA-1, lowercase hex (`$ssl_client_fingerprint`) |
//! | `upstream_cert_serial_header` | uppercase hex (`$ssl_client_serial`) |
//! | `upstream_cert_i_dn_header` | issuer, RFC 2253 (`$ssl_client_i_dn`) |
//! | `upstream_cert_s_dn_header` | subject, RFC 2253 (`$ssl_client_s_dn`) |
//! | `upstream_cert_cn_header` | the subject's first CN |
//! | `upstream_cert_org_header` | the subject's first O |
//!
//! Whatever the client sent under those names is removed first, on every
//! request: a header an upstream reads as an identity is never the client's
//! own word. The certificate is the one `client-cert-auth` accepted on this
//! route, else the one the SSL object verified at the handshake.

use std::ops::ControlFlow;

use http::request::Parts;
use http::{HeaderName, StatusCode};
use shared::plugins::mtls_auth::{self as config, CertField};

use super::identity::{self, verified_client, IdentityHeaders, Rdn};
use super::{Build, BuildError, Flow, Plugin, RequestCtx};
use crate::context::PeerCert;
use crate::metrics::tls::{client_cert_verdict as record_verdict, Verdict};
use crate::reply::json_reply;

pub(super) const NAME: &str = config::NAME;

const UNAUTHENTICATED: &str =
    r#"{"error":"invalid_request","error_description":"mTLS client not provided or invalid"}"#;

/// The value `field` has in `cert`, if any.
fn field_value(field: CertField, cert: &PeerCert) -> Option<String> {
    let summary = &cert.summary;
    match field {
        CertField::EscapedPem => Some(identity::escaped_pem(cert.der.as_ref())),
        CertField::Fingerprint => Some(summary.fingerprint_sha1.clone()),
        CertField::Serial => Some(summary.serial.clone()),
        CertField::IssuerDn => Some(summary.issuer.clone()),
        CertField::SubjectDn => Some(summary.subject.clone()),
        CertField::CommonName => first(identity::subject_values(cert, Rdn::CommonName)),
        CertField::Organization => first(identity::subject_values(cert, Rdn::Organization)),
    }
}

fn first(values: Vec<String>) -> Option<String> {
    values.into_iter().next()
}

struct MtlsAuth {
    status: StatusCode,
    headers: Box<[(HeaderName, CertField)]>,
}

impl Build for config::MtlsAuth {
    const PRIORITY: i32 = 2530;

    fn build(&self) -> Result<Box<dyn Plugin>, BuildError> {
        Ok(Box::new(MtlsAuth {
            status: self.status,
            headers: self.headers.clone(),
        }))
    }
}

impl Plugin for MtlsAuth {
    fn name(&self) -> &'static str {
        NAME
    }

    fn request_filter(&self, ctx: &mut RequestCtx<'_>, req: &mut Parts) -> Flow {
        for (name, _) in &self.headers {
            req.headers.remove(name);
        }
        let Some(cert) = verified_client(ctx) else {
            tracing::debug!(
                route = ctx.route_id,
                "mtls-auth: no verified client certificate"
            );
            record_verdict(NAME, ctx.route_id, Verdict::Refused("no_certificate"));
            return ControlFlow::Break(json_reply(self.status, UNAUTHENTICATED));
        };
        record_verdict(NAME, ctx.route_id, Verdict::Allowed);
        let values: Vec<_> = self
            .headers
            .iter()
            .filter_map(|(name, field)| {
                let value = identity::header_value(&field_value(*field, cert)?)?;
                Some((name, value))
            })
            .collect();
        for (name, value) in values {
            req.headers.insert(name, value);
            IdentityHeaders::vouch(ctx, name);
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::testing::{answered, ctx_with, peer, request, values, Pki};

    fn build(config: &serde_json::Value) -> Result<Box<dyn Plugin>, String> {
        crate::plugins::testing::build(NAME, config)
    }

    fn walkthrough() -> Box<dyn Plugin> {
        build(&json!({
            "upstream_cert_s_dn_header": "X-Client-Cert-Dn",
            "upstream_cert_cn_header": "X-Client-Cert-San",
            "upstream_cert_org_header": "X-Client-Cert-Organization"
        }))
        .unwrap()
    }

    #[test]
    fn sets_the_walkthrough_headers_replacing_injected_ones() {
        let pki = Pki::new();
        let client1 = pki.client("client1");
        let conn = ctx_with(Some(&client1));
        let mut ctx = conn.ctx();
        let mut req = request(&[
            ("X-Client-Cert-Dn", "CN=admin,O=Callista Enterprise AB"),
            ("X-Client-Cert-Dn", "CN=root"),
            ("X-Other", "kept"),
        ]);
        assert!(walkthrough()
            .request_filter(&mut ctx, &mut req)
            .is_continue());
        assert_eq!(
            values(&req, "x-client-cert-dn"),
            ["CN=client1,O=Callista Enterprise AB,ST=Sweden,C=SE"]
        );
        assert_eq!(values(&req, "x-client-cert-san"), ["client1"]);
        assert_eq!(
            values(&req, "x-client-cert-organization"),
            ["Callista Enterprise AB"]
        );
        assert_eq!(values(&req, "x-other"), ["kept"]);
        let name = HeaderName::from_static("x-client-cert-organization");
        assert!(IdentityHeaders::vouched(&ctx, &name));
    }

    #[test]
    fn sets_every_field_as_nginx_prints_it() {
        let pki = Pki::new();
        let client = pki.client("client2");
        let conn = ctx_with(Some(&client));
        let mut ctx = conn.ctx();
        let plugin = build(&json!({
            "upstream_cert_header": "X-Pem",
            "upstream_cert_fingerprint_header": "X-Fp",
            "upstream_cert_serial_header": "X-Serial",
            "upstream_cert_i_dn_header": "X-Issuer"
        }))
        .unwrap();
        let mut req = request(&[]);
        assert!(plugin.request_filter(&mut ctx, &mut req).is_continue());
        let summary = peer(&client).summary;
        assert_eq!(values(&req, "x-fp"), [summary.fingerprint_sha1]);
        assert_eq!(values(&req, "x-serial"), [summary.serial]);
        assert_eq!(values(&req, "x-issuer"), ["CN=Test Root CA"]);
        let pem = &values(&req, "x-pem")[0];
        assert!(pem.starts_with("-----BEGIN%20CERTIFICATE-----%0A"), "{pem}");
        let decoded = percent_encoding::percent_decode_str(pem)
            .decode_utf8()
            .unwrap();
        assert_eq!(shared::x509::parse_certs(&decoded).unwrap(), [client.der]);
    }

    #[tokio::test]
    async fn refuses_without_a_verified_certificate_and_drops_injected_headers() {
        let conn = ctx_with(None);
        let mut ctx = conn.ctx();
        let mut req = request(&[("X-Client-Cert-Dn", "CN=client1")]);
        let flow = walkthrough().request_filter(&mut ctx, &mut req);
        assert!(req.headers.get("x-client-cert-dn").is_none());
        let (status, headers, body) = answered(flow).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(
            body,
            r#"{"error":"invalid_request","error_description":"mTLS client not provided or invalid"}"#
        );
    }

    #[test]
    fn refuses_two_fields_naming_one_header() {
        let err = build(&json!({
            "upstream_cert_s_dn_header": "X-Client-Identity",
            "upstream_cert_cn_header": "x-client-identity"
        }))
        .err()
        .expect("one header for two fields");
        assert!(err.contains("upstream_cert_cn_header"), "{err}");
        assert!(err.contains("upstream_cert_s_dn_header"), "{err}");
    }

    #[tokio::test]
    async fn a_certificate_the_ssl_object_did_not_verify_is_no_identity() {
        let pki = Pki::new();
        let cert = std::sync::Arc::new(peer(&pki.client("client1")));
        let failed = crate::context::ClientCert::Failed {
            reason: "unable to get local issuer certificate".into(),
            cert,
        };
        let conn = crate::plugins::testing::tls_conn(failed, "192.0.2.10:1");
        let plugin = build(&json!({"error_response_code": 403})).unwrap();
        let flow = plugin.request_filter(&mut conn.ctx(), &mut request(&[]));
        assert_eq!(answered(flow).await.0, StatusCode::FORBIDDEN);
    }
}
