//! `mtls-acl`, as the Kong plugin of the same name: an access list over one
//! value of the client's identity; a client not allowed gets 403
//! `{"message":"You cannot consume this service"}`.
//!
//! The value comes either from a request header that an identity plugin of
//! the route set from the verified certificate (`certificate_header_name`,
//! Kong's way, e.g. the organization `mtls-auth` put in
//! `X-Client-Cert-Organization`), or straight from the certificate
//! (`attribute`: `subject_cn`, `san_uri`, ...). A certificate with several
//! values for the attribute (SANs) matches when any of them does. A header
//! the client sent itself is never read, and a client without a value is
//! not allowed, whether the list is `allow` or `deny`.

use std::ops::ControlFlow;

use http::request::Parts;
use http::StatusCode;
use shared::plugins::mtls_acl::{self as config, List, Source};

use super::identity::{attribute_values, verified_client, IdentityHeaders};
use super::{Build, BuildError, Flow, Plugin, RequestCtx};
use crate::metrics::tls::{client_cert_verdict as record_verdict, Verdict};
use crate::reply::json_reply;

pub(super) const NAME: &str = config::NAME;

const FORBIDDEN: &str = r#"{"message":"You cannot consume this service"}"#;

/// The validated configuration is all the plugin needs: its list is
/// normalised already.
struct MtlsAcl(config::MtlsAcl);

impl Build for config::MtlsAcl {
    const PRIORITY: i32 = 2420;

    fn build(&self) -> Result<Box<dyn Plugin>, BuildError> {
        Ok(Box::new(MtlsAcl(self.clone())))
    }
}

impl MtlsAcl {
    /// The client's values; empty when it has none this ACL can trust.
    fn values(&self, ctx: &RequestCtx<'_>, req: &Parts) -> Vec<String> {
        match &self.0.source {
            Source::Attribute(attribute) => verified_client(ctx)
                .map(|cert| attribute_values(*attribute, cert))
                .unwrap_or_default(),
            Source::Header(name) if IdentityHeaders::vouched(ctx, name) => req
                .headers
                .get_all(name)
                .iter()
                .filter_map(|value| value.to_str().ok().map(str::to_owned))
                .collect(),
            Source::Header(name) => {
                tracing::debug!(
                    route = ctx.route_id,
                    header = %name,
                    "mtls-acl: the header was not set from a verified certificate; ignored"
                );
                Vec::new()
            }
        }
    }

    fn allows(&self, values: &[String]) -> bool {
        if values.is_empty() {
            return false;
        }
        match &self.0.list {
            List::Allow(allowed) => values.iter().any(|value| allowed.contains(value)),
            List::Deny(denied) => !values.iter().any(|value| denied.contains(value)),
        }
    }
}

impl Plugin for MtlsAcl {
    fn name(&self) -> &'static str {
        NAME
    }

    fn request_filter(&self, ctx: &mut RequestCtx<'_>, req: &mut Parts) -> Flow {
        let values = self.values(ctx, req);
        if self.allows(&values) {
            record_verdict(NAME, ctx.route_id, Verdict::Allowed);
            return ControlFlow::Continue(());
        }
        record_verdict(NAME, ctx.route_id, Verdict::Refused("not_allowed"));
        tracing::debug!(
            route = ctx.route_id,
            ?values,
            "mtls-acl: client not allowed"
        );
        ControlFlow::Break(json_reply(StatusCode::FORBIDDEN, FORBIDDEN))
    }
}

#[cfg(test)]
mod tests {
    use rcgen::SanType;
    use serde_json::json;

    use super::*;
    use crate::plugins::testing::{
        self, answered, ctx_with, request, route_verified, Pki, TestCert,
    };
    use serde_json::Value;

    /// Built in a route whose `mtls-auth` sets `X-Client-Cert-Organization`.
    fn build(acl: &Value) -> Result<Box<dyn Plugin>, String> {
        let route = json!({NAME: acl, "mtls-auth": mtls_auth()});
        testing::build_in(&route, NAME)
    }

    fn mtls_auth() -> Value {
        json!({"upstream_cert_org_header": "X-Client-Cert-Organization"})
    }

