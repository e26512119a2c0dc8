//! Real TLS handshakes over loopback between [`accept`] and rustls, curl and
//! `openssl s_client` clients.

use std::sync::Arc;

use rustls::{CertificateError, HandshakeKind, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use shared::resource::SslType;
use shared::validate::{TlsVersion, ValidSsl};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::cert_error::ClientCertError;
use super::testing::{
    client_auth, ssl, valid_ssl, Ca, ClientOptions, Identity, TestClient, TestServer,
    WalkthroughPki, TIMEOUT,
};
use super::{AcceptError, SniTable};
use crate::context::{ClientCert, MtlsPolicy, PeerCert};

fn table(ssls: &[Arc<ValidSsl>]) -> SniTable {
    SniTable::build(ssls, None, None)
}

fn presenting(identity: &Identity) -> TestClient {
    TestClient::new(ClientOptions {
        identity: Some(identity.clone()),
        ..ClientOptions::default()
    })
}

fn anonymous() -> TestClient {
    TestClient::new(ClientOptions::default())
}

fn verified(cert: &ClientCert) -> &PeerCert {
    match cert {
        ClientCert::Verified(cert) => cert,
        other => panic!("expected a verified certificate, got {other:?}"),
    }
}

fn failure(cert: &ClientCert) -> &str {
    match cert {
        ClientCert::Failed { reason, .. } => reason,
        other => panic!("expected a failed certificate, got {other:?}"),
    }
}

/// The reason a handshake refused the client's certificate.
fn refusal(err: &AcceptError) -> &rustls::Error {
    match err {
        AcceptError::Handshake { source, .. } => source,
        other => panic!("expected a handshake error, got {other}"),
    }
}

fn is_cert_error(err: &AcceptError, expected: &ClientCertError) -> bool {
    match refusal(err) {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            other.0.downcast_ref::<ClientCertError>() == Some(expected)
        }
        rustls::Error::InvalidCertificate(error) => {
            rustls::Error::InvalidCertificate(error.clone())
                == rustls::Error::from(expected.clone())
        }
        _ => false,
    }
}

fn subject_der(cert: &CertificateDer<'_>) -> Vec<u8> {
    let (_, cert) = X509Certificate::from_der(cert.as_ref()).unwrap();
    cert.subject().as_raw().to_vec()
}

#[tokio::test]
async fn exact_sni_beats_wildcard_which_beats_any() {
    let ca = Ca::new("SERVER CA");
    let exact = ca.server(&["a.example.com"]);
    let wildcard = ca.server(&["*.example.com"]);
    let any = ca.server(&["any.test"]);
    let mut server = TestServer::start(table(&[
        ssl("exact", &["a.example.com"], &[&exact], None),
        ssl("wildcard", &["*.example.com"], &[&wildcard], None),
        ssl("any", &["*"], &[&any], None),
    ]))
    .await;
    let client = anonymous();
    let cases = [
        ("a.example.com", "exact", &exact),
        ("A.Example.COM", "exact", &exact),
        ("b.example.com", "wildcard", &wildcard),
        // One label only: deeper names fall through to `*`.
        ("x.b.example.com", "any", &any),
        ("example.com", "any", &any),
        ("elsewhere.test", "any", &any),
    ];
    for (sni, ssl_id, identity) in cases {
        let connected = client.connect(server.addr, Some(sni)).await.unwrap();
        let info = server.next_info().await;
        assert_eq!(&*info.ssl_id, ssl_id, "SNI {sni}");
        assert_eq!(
            info.server_name.as_deref(),
            Some(sni.to_ascii_lowercase().as_str())
        );
        assert_eq!(&connected.server_cert, identity.leaf(), "SNI {sni}");
        assert_eq!(
            connected.response.unwrap().rsplit('\n').next(),
            Some(&*format!("{ssl_id} NONE"))
        );
        assert!(matches!(info.client_cert, ClientCert::None));
        assert!(matches!(info.mtls, MtlsPolicy::Off));
    }
}

