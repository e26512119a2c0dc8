use std::sync::Arc;

use rcgen::{CertificateParams, KeyPair};
use regex::RegexSet;
use shared::x509::CertSummary;

use super::*;
use crate::context::PeerCert;

fn peer() -> Arc<PeerCert> {
    let der = CertificateParams::default()
        .self_signed(&KeyPair::generate().unwrap())
        .unwrap()
        .der()
        .clone();
    let summary = CertSummary::from_der(&der).unwrap();
    Arc::new(PeerCert {
        der,
        summary,
        intermediates: Vec::new(),
    })
}

fn tls(ssl_id: &str, mtls: MtlsPolicy, client_cert: ClientCert) -> TlsInfo {
    TlsInfo {
        server_name: Some("test.com".to_owned()),
        ssl_id: Arc::from(ssl_id),
        protocol: "TLSv1.3",
        client_cert,
        mtls,
    }
}

fn conn(tls: Option<TlsInfo>) -> ConnInfo {
    ConnInfo::new(
        "127.0.0.1:50000".parse().unwrap(),
        "127.0.0.1:9443".parse().unwrap(),
        tls,
    )
}

fn skip(patterns: &[&str]) -> MtlsPolicy {
    MtlsPolicy::Optional {
        skip: Arc::new(RegexSet::new(patterns).unwrap()),
    }
}

fn allowed(mtls: MtlsPolicy, cert: ClientCert, path: &str) -> bool {
    require_client_cert(&conn(Some(tls("1", mtls, cert))), path).is_ok()
}

#[test]
fn skip_regexes_exempt_matching_paths_only() {
    // The walkthrough's `skip_mtls_uri_regex: ["/anything.*"]`.
    let policy = || skip(&["/anything.*"]);
    assert!(allowed(policy(), ClientCert::None, "/anything/foobar"));
    assert!(!allowed(policy(), ClientCert::None, "/uuid"));
    assert!(
        allowed(policy(), ClientCert::None, "/x/anything"),
        "regexes are unanchored"
    );
    let err = require_client_cert(&conn(Some(tls("1", policy(), ClientCert::None))), "/uuid")
        .unwrap_err();
    assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
    assert!(err.to_string().contains("SSL object 1"), "{err}");
}

#[test]
fn only_a_verified_certificate_opens_other_paths() {
    let policy = || skip(&["^/public/"]);
    assert!(allowed(policy(), ClientCert::Verified(peer()), "/private"));
    let failed = ClientCert::Failed {
        reason: "unknown issuer".to_owned(),
        cert: peer(),
    };
    assert!(!allowed(policy(), failed, "/private"));
}

#[test]
fn other_policies() {
    assert!(allowed(MtlsPolicy::Off, ClientCert::None, "/any"));
    assert!(
        !allowed(MtlsPolicy::Required, ClientCert::None, "/any"),
        "fails closed"
    );
    assert!(allowed(
        MtlsPolicy::Required,
        ClientCert::Verified(peer()),
        "/any"
    ));
    assert!(
        require_client_cert(&conn(None), "/any").is_ok(),
        "plain HTTP has no certificate to check"
    );
}

#[test]
fn host_of_another_ssl_object_is_refused_when_either_verifies_certificates() {
    let verified = || ClientCert::Verified(peer());
    let mtls_conn = tls("1", MtlsPolicy::Required, verified());
    assert!(is_misdirected(&mtls_conn, Some(("2", &MtlsPolicy::Off))));
    assert!(!is_misdirected(
        &mtls_conn,
        Some(("1", &MtlsPolicy::Required))
    ));
    assert!(
        !is_misdirected(&mtls_conn, None),
        "a host without an SSL object"
    );

    let open_conn = tls("1", MtlsPolicy::Off, ClientCert::None);
    assert!(
        is_misdirected(&open_conn, Some(("2", &MtlsPolicy::Required))),
        "no detour through a certificate-free SNI"
    );
    assert!(is_misdirected(&open_conn, Some(("2", &skip(&["/"])))));
    assert!(!is_misdirected(&open_conn, Some(("2", &MtlsPolicy::Off))));
}

#[test]
fn misdirected_checks_need_tls_and_a_host() {
    let snis = SniTable::build(&[], None, None);
    assert!(refuse_misdirected(&conn(None), Some("test.com"), &snis).is_ok());
    let mtls_conn = conn(Some(tls(
        "1",
        MtlsPolicy::Required,
        ClientCert::Verified(peer()),
    )));
    assert!(refuse_misdirected(&mtls_conn, None, &snis).is_ok());
    assert!(refuse_misdirected(&mtls_conn, Some("unknown.test"), &snis).is_ok());
}

#[test]
fn plain_http_cannot_reach_a_host_that_verifies_certificates() {
    let refused = refuse_plaintext("test.com", Some(("1", &MtlsPolicy::Required))).unwrap_err();
    assert_eq!(refused.status(), http::StatusCode::MISDIRECTED_REQUEST);
    assert!(refuse_plaintext("test.com", Some(("1", &skip(&["/anything"])))).is_err());
    assert!(refuse_plaintext("open.com", Some(("2", &MtlsPolicy::Off))).is_ok());
    assert!(refuse_plaintext("127.0.0.1", None).is_ok());
}