    /// Runs `mtls-auth` (setting `X-Client-Cert-Organization`) then the ACL.
    fn kong_chain(acl: Value, cert: Option<&TestCert>, injected: &[(&str, &str)]) -> Flow {
        let auth = testing::build("mtls-auth", &mtls_auth()).unwrap();
        let acl = build(&acl).unwrap();
        let conn = ctx_with(cert);
        let mut ctx = conn.ctx();
        let mut req = request(injected);
        auth.request_filter(&mut ctx, &mut req)?;
        acl.request_filter(&mut ctx, &mut req)
    }

    fn allow_callista() -> Value {
        json!({"certificate_header_name": "X-Client-Cert-Organization",
               "allow": ["Callista Enterprise AB"]})
    }

    #[tokio::test]
    async fn the_kong_walkthrough() {
        let pki = Pki::new();
        for cn in ["client1", "client2"] {
            let cert = pki.client(cn);
            assert!(
                kong_chain(allow_callista(), Some(&cert), &[]).is_continue(),
                "{cn}"
            );
        }
        let other = pki.client_in("other", "Other Corp");
        let forged = [("X-Client-Cert-Organization", "Callista Enterprise AB")];
        let (status, _, body) = answered(kong_chain(allow_callista(), Some(&other), &forged)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body, r#"{"message":"You cannot consume this service"}"#);
        let deny_other = json!({"certificate_header_name": "X-Client-Cert-Organization",
                                "deny": ["Other Corp"]});
        assert!(kong_chain(deny_other.clone(), Some(&pki.client("client1")), &[]).is_continue());
        assert!(kong_chain(deny_other, Some(&other), &[]).is_break());
    }

    #[tokio::test]
    async fn a_header_the_client_sent_is_never_read() {
        let acl = build(&allow_callista()).unwrap();
        let pki = Pki::new();
        let conn = ctx_with(Some(&pki.client("client1")));
        let mut req = request(&[("X-Client-Cert-Organization", "Callista Enterprise AB")]);
        let flow = acl.request_filter(&mut conn.ctx(), &mut req);
        assert_eq!(answered(flow).await.0, StatusCode::FORBIDDEN);
    }

    #[test]
    fn attributes_match_any_value() {
        let pki = Pki::new();
        let workload = pki.client_with(|p| {
            p.subject_alt_names = vec![
                SanType::DnsName("pay.example.org".try_into().unwrap()),
                SanType::URI("spiffe://example.org/ns/prod/sa/pay".try_into().unwrap()),
            ];
        });
        let check = |acl: Value, cert: Option<&TestCert>| {
            let acl = build(&acl).unwrap();
            let conn = ctx_with(cert);
            let mut ctx = conn.ctx();
            acl.request_filter(&mut ctx, &mut request(&[]))
                .is_continue()
        };
        let spiffe =
            json!({"attribute": "san_uri", "allow": ["spiffe://example.org/ns/prod/sa/pay"]});
        assert!(check(spiffe.clone(), Some(&workload)));
        assert!(!check(spiffe.clone(), Some(&pki.client("client1"))));
        assert!(!check(spiffe, None));
        let cn = json!({"attribute": "subject_cn", "deny": ["client1"]});
        assert!(!check(cn.clone(), Some(&workload)));
        assert!(check(cn, Some(&pki.client("client2"))));
        let serial = crate::plugins::testing::peer(&workload).summary.serial;
        let colons: Vec<String> = serial
            .as_bytes()
            .chunks(2)
            .map(|pair| String::from_utf8_lossy(pair).to_lowercase())
            .collect();
        let by_serial = json!({"attribute": "serial", "allow": [colons.join(":")]});
        assert!(check(by_serial, Some(&workload)));
    }

    #[test]
    fn reads_the_identity_a_route_verified() {
        let pki = Pki::new();
        let acl = build(&json!({"attribute": "subject_o", "allow": ["Route Org"]})).unwrap();
        let conn = ctx_with(None);
        let mut ctx = conn.ctx();
        route_verified(&mut ctx, &pki.client_in("svc", "Route Org"));
        assert!(acl
            .request_filter(&mut ctx, &mut request(&[]))
            .is_continue());
    }
}