#[tokio::test]
async fn unknown_or_missing_sni_is_refused_without_fallback() {
    let ca = Ca::new("SERVER CA");
    let identity = ca.server(&["a.example.com"]);
    let objects = [ssl("1", &["a.example.com"], &[&identity], None)];
    let mut server = TestServer::start(table(&objects)).await;
    let client = anonymous();

    assert!(client
        .connect(server.addr, Some("b.example.com"))
        .await
        .is_err());
    let err = server.next_error().await;
    assert!(
        matches!(&err, AcceptError::UnknownSni(name) if name == "b.example.com"),
        "{err}"
    );

    assert!(client.connect(server.addr, None).await.is_err());
    assert!(matches!(server.next_error().await, AcceptError::NoSni));

    // A fallback naming no SSL object refuses as well.
    server.set_table(SniTable::build(&objects, Some("nowhere.test"), None));
    assert!(client.connect(server.addr, None).await.is_err());
    assert!(matches!(server.next_error().await, AcceptError::NoSni));
}

#[tokio::test]
async fn missing_sni_uses_the_fallback() {
    let ca = Ca::new("SERVER CA");
    let first = ca.server(&["a.example.com"]);
    let second = ca.server(&["b.example.com"]);
    let objects = [
        ssl("1", &["a.example.com"], &[&first], None),
        ssl("2", &["*.example.com"], &[&second], None),
    ];
    let mut server =
        TestServer::start(SniTable::build(&objects, Some("B.example.com."), None)).await;
    let connected = anonymous().connect(server.addr, None).await.unwrap();
    let info = server.next_info().await;
    assert_eq!(&*info.ssl_id, "2");
    assert_eq!(info.server_name, None);
    assert_eq!(&connected.server_cert, second.leaf());
}

/// A v3 PKI: a server CA, a client CA and an unrelated CA.
struct V3 {
    server: Identity,
    client_ca: Ca,
    other_ca: Ca,
}

impl V3 {
    fn new() -> V3 {
        V3 {
            server: Ca::new("SERVER CA").server(&["mtls.test"]),
            client_ca: Ca::new("CLIENT CA"),
            other_ca: Ca::new("OTHER CA"),
        }
    }

    fn table(&self, depth: u32, skip: &[&str]) -> SniTable {
        let auth = client_auth(&[self.client_ca.cert()], depth, skip);
        table(&[ssl("m", &["mtls.test"], &[&self.server], Some(auth))])
    }
}

#[tokio::test]
async fn required_mtls_accepts_only_trusted_v3_certificates() {
    let pki = V3::new();
    let mut server = TestServer::start(pki.table(1, &[])).await;

    let _ = anonymous().connect(server.addr, Some("mtls.test")).await;
    let err = server.next_error().await;
    assert_eq!(
        refusal(&err),
        &rustls::Error::NoCertificatesPresented,
        "{err}"
    );

    let stranger = presenting(&pki.other_ca.client("mallory"));
    let connected = stranger.connect(server.addr, Some("mtls.test")).await;
    assert!(connected.is_err() || connected.unwrap().response.is_err());
    let err = server.next_error().await;
    assert!(
        is_cert_error(&err, &ClientCertError::UnknownIssuer),
        "{err}"
    );

    let alice = pki.client_ca.client("alice");
    let client = presenting(&alice);
    let connected = client
        .connect(server.addr, Some("mtls.test"))
        .await
        .unwrap();
    assert!(connected.response.unwrap().ends_with("m SUCCESS"));
    let info = server.next_info().await;
    let cert = verified(&info.client_cert);
    assert_eq!(&cert.der, alice.leaf());
    assert_eq!(cert.summary.subject, "CN=alice");
    assert_eq!(cert.summary.version, 3);
    assert_eq!(info.protocol, "TLSv1.3");
    assert!(matches!(info.mtls, MtlsPolicy::Required));
    // The CertificateRequest names the trusted CA.
    assert_eq!(client.hints(), vec![subject_der(&pki.client_ca.cert())]);
}

