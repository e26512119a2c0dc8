//! Real handshakes on SSL objects whose SNIs carry routes that verify client
//! certificates themselves.

use std::sync::Arc;

use shared::resource::{CrlMode, UnknownStatus};
use shared::validate::{HostPattern, Revocation};
use shared::x509::CrlSummary;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::RouteCertRequests;
use crate::context::{ClientCert, MtlsPolicy};
use crate::tls::testing::{client_auth, ssl, Ca, ClientOptions, Identity, TestClient, TestServer};
use crate::tls::{AcceptError, SniTable};

fn subject(cert: &rustls_pki_types::CertificateDer<'_>) -> Vec<u8> {
    let (_, cert) = X509Certificate::from_der(cert.as_ref()).unwrap();
    cert.subject().as_raw().to_vec()
}

fn presenting(identity: &Identity) -> TestClient {
    TestClient::new(ClientOptions {
        identity: Some(identity.clone()),
        ..ClientOptions::default()
    })
}

/// Routes on `test.com` trusting CA A and CA B.
fn two_routes(a: &Ca, b: &Ca) -> RouteCertRequests {
    let mut requests = RouteCertRequests::default();
    let host = [HostPattern::parse("test.com").unwrap()];
    requests.add(&host, vec![subject(&a.cert())]);
    requests.add(&host, vec![subject(&b.cert())]);
    requests
}

/// A server for `test.com` whose SSL object trusts its own CA (certificates
/// optional on `public` paths) and whose routes trust CA A and CA B; returns
/// the own CA, CA A, CA B and the server.
async fn sni_with_own_ca_and_two_routes(public: &[&str]) -> (Ca, Ca, Ca, TestServer) {
    let (server_ca, own, a, b) = (
        Ca::new("Server CA"),
        Ca::new("Own CA"),
        Ca::new("CA A"),
        Ca::new("CA B"),
    );
    let objects = [ssl(
        "1",
        &["test.com"],
        &[&server_ca.server(&["test.com"])],
        Some(client_auth(&[own.cert()], 1, public)),
    )];
    let table = SniTable::build_for_routes(&objects, None, None, &two_routes(&a, &b));
    (own, a, b, TestServer::start(table).await)
}

#[tokio::test]
async fn a_plain_sni_asks_for_an_optional_certificate_for_its_routes() {
    let (server_ca, a, b) = (Ca::new("Server CA"), Ca::new("CA A"), Ca::new("CA B"));
    let objects = [
        ssl(
            "1",
            &["test.com"],
            &[&server_ca.server(&["test.com"])],
            None,
        ),
        ssl(
            "2",
            &["other.test"],
            &[&server_ca.server(&["other.test"])],
            None,
        ),
    ];
    let table = SniTable::build_for_routes(&objects, None, None, &two_routes(&a, &b));
    let mut server = TestServer::start(table).await;

    let alice = a.client("alice").sending(&a.cert());
    let client = presenting(&alice);
    client.connect(server.addr, Some("test.com")).await.unwrap();
    let info = server.next_info().await;
    let mut expected = vec![subject(&a.cert()), subject(&b.cert())];
    expected.sort();
    assert_eq!(
        client.hints(),
        expected,
        "the CertificateRequest lists both routes' CAs"
    );
    // Nobody at the SSL level vouches for it; the routes will judge.
    let ClientCert::Failed { cert, .. } = &info.client_cert else {
        panic!(
            "expected an unverified certificate, got {:?}",
            info.client_cert
        );
    };
    assert_eq!(&cert.der, alice.leaf());
    assert_eq!(cert.intermediates, [a.cert()]);
    assert!(matches!(info.mtls, MtlsPolicy::Off));

    // No certificate: the handshake still succeeds.
    let anonymous = TestClient::new(ClientOptions::default());
    connects_without_a_certificate(&anonymous, &mut server, "test.com").await;

    // An SNI no such route can be reached through asks for nothing.
    connects_without_a_certificate(&client, &mut server, "other.test").await;
}

