//! An upstream's `tls`: the client identity the gateway presents, what it
//! trusts, and the server name it sends and verifies.
//!
//! References to SSL objects (`client_cert_id`, `ca_id`) are kept as ids:
//! the admin API checks that they exist, the gateway resolves them when it
//! builds its snapshot.

use rustls_pki_types::{CertificateDer, ServerName};

use crate::resource::{PassHost, Scheme, Upstream, UpstreamTls};
use crate::validate::{CertKeyPair, ValidationError};
use crate::x509;

/// How the gateway speaks TLS to a `scheme: https` upstream (the defaults
/// when the upstream has no `tls`).
#[derive(Debug)]
pub struct UpstreamTlsPolicy {
    /// `None`: no client certificate is offered.
    pub identity: Option<ClientIdentity>,
    pub trust: Trust,
    /// `tls.sni`, else the host of `upstream_host` with `pass_host:
    /// rewrite`; `None`: each node's own host. Lowercase.
    pub server_name: Option<String>,
}

/// The client certificate presented to the upstream.
#[derive(Debug)]
pub enum ClientIdentity {
    /// `client_cert` + `client_key`, parsed and matched.
    Inline(CertKeyPair),
    /// `client_cert_id`: the id of an SSL object of `type: client`.
    SslObject(String),
}