#[tokio::test]
async fn depth_counts_the_certificates_above_the_leaf() {
    let pki = V3::new();
    let intermediate = pki.client_ca.intermediate("CLIENT INTERMEDIATE");
    let bob = intermediate.client("bob").sending(&intermediate.cert());
    let client = presenting(&bob);

    let mut server = TestServer::start(pki.table(1, &[])).await;
    let _ = client.connect(server.addr, Some("mtls.test")).await;
    let err = server.next_error().await;
    assert!(is_cert_error(&err, &ClientCertError::ChainTooLong), "{err}");

    server.set_table(pki.table(2, &[]));
    client
        .connect(server.addr, Some("mtls.test"))
        .await
        .unwrap();
    assert_eq!(
        verified(&server.next_info().await.client_cert)
            .summary
            .subject,
        "CN=bob"
    );

    // The root sent along (as `openssl s_client -CAfile` does) changes nothing.
    let with_root = presenting(&bob.clone().sending(&pki.client_ca.cert()));
    with_root
        .connect(server.addr, Some("mtls.test"))
        .await
        .unwrap();
    verified(&server.next_info().await.client_cert);

    // Depth 1 still accepts a leaf issued directly by the CA.
    server.set_table(pki.table(1, &[]));
    presenting(&pki.client_ca.client("carol"))
        .connect(server.addr, Some("mtls.test"))
        .await
        .unwrap();
    verified(&server.next_info().await.client_cert);
}

#[tokio::test]
async fn optional_mtls_records_the_verdict_and_lets_the_handshake_through() {
    let pki = V3::new();
    let mut server = TestServer::start(pki.table(1, &["/anything.*"])).await;

    let connected = anonymous()
        .connect(server.addr, Some("mtls.test"))
        .await
        .unwrap();
    assert!(connected.response.unwrap().ends_with("m NONE"));
    let info = server.next_info().await;
    assert!(matches!(info.client_cert, ClientCert::None));
    match &info.mtls {
        MtlsPolicy::Optional { skip } => assert!(skip.is_match("/anything/foobar")),
        other => panic!("expected optional mTLS, got {other:?}"),
    }

    let connected = presenting(&pki.other_ca.client("mallory"))
        .connect(server.addr, Some("mtls.test"))
        .await
        .unwrap();
    assert!(connected
        .response
        .unwrap()
        .ends_with("m FAILED:unable to get local issuer certificate"));
    let info = server.next_info().await;
    assert_eq!(
        failure(&info.client_cert),
        "unable to get local issuer certificate"
    );

    presenting(&pki.client_ca.client("alice"))
        .connect(server.addr, Some("mtls.test"))
        .await
        .unwrap();
    assert_eq!(
        verified(&server.next_info().await.client_cert)
            .summary
            .subject,
        "CN=alice"
    );
}

/// The walkthrough's SSL object: `sni: test.com`, its v1 server
/// certificate, `client.ca` = its v1 CA.
fn walkthrough_table(pki: &WalkthroughPki, skip: &[&str]) -> SniTable {
    let server = pki.identity("server.cer", "server.key");
    let auth = client_auth(&[pki.cert("ca.cer")], 1, skip);
    table(&[ssl("1", &["test.com"], &[&server], Some(auth))])
}