/// `client` completes the handshake on `sni` and the server sees no certificate.
async fn connects_without_a_certificate(client: &TestClient, server: &mut TestServer, sni: &str) {
    client.connect(server.addr, Some(sni)).await.unwrap();
    assert!(matches!(
        server.next_info().await.client_cert,
        ClientCert::None
    ));
}

#[tokio::test]
async fn a_mandatory_sni_stays_mandatory_and_lists_its_own_ca_only() {
    let (own, a, _b, mut server) = sni_with_own_ca_and_two_routes(&[]).await;
    let client = presenting(&a.client("alice"));
    assert!(client
        .connect(server.addr, Some("test.com"))
        .await
        .refused());
    assert!(matches!(
        server.next_error().await,
        AcceptError::Handshake { .. }
    ));
    assert_eq!(client.hints(), [subject(&own.cert())]);
}

#[tokio::test]
async fn an_optional_sni_lists_its_ca_and_the_routes_cas() {
    let (own, a, b, mut server) = sni_with_own_ca_and_two_routes(&["^/public"]).await;
    let client = presenting(&b.client("bob"));
    client.connect(server.addr, Some("test.com")).await.unwrap();
    assert!(matches!(
        server.next_info().await.client_cert,
        ClientCert::Failed { .. }
    ));
    let mut routes = vec![subject(&a.cert()), subject(&b.cert())];
    routes.sort();
    let mut expected = vec![subject(&own.cert())];
    expected.extend(routes);
    assert_eq!(client.hints(), expected);
}

#[tokio::test]
async fn ssl_crls_refuse_revoked_clients_at_the_handshake() {
    let (server_ca, ca) = (Ca::new("Server CA"), Ca::new("Client CA"));
    let (revoked, fine) = (ca.client("revoked"), ca.client("fine"));
    let yesterday = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let crl = ca.crl(&[&revoked], yesterday);
    let mut auth = client_auth(&[ca.cert()], 1, &[]);
    auth.revocation = Some(Revocation {
        summaries: vec![CrlSummary::from_der(&crl).unwrap()],
        crls: vec![crl],
        mode: CrlMode::Strict,
        unknown_status: UnknownStatus::Deny,
    });
    let objects = [ssl(
        "1",
        &["test.com"],
        &[&server_ca.server(&["test.com"])],
        Some(auth),
    )];
    let mut server = TestServer::start(SniTable::build(&objects, None, None)).await;

    presenting(&fine)
        .connect(server.addr, Some("test.com"))
        .await
        .unwrap();
    assert!(matches!(
        server.next_info().await.client_cert,
        ClientCert::Verified(_)
    ));

    assert!(presenting(&revoked)
        .connect(server.addr, Some("test.com"))
        .await
        .refused());
    match server.next_error().await {
        AcceptError::Revoked { ssl_id } => assert_eq!(&*ssl_id, "1"),
        other => panic!("expected a revoked certificate, got {other}"),
    }
}

#[test]
fn entries_are_rebuilt_when_their_routes_requests_change() {
    let (server_ca, a, b) = (Ca::new("Server CA"), Ca::new("CA A"), Ca::new("CA B"));
    let objects = [ssl(
        "1",
        &["test.com"],
        &[&server_ca.server(&["test.com"])],
        None,
    )];
    let first = SniTable::build_for_routes(&objects, None, None, &two_routes(&a, &b));
    let entry = |table: &SniTable| Arc::clone(table.for_sni(Some("test.com")).unwrap());
    let same = SniTable::build_for_routes(&objects, None, Some(&first), &two_routes(&a, &b));
    assert!(Arc::ptr_eq(&entry(&first), &entry(&same)));
    let none =
        SniTable::build_for_routes(&objects, None, Some(&same), &RouteCertRequests::default());
    assert!(!Arc::ptr_eq(&entry(&same), &entry(&none)));
}

/// Under TLS 1.3 a refused client certificate shows up after the client's
/// handshake completed, when it reads the response.
trait RefusedExt {
    fn refused(self) -> bool;
}

impl RefusedExt for std::io::Result<crate::tls::testing::Connected> {
    fn refused(self) -> bool {
        match self {
            Err(_) => true,
            Ok(connected) => connected.response.is_err(),
        }
    }
}