/// How the upstream's certificate is verified.
#[derive(Debug)]
pub enum Trust {
    /// `verify: false`: any certificate is accepted (the handshake
    /// signature is still checked).
    Off,
    /// The Mozilla roots shipped with the gateway (webpki-roots).
    WebPki,
    /// `ca`: these certificates are the trust anchors.
    Pem(Vec<CertificateDer<'static>>),
    /// `ca_id`: the `client.ca` of that SSL object is the trust anchors.
    SslObject(String),
}

/// `None` for `scheme: http` (which must not have `tls`).
pub(super) fn validate(
    spec: &Upstream,
    upstream_host: Option<&str>,
) -> Result<Option<UpstreamTlsPolicy>, ValidationError> {
    let default = UpstreamTls::default();
    let tls = match (spec.scheme, &spec.tls) {
        (Scheme::Http, None) => return Ok(None),
        (Scheme::Http, Some(_)) => {
            return Err(ValidationError::field(
                "tls",
                "is only used with scheme \"https\"; set scheme to \"https\" or remove tls",
            ))
        }
        (Scheme::Https, tls) => tls.as_ref().unwrap_or(&default),
    };
    let rewritten = match spec.pass_host {
        PassHost::Rewrite => upstream_host,
        PassHost::Pass | PassHost::Node => None,
    };
    Ok(Some(UpstreamTlsPolicy {
        identity: identity(tls)?,
        trust: trust(tls)?,
        server_name: server_name(tls.sni.as_deref(), rewritten)?,
    }))
}

fn identity(tls: &UpstreamTls) -> Result<Option<ClientIdentity>, ValidationError> {
    match (&tls.client_cert, &tls.client_key, &tls.client_cert_id) {
        (None, None, None) => Ok(None),
        (None, None, Some(id)) => Ok(Some(ClientIdentity::SslObject(id.clone()))),
        (_, _, Some(_)) => Err(ValidationError::field(
            "tls.client_cert_id",
            "excludes tls.client_cert and tls.client_key: give the identity inline or by \
             reference, not both",
        )),
        (Some(_), None, None) => Err(ValidationError::field(
            "tls.client_key",
            "is required with tls.client_cert",
        )),
        (None, Some(_), None) => Err(ValidationError::field(
            "tls.client_cert",
            "is required with tls.client_key",
        )),
        (Some(cert), Some(key), None) => {
            CertKeyPair::parse("tls.client_cert", cert, "tls.client_key", key)
                .map(ClientIdentity::Inline)
                .map(Some)
        }
    }
}

fn trust(tls: &UpstreamTls) -> Result<Trust, ValidationError> {
    let verify = tls.verify.unwrap_or(true);
    match (verify, &tls.ca, &tls.ca_id) {
        (false, None, None) => Ok(Trust::Off),
        (false, _, _) => Err(ValidationError::field(
            "tls.verify",
            "is false, so tls.ca and tls.ca_id would be ignored; remove them or verify",
        )),
        (true, Some(_), Some(_)) => Err(ValidationError::field(
            "tls.ca_id",
            "give either tls.ca or tls.ca_id, not both",
        )),
        (true, None, None) => Ok(Trust::WebPki),
        (true, None, Some(id)) => Ok(Trust::SslObject(id.clone())),
        (true, Some(pem), None) => x509::parse_certs(pem)
            .map(Trust::Pem)
            .map_err(|e| ValidationError::field("tls.ca", e.to_string())),
    }
}

/// `tls.sni`, else the host part of a rewritten `upstream_host`; either must
/// be something a certificate can name.
fn server_name(
    sni: Option<&str>,
    rewritten_host: Option<&str>,
) -> Result<Option<String>, ValidationError> {
    if let Some(sni) = sni {
        return checked_name(sni)
            .map(Some)
            .map_err(|reason| ValidationError::field("tls.sni", format!("{sni:?} {reason}")));
    }
    let Some(host) = rewritten_host else {
        return Ok(None);
    };
    checked_name(host_part(host)).map(Some).map_err(|reason| {
        ValidationError::field(
            "upstream_host",
            format!(
                "{host:?} is the TLS server name of this https upstream, but it {reason}; \
                 set tls.sni"
            ),
        )
    })
}

/// `host` from `host`, `host:port`, `[v6]` or `[v6]:port`.
fn host_part(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.split_once(':') {
        Some((host, port)) if !port.contains(':') => host,
        _ => authority,
    }
}

fn checked_name(name: &str) -> Result<String, String> {
    let lower = name.to_ascii_lowercase();
    let lower = lower.strip_suffix('.').unwrap_or(&lower).to_owned();
    ServerName::try_from(lower.as_str())
        .map(|_| ())
        .map_err(|_| "is not a DNS name or IP address".to_owned())?;
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use rcgen::PKCS_ECDSA_P256_SHA256;
    use serde_json::{json, Value};

    use super::*;
    use crate::resource::Kind;
    use crate::validate::{validate, UpstreamRef, Valid, ValidUpstream};
    use crate::x509::test_pki::{Issued, TestCa, WALKTHROUGH};

    fn client() -> Issued {
        let ca = TestCa::new("Upstream client CA", &PKCS_ECDSA_P256_SHA256);
        ca.leaf("gateway", &[], Vec::new(), &PKCS_ECDSA_P256_SHA256)
    }

    fn upstream(tls: Value) -> Result<std::sync::Arc<ValidUpstream>, ValidationError> {
        let value = json!({"nodes": {"backend.internal:8443": 1}, "scheme": "https", "tls": tls});
        match validate(Kind::Upstreams, "1", &value)? {
            Valid::Upstream(upstream) => Ok(upstream),
            other => panic!("not an upstream: {other:?}"),
        }
    }

    fn policy(tls: Value) -> UpstreamTlsPolicy {
        let upstream = upstream(tls).expect("valid");
        let ValidUpstream { tls, .. } = std::sync::Arc::into_inner(upstream).expect("unshared");
        *tls.expect("https has a policy")
    }

    fn blamed(tls: Value) -> String {
        match upstream(tls) {
            Err(ValidationError::Field { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn https_defaults_verify_with_webpki_roots_and_no_identity() {
        let value = json!({"nodes": {"backend.internal": 1}, "scheme": "https"});
        let Ok(Valid::Upstream(upstream)) = validate(Kind::Upstreams, "1", &value) else {
            panic!("valid");
        };
        let tls = upstream.tls.as_ref().expect("https has a policy");
        assert!(tls.identity.is_none());
        assert!(matches!(tls.trust, Trust::WebPki));
        assert_eq!(tls.server_name, None);
        let plain = json!({"nodes": {"backend.internal": 1}});
        let Ok(Valid::Upstream(plain)) = validate(Kind::Upstreams, "1", &plain) else {
            panic!("valid");
        };
        assert!(plain.tls.is_none());
    }

    #[test]
    fn inline_identity_is_parsed_and_must_match() {
        let pair = client();
        let tls = policy(json!({"client_cert": pair.cert, "client_key": pair.key}));
        let Some(ClientIdentity::Inline(inline)) = tls.identity else {
            panic!("inline identity");
        };
        assert_eq!(inline.leaf.subject, "CN=gateway");
        let other = client();
        assert_eq!(
            blamed(json!({"client_cert": pair.cert, "client_key": other.key})),
            "tls.client_key"
        );
        assert_eq!(blamed(json!({"client_cert": pair.cert})), "tls.client_key");
        assert_eq!(blamed(json!({"client_key": pair.key})), "tls.client_cert");
        assert_eq!(
            blamed(json!({"client_cert": "garbage", "client_key": pair.key})),
            "tls.client_cert"
        );
    }

    #[test]
    fn x509_v1_client_certificates_are_accepted() {
        let pki = &*WALKTHROUGH;
        let tls = policy(json!({"client_cert": pki.client_cert, "client_key": pki.client_key}));
        assert!(matches!(tls.identity, Some(ClientIdentity::Inline(_))));
    }

    #[test]
    fn client_cert_id_excludes_the_inline_identity() {
        let tls = policy(json!({"client_cert_id": 7}));
        assert!(matches!(tls.identity, Some(ClientIdentity::SslObject(id)) if id == "7"));
        let pair = client();
        assert_eq!(
            blamed(
                json!({"client_cert_id": "7", "client_cert": pair.cert, "client_key": pair.key})
            ),
            "tls.client_cert_id"
        );
        assert_eq!(
            blamed(json!({"client_cert_id": "7", "client_key": pair.key})),
            "tls.client_cert_id"
        );
    }

    #[test]
    fn trust_is_one_of_off_ca_or_ca_id() {
        let pki = &*WALKTHROUGH;
        assert!(matches!(policy(json!({"verify": false})).trust, Trust::Off));
        assert!(matches!(
            policy(json!({"verify": true})).trust,
            Trust::WebPki
        ));
        assert!(
            matches!(policy(json!({"ca": pki.ca_cert})).trust, Trust::Pem(ref certs) if certs.len() == 1)
        );
        assert!(
            matches!(policy(json!({"ca_id": "ca"})).trust, Trust::SslObject(ref id) if id == "ca")
        );
        assert_eq!(
            blamed(json!({"verify": false, "ca": pki.ca_cert})),
            "tls.verify"
        );
        assert_eq!(
            blamed(json!({"ca": pki.ca_cert, "ca_id": "ca"})),
            "tls.ca_id"
        );
        assert_eq!(blamed(json!({"ca": "not a PEM"})), "tls.ca");
    }

    #[test]
    fn server_name_comes_from_sni_or_a_rewritten_host() {
        assert_eq!(
            policy(json!({"sni": "Backend.Example"}))
                .server_name
                .as_deref(),
            Some("backend.example")
        );
        assert_eq!(blamed(json!({"sni": "not a name"})), "tls.sni");
        let rewrite = json!({
            "nodes": {"10.0.0.1:8443": 1}, "scheme": "https",
            "pass_host": "rewrite", "upstream_host": "api.internal:8443"
        });
        let Ok(Valid::Upstream(upstream)) = validate(Kind::Upstreams, "1", &rewrite) else {
            panic!("valid");
        };
        let tls = upstream.tls.as_ref().expect("policy");
        assert_eq!(tls.server_name.as_deref(), Some("api.internal"));
    }

    #[test]
    fn tls_needs_https_and_errors_inside_routes_name_the_inline_path() {
        let plain = json!({"nodes": {"a:80": 1}, "tls": {"verify": false}});
        assert!(matches!(
            validate(Kind::Upstreams, "1", &plain),
            Err(ValidationError::Field { field, .. }) if field == "tls"
        ));
        let pair = client();
        let route = json!({"uri": "/", "upstream": {
            "nodes": {"a:443": 1}, "scheme": "https", "tls": {"client_cert": pair.cert}
        }});
        assert!(matches!(
            validate(Kind::Routes, "1", &route),
            Err(ValidationError::Field { field, .. }) if field == "upstream.tls.client_key"
        ));
        let route = json!({"uri": "/", "upstream": {
            "nodes": {"a:443": 1}, "scheme": "https",
            "tls": {"client_cert": pair.cert, "client_key": pair.key}
        }});
        let Ok(Valid::Route(route)) = validate(Kind::Routes, "1", &route) else {
            panic!("valid route");
        };
        let UpstreamRef::Inline(inline) = &route.upstream else {
            panic!("inline upstream");
        };
        assert!(matches!(
            inline.tls.as_ref().and_then(|t| t.identity.as_ref()),
            Some(ClientIdentity::Inline(_))
        ));
    }

    #[test]
    fn the_schema_refuses_unknown_fields_and_never_echoes_a_client_key() {
        let value = json!({"nodes": {"a:443": 1}, "scheme": "https", "tls": {"client_keys": "x"}});
        assert!(matches!(
            validate(Kind::Upstreams, "1", &value),
            Err(ValidationError::Schema(_))
        ));
        let value = json!({"nodes": {"a:443": 1}, "scheme": "https", "tls": {"client_key": "s3cret", "client_cert": 1}});
        let message = validate(Kind::Upstreams, "1", &value)
            .expect_err("client_cert is not a string")
            .to_string();
        assert!(!message.contains("s3cret"), "{message}");
        let value =
            json!({"nodes": {"a:443": 1}, "scheme": "https", "tls": {"client_key": ["s3cret"]}});
        let message = validate(Kind::Upstreams, "1", &value)
            .expect_err("client_key is not a string")
            .to_string();
        assert!(!message.contains("s3cret"), "{message}");
    }

    #[test]
    fn host_part_strips_ports_and_brackets() {
        assert_eq!(host_part("api.internal:8443"), "api.internal");
        assert_eq!(host_part("api.internal"), "api.internal");
        assert_eq!(host_part("[::1]:8443"), "::1");
        assert_eq!(host_part("::1"), "::1");
    }

    #[test]
    fn names_are_checked_and_lowercased() {
        assert_eq!(checked_name("API.Internal.").as_deref(), Ok("api.internal"));
        assert_eq!(checked_name("10.0.0.1").as_deref(), Ok("10.0.0.1"));
        assert!(checked_name("bad name").is_err());
        assert!(checked_name("").is_err());
    }
}