#[tokio::test]
async fn walkthrough_v1_client_certificate_is_verified() {
    let pki = WalkthroughPki::new();
    let mut server = TestServer::start(walkthrough_table(&pki, &[])).await;
    let client_id = pki.identity("client.cer", "client.key");

    for (version, name) in [
        (&rustls::version::TLS13, "TLSv1.3"),
        (&rustls::version::TLS12, "TLSv1.2"),
    ] {
        let client = TestClient::new(ClientOptions {
            identity: Some(client_id.clone()),
            versions: Some(vec![version]),
            ..ClientOptions::default()
        });
        let connected = client.connect(server.addr, Some("test.com")).await.unwrap();
        assert_eq!(connected.server_cert, pki.cert("server.cer"));
        assert!(connected.response.unwrap().ends_with("1 SUCCESS"));
        let info = server.next_info().await;
        assert_eq!(info.protocol, name);
        let cert = verified(&info.client_cert);
        assert_eq!(cert.summary.version, 1);
        assert_eq!(cert.summary.subject, "CN=CLIENT");
        assert_eq!(cert.summary.issuer, "CN=ROOTCA");
    }

    // Extra certificates (here the CA itself) are ignored.
    let client = presenting(&client_id.sending(&pki.cert("ca.cer")));
    client.connect(server.addr, Some("test.com")).await.unwrap();
    verified(&server.next_info().await.client_cert);
}

#[tokio::test]
async fn walkthrough_refuses_untrusted_v1_certificates() {
    let pki = WalkthroughPki::new();
    let mut server = TestServer::start(walkthrough_table(&pki, &[])).await;
    let cases = [
        ("stranger.cer", "client.key", ClientCertError::UnknownIssuer),
        ("forged.cer", "client.key", ClientCertError::BadSignature),
        ("selfsigned.cer", "client.key", ClientCertError::SelfSigned),
        ("ca.cer", "ca.key", ClientCertError::AnchorAsLeaf),
    ];
    for (cert, key, expected) in cases {
        let _ = presenting(&pki.identity(cert, key))
            .connect(server.addr, Some("test.com"))
            .await;
        let err = server.next_error().await;
        assert!(is_cert_error(&err, &expected), "{cert}: {err}");
    }
    let _ = anonymous().connect(server.addr, Some("test.com")).await;
    assert_eq!(
        refusal(&server.next_error().await),
        &rustls::Error::NoCertificatesPresented
    );
}

#[tokio::test]
async fn walkthrough_optional_mode_records_untrusted_v1_certificates() {
    let pki = WalkthroughPki::new();
    let mut server = TestServer::start(walkthrough_table(&pki, &["/anything.*"])).await;
    let cases = [
        (
            "stranger.cer",
            "client.key",
            "unable to get local issuer certificate",
        ),
        ("selfsigned.cer", "client.key", "self-signed certificate"),
    ];
    for (cert, key, reason) in cases {
        let connected = presenting(&pki.identity(cert, key))
            .connect(server.addr, Some("test.com"))
            .await
            .unwrap();
        assert!(connected
            .response
            .unwrap()
            .ends_with(&format!("1 FAILED:{reason}")));
        assert_eq!(failure(&server.next_info().await.client_cert), reason);
    }
    presenting(&pki.identity("client.cer", "client.key"))
        .connect(server.addr, Some("test.com"))
        .await
        .unwrap();
    verified(&server.next_info().await.client_cert);
}

/// The walkthrough's own client commands.
#[tokio::test]
async fn walkthrough_with_curl_and_openssl() {
    let pki = WalkthroughPki::new();
    let mut server = TestServer::start(walkthrough_table(&pki, &[])).await;
    let port = server.addr.port();

    let curl = |with_cert: bool| {
        let mut command = tokio::process::Command::new("curl");
        command
            .arg("--resolve")
            .arg(format!("test.com:{port}:127.0.0.1"))
            .arg(format!("https://test.com:{port}/anything"))
            .args(["-k", "-sS", "--http1.1"]);
        if with_cert {
            command.arg("--cert").arg(pki.path("client.cer"));
            command.arg("--key").arg(pki.path("client.key"));
        }
        command.output()
    };
    let out = tokio::time::timeout(TIMEOUT, curl(true))
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1 SUCCESS");
    let info = server.next_info().await;
    assert_eq!(verified(&info.client_cert).summary.subject, "CN=CLIENT");

    let out = tokio::time::timeout(TIMEOUT, curl(false))
        .await
        .unwrap()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        refusal(&server.next_error().await),
        &rustls::Error::NoCertificatesPresented
    );

    // `s_client -CAfile` sends the CA after the client certificate.
    let s_client = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "test.com",
        ])
        .arg("-cert")
        .arg(pki.path("client.cer"))
        .arg("-key")
        .arg(pki.path("client.key"))
        .arg("-CAfile")
        .arg(pki.path("ca.cer"))
        .stdin(std::process::Stdio::null())
        .output();
    tokio::time::timeout(TIMEOUT, s_client)
        .await
        .unwrap()
        .unwrap();
    verified(&server.next_info().await.client_cert);
}

