use std::sync::Arc;

use rcgen::{CertificateParams, KeyPair};
use regex::RegexSet;
use shared::x509::CertSummary;

use super::*;
use crate::context::{ClientPolicyId, PeerCert};

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
        resumed: false,
        client_cert,
        mtls,
        client_policy: ClientPolicyId::default(),
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

mod stale_policy {
    use std::sync::Arc;

    use rustls_pki_types::CertificateRevocationListDer;
    use shared::resource::{CrlMode, UnknownStatus};
    use shared::validate::{ClientAuth, Revocation};
    use shared::x509::CrlSummary;

    use super::*;
    use crate::tls::testing::{client_auth, ssl, valid_ssl, Ca, Identity};

    /// One SSL object, "1", for test.com, and its PKI.
    struct Site {
        ca: Ca,
        server: Identity,
    }

    impl Site {
        fn new() -> Site {
            let ca = Ca::new("Client CA");
            let server = ca.server(&["test.com"]);
            Site { ca, server }
        }

        fn table(&self, client: Option<ClientAuth>) -> SniTable {
            self.table_serving(&self.server, client)
        }

        fn table_serving(&self, server: &Identity, client: Option<ClientAuth>) -> SniTable {
            let fallback = Some("test.com");
            SniTable::build(
                &[ssl("1", &["test.com"], &[server], client)],
                fallback,
                None,
            )
        }

        fn client(&self, skip: &[&str]) -> ClientAuth {
            client_auth(&[self.ca.cert()], 1, skip)
        }
    }

    /// A connection whose handshake `table` served for `sni`.
    fn handshake(table: &SniTable, sni: Option<&str>) -> ConnInfo {
        let entry = table.for_sni(sni).expect("an SSL object serves the SNI");
        conn(Some(TlsInfo {
            server_name: sni.map(str::to_owned),
            ssl_id: Arc::clone(&entry.id),
            protocol: "TLSv1.3",
            resumed: false,
            client_cert: ClientCert::None,
            mtls: entry.mtls.clone(),
            client_policy: entry.client_policy,
        }))
    }

    fn served(conn: &ConnInfo, now: &SniTable) -> bool {
        refuse_stale_policy(conn, now).is_ok()
    }

    fn revocation(crl: CertificateRevocationListDer<'static>, mode: CrlMode) -> Revocation {
        Revocation {
            summaries: vec![CrlSummary::from_der(&crl).unwrap()],
            crls: vec![crl],
            mode,
            unknown_status: UnknownStatus::Deny,
        }
    }

    #[test]
    fn an_unchanged_policy_keeps_serving() {
        let site = Site::new();
        let open = site.table(None);
        let conn = handshake(&open, Some("test.com"));
        assert!(served(&conn, &open));
        assert!(
            served(&conn, &site.table(None)),
            "a rebuild of the same object (another ticket key) changes nothing"
        );
        let mtls = site.table(Some(site.client(&["^/public/"])));
        let optional = handshake(&mtls, Some("test.com"));
        assert!(served(
            &optional,
            &site.table(Some(site.client(&["^/public/"])))
        ));
        assert!(
            served(&super::conn(None), &mtls),
            "plain HTTP has no handshake"
        );
    }

    #[test]
    fn a_renewed_server_certificate_keeps_serving() {
        let site = Site::new();
        let renewed = Ca::new("Server CA").server(&["test.com"]);
        for client in [None, Some(&["^/public/"][..])] {
            let auth = || client.map(|skip| site.client(skip));
            let before = site.table(auth());
            let conn = handshake(&before, Some("test.com"));
            assert!(served(&conn, &site.table_serving(&renewed, auth())));
        }
    }

    #[test]
    fn another_client_section_is_refused_with_421() {
        let site = Site::new();
        let conn = handshake(&site.table(None), Some("test.com"));
        let err = refuse_stale_policy(&conn, &site.table(Some(site.client(&[])))).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::MISDIRECTED_REQUEST);
        let reason = err.to_string();
        assert!(
            reason.contains("SSL object 1") && reason.contains("reconnect"),
            "{reason}"
        );

        let optional = site.table(Some(site.client(&["^/public/", "^/docs/"])));
        let conn = handshake(&optional, Some("test.com"));
        let narrower = site.table(Some(site.client(&["^/public/"])));
        assert!(!served(&conn, &narrower), "a narrower skip_mtls_uri_regex");
        assert!(
            !served(&conn, &site.table(Some(site.client(&[])))),
            "no skip regex"
        );
        let rotated = client_auth(&[Ca::new("New CA").cert()], 1, &["^/public/", "^/docs/"]);
        assert!(!served(&conn, &site.table(Some(rotated))), "another CA");
        let deeper = client_auth(&[site.ca.cert()], 2, &["^/public/", "^/docs/"]);
        assert!(!served(&conn, &site.table(Some(deeper))), "another depth");
    }

    #[test]
    fn a_new_or_changed_crl_is_refused() {
        let site = Site::new();
        let client = site.ca.client("revoked");
        let crl = site.ca.crl(&[&client], time::OffsetDateTime::now_utc());
        let with_crl = |mode| {
            let mut auth = site.client(&[]);
            auth.revocation = Some(revocation(crl.clone(), mode));
            site.table(Some(auth))
        };
        let conn = handshake(&site.table(Some(site.client(&[]))), Some("test.com"));
        assert!(!served(&conn, &with_crl(CrlMode::Strict)));
        let conn = handshake(&with_crl(CrlMode::Strict), Some("test.com"));
        assert!(served(&conn, &with_crl(CrlMode::Strict)));
        assert!(
            !served(&conn, &with_crl(CrlMode::LeafOnly)),
            "another crl_mode"
        );
    }

    #[test]
    fn a_gone_ssl_object_is_refused() {
        let site = Site::new();
        let conn = handshake(&site.table(None), Some("test.com"));
        let empty = SniTable::build(&[], None, None);
        let err = refuse_stale_policy(&conn, &empty).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::MISDIRECTED_REQUEST);
        assert!(err.to_string().contains("no SSL object serves it"), "{err}");

        let mut disabled = valid_ssl("1", &["test.com"], &[&site.server], None);
        disabled.enabled = false;
        let table = SniTable::build(&[Arc::new(disabled)], None, None);
        assert!(!served(&conn, &table), "a disabled object");
    }

    #[test]
    fn the_fallback_is_judged_by_the_current_fallback() {
        let site = Site::new();
        let conn = handshake(&site.table(None), None);
        assert!(served(&conn, &site.table(None)));
        assert!(!served(&conn, &site.table(Some(site.client(&[])))));
        let without_fallback = SniTable::build(
            &[ssl("1", &["test.com"], &[&site.server], None)],
            None,
            None,
        );
        assert!(!served(&conn, &without_fallback), "fallback_sni removed");
    }

    #[test]
    fn the_refusal_closes_an_http1_connection() {
        let site = Site::new();
        let conn = handshake(&site.table(None), Some("test.com"));
        let response = refuse_stale_policy(&conn, &site.table(Some(site.client(&[]))))
            .unwrap_err()
            .into_response();
        assert_eq!(response.status(), http::StatusCode::MISDIRECTED_REQUEST);
        assert_eq!(response.headers()[http::header::CONNECTION], "close");
        let other = ProxyError::RouteNotFound.into_response();
        assert!(other.headers().get(http::header::CONNECTION).is_none());
    }
}