#[tokio::test]
async fn serves_the_certificate_the_client_can_verify() {
    let pki = WalkthroughPki::new();
    let rsa = pki.identity("server.cer", "server.key");
    let ecdsa = Ca::new("ECDSA CA").server(&["test.com"]);
    let mut server =
        TestServer::start(table(&[ssl("1", &["test.com"], &[&rsa, &ecdsa], None)])).await;
    let offering = |schemes: Vec<SignatureScheme>| {
        TestClient::new(ClientOptions {
            schemes: Some(schemes),
            ..ClientOptions::default()
        })
    };

    let connected = offering(vec![SignatureScheme::ECDSA_NISTP256_SHA256])
        .connect(server.addr, Some("test.com"))
        .await
        .unwrap();
    assert_eq!(&connected.server_cert, ecdsa.leaf());
    server.next_info().await;

    let rsa_only = vec![
        SignatureScheme::RSA_PSS_SHA256,
        SignatureScheme::RSA_PKCS1_SHA256,
    ];
    let connected = offering(rsa_only)
        .connect(server.addr, Some("test.com"))
        .await
        .unwrap();
    assert_eq!(&connected.server_cert, rsa.leaf());
    server.next_info().await;
}

#[tokio::test]
async fn ssl_protocols_restricts_versions() {
    let identity = Ca::new("SERVER CA").server(&["a.test"]);
    let mut object = valid_ssl("1", &["a.test"], &[&identity], None);
    object.protocols = vec![TlsVersion::Tls13];
    let mut server = TestServer::start(table(&[Arc::new(object)])).await;
    let speaking = |version| {
        TestClient::new(ClientOptions {
            versions: Some(vec![version]),
            ..ClientOptions::default()
        })
    };

    assert!(speaking(&rustls::version::TLS12)
        .connect(server.addr, Some("a.test"))
        .await
        .is_err());
    assert!(matches!(
        server.next_error().await,
        AcceptError::Handshake { .. }
    ));
    speaking(&rustls::version::TLS13)
        .connect(server.addr, Some("a.test"))
        .await
        .unwrap();
    assert_eq!(server.next_info().await.protocol, "TLSv1.3");
}

/// One handshake with a verified client certificate; how it went.
async fn handshake_kind(client: &TestClient, server: &mut TestServer) -> Option<HandshakeKind> {
    client
        .connect(server.addr, Some("mtls.test"))
        .await
        .unwrap();
    let (info, kind) = server.next().await.unwrap();
    verified(&info.client_cert);
    kind
}

#[tokio::test]
async fn sessions_resume_only_on_the_same_build_of_the_object() {
    let pki = V3::new();
    let auth = || client_auth(&[pki.client_ca.cert()], 1, &[]);
    let object = ssl("m", &["mtls.test"], &[&pki.server], Some(auth()));
    let mut server = TestServer::start(table(&[Arc::clone(&object)])).await;
    let client = presenting(&pki.client_ca.client("alice"));
    assert_eq!(
        handshake_kind(&client, &mut server).await,
        Some(HandshakeKind::Full)
    );
    assert_eq!(
        handshake_kind(&client, &mut server).await,
        Some(HandshakeKind::Resumed)
    );

    // Unchanged object: the rebuilt table keeps its entry, sessions included.
    server.set_table(SniTable::build(
        &[Arc::clone(&object)],
        None,
        Some(&server.table()),
    ));
    assert_eq!(
        handshake_kind(&client, &mut server).await,
        Some(HandshakeKind::Resumed)
    );

    // Changed object (a new CA, or the same one put again): no resumption.
    let replaced = ssl("m", &["mtls.test"], &[&pki.server], Some(auth()));
    server.set_table(SniTable::build(&[replaced], None, Some(&server.table())));
    assert_eq!(
        handshake_kind(&client, &mut server).await,
        Some(HandshakeKind::Full)
    );
}

#[test]
fn accept_can_be_spawned() {
    fn assert_send<T: Send>(_: &T) {}
    let table = SniTable::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        assert_send(&super::accept(tcp, &table));
    });
}

#[test]
fn build_reuses_unchanged_objects_and_skips_unusable_ones() {
    let ca = Ca::new("SERVER CA");
    let a = ssl("a", &["a.test"], &[&ca.server(&["a.test"])], None);
    let b = ssl("b", &["b.test"], &[&ca.server(&["b.test"])], None);
    let first = SniTable::build(&[Arc::clone(&a), Arc::clone(&b)], None, None);
    assert_eq!(first.len(), 2);

    let b_changed = ssl("b", &["b.test"], &[&ca.server(&["b.test"])], None);
    let second = SniTable::build(&[Arc::clone(&a), b_changed], None, Some(&first));
    let config = |table: &SniTable, sni| Arc::clone(&table.for_sni(Some(sni)).unwrap().config);
    assert!(Arc::ptr_eq(
        &config(&first, "a.test"),
        &config(&second, "a.test")
    ));
    assert!(!Arc::ptr_eq(
        &config(&first, "b.test"),
        &config(&second, "b.test")
    ));

    let mut disabled = valid_ssl("c", &["c.test"], &[&ca.server(&["c.test"])], None);
    disabled.enabled = false;
    let mut client_type = valid_ssl("d", &["d.test"], &[&ca.server(&["d.test"])], None);
    client_type.kind = SslType::Client;
    let mut broken_key = ca.server(&["e.test"]);
    broken_key.key = PrivateKeyDer::Pkcs8(vec![0x30, 0x03, 0x02, 0x01, 0x00].into());
    let broken = ssl("e", &["e.test"], &[&broken_key], None);
    let third = SniTable::build(
        &[a, Arc::new(disabled), Arc::new(client_type), broken],
        None,
        Some(&second),
    );
    assert_eq!(third.len(), 1);
    for sni in ["b.test", "c.test", "d.test", "e.test"] {
        assert_eq!(third.ssl_id_for(sni), None, "{sni}");
    }
    assert_eq!(third.ssl_id_for("a.test"), Some("a"));
    assert!(SniTable::build(&[], None, None).is_empty());
}

#[test]
fn duplicate_sni_goes_to_the_smallest_id() {
    let ca = Ca::new("SERVER CA");
    let identity = ca.server(&["dup.test"]);
    let two = ssl("2", &["dup.test", "*.wild.test"], &[&identity], None);
    let one = ssl("1", &["dup.test", "*"], &[&identity], None);
    let zero = ssl("0", &["*.wild.test"], &[&identity], None);
    for objects in [
        [Arc::clone(&two), Arc::clone(&one), Arc::clone(&zero)],
        [Arc::clone(&zero), Arc::clone(&one), Arc::clone(&two)],
    ] {
        let table = SniTable::build(&objects, None, None);
        assert_eq!(table.ssl_id_for("dup.test"), Some("1"));
        assert_eq!(table.ssl_id_for("x.wild.test"), Some("0"));
        assert_eq!(table.ssl_id_for("x.y.wild.test"), Some("1"));
        assert_eq!(table.ssl_id_for("wild.test"), Some("1"));
    }
}
