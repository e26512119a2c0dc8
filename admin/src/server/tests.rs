//! The HTTPS admin listener against a real rustls client: client
//! certificates required at the handshake, the API key still required, the
//! allow-list applied, and a rotated certificate served to new handshakes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use shared::config::{AdminKey, EtcdConfig};
use shared::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;

use super::*;

const API_KEY: &str = "test-admin-key";

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

struct Leaf {
    cert: String,
    key: String,
}

impl Ca {
    fn new(cn: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let pem = params.self_signed(&key).expect("self-signed").pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(&self, cn: &str) -> Leaf {
        let mut params = CertificateParams::new(vec!["admin.test".to_owned()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

fn der(pem: &str) -> CertificateDer<'static> {
    shared::x509::parse_certs(pem).expect("cert").remove(0)
}

fn key(pem: &str) -> PrivateKeyDer<'static> {
    shared::x509::parse_key(pem).expect("key")
}

fn write(dir: &Path, ca: &Ca, leaf: &Leaf) {
    std::fs::write(dir.join("tls.crt"), &leaf.cert).expect("write");
    std::fs::write(dir.join("tls.key"), &leaf.key).expect("write");
    std::fs::write(dir.join("ca.crt"), &ca.pem).expect("write");
}

/// An admin HTTPS listener on a free port; stops when dropped.
struct Server {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn start(dir: &Path, client_ca: bool, allow: Option<&str>) -> Server {
    let config = shared::config::AdminTls {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
        client_ca: client_ca.then(|| dir.join("ca.crt")),
    };
    let tls = AdminTls::load(&config).expect("valid admin TLS files");
    // Never contacted by these tests: the etcd client connects lazily.
    let etcd = EtcdConfig {
        endpoints: vec!["http://127.0.0.1:9".to_owned()],
        ..EtcdConfig::default()
    };
    let store = Store::connect(&etcd).await.expect("lazy etcd client");
    let keys = vec![AdminKey {
        name: "admin".into(),
        key: API_KEY.into(),
    }];
    let allow = allow.map(|net| vec![net.parse().expect("CIDR")]);
    let state = AdminState::new(store, keys).with_allow(allow);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let limits = Limits {
        handshake: Duration::from_secs(1),
        header_read: Duration::from_secs(1),
        idle: Duration::from_secs(2),
        max_connections: 4,
    };
    tokio::spawn(serve_tls(listener, state, tls, limits, async {
        let _ = stopped.await;
    }));
    Server { addr, _stop: stop }
}

fn client(ca: &Ca, identity: Option<&Leaf>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(der(&ca.pem)).expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match identity {
        Some(leaf) => builder
            .with_client_auth_cert(vec![der(&leaf.cert)], key(&leaf.key))
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    TlsConnector::from(Arc::new(config))
}

/// What one HTTPS request got: the status line, or the error that ended
/// the exchange; and the certificate the server presented.
struct Exchange {
    response: Result<String, String>,
    server_cert: Option<CertificateDer<'static>>,
}

async fn request(addr: SocketAddr, connector: &TlsConnector, api_key: &str) -> Exchange {
    let name = ServerName::try_from("admin.test").expect("name");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let mut tls = match connector.connect(name, tcp).await {
        Ok(tls) => tls,
        Err(err) => {
            return Exchange {
                response: Err(err.to_string()),
                server_cert: None,
            }
        }
    };
    let server_cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first().cloned());
    let req = format!(
        "GET /apisix/admin/nothing HTTP/1.1\r\nHost: admin.test\r\nX-API-KEY: {api_key}\r\nConnection: close\r\n\r\n"
    );
    let mut reply = Vec::new();
    let exchange = async {
        tls.write_all(req.as_bytes()).await?;
        tls.read_to_end(&mut reply).await
    };
    let response = match tokio::time::timeout(Duration::from_secs(10), exchange).await {
        Ok(Ok(_)) => Ok(String::from_utf8_lossy(&reply)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err("timed out".to_owned()),
    };
    Exchange {
        response,
        server_cert,
    }
}

#[tokio::test]
async fn client_certificate_is_required_and_the_key_too() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("Admin CA");
    write(dir.path(), &ca, &ca.leaf("admin server"));
    let server = start(dir.path(), true, None).await;
    let operator = ca.leaf("operator");

    // A certificate and the key: past TLS and auth, to the router's 404.
    let ok = request(server.addr, &client(&ca, Some(&operator)), API_KEY).await;
    assert_eq!(ok.response.as_deref(), Ok("HTTP/1.1 404 Not Found"));

    // A certificate and a wrong key: 401.
    let wrong_key = request(server.addr, &client(&ca, Some(&operator)), "nope").await;
    assert_eq!(
        wrong_key.response.as_deref(),
        Ok("HTTP/1.1 401 Unauthorized")
    );

    // No certificate: refused by the handshake (with TLS 1.3 the client
    // learns it from the server's alert on its first read).
    let anonymous = request(server.addr, &client(&ca, None), API_KEY).await;
    let err = anonymous.response.expect_err("refused at the handshake");
    assert!(err.contains("CertificateRequired"), "{err}");

    // A certificate from another CA: refused at the handshake too.
    let stranger = Ca::new("Other CA").leaf("stranger");
    let refused = request(server.addr, &client(&ca, Some(&stranger)), API_KEY).await;
    let err = refused.response.expect_err("refused at the handshake");
    assert!(err.contains("alert"), "{err}");
}

#[tokio::test]
async fn without_client_ca_any_tls_client_reaches_the_key_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("Admin CA");
    write(dir.path(), &ca, &ca.leaf("admin server"));
    let server = start(dir.path(), false, None).await;
    let anonymous = request(server.addr, &client(&ca, None), "nope").await;
    assert_eq!(
        anonymous.response.as_deref(),
        Ok("HTTP/1.1 401 Unauthorized")
    );
}

#[tokio::test]
async fn addresses_outside_the_allow_list_are_closed_before_the_handshake() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("Admin CA");
    write(dir.path(), &ca, &ca.leaf("admin server"));
    let operator = ca.leaf("operator");
    let outside = start(dir.path(), true, Some("10.0.0.0/8")).await;
    let refused = request(outside.addr, &client(&ca, Some(&operator)), API_KEY).await;
    let err = refused.response.expect_err("closed at accept");
    assert!(refused.server_cert.is_none(), "no handshake: {err}");
    let inside = start(dir.path(), true, Some("127.0.0.0/8")).await;
    let allowed = request(inside.addr, &client(&ca, Some(&operator)), "nope").await;
    assert_eq!(allowed.response.as_deref(), Ok("HTTP/1.1 401 Unauthorized"));
}

#[tokio::test]
async fn new_handshakes_use_a_rotated_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("Admin CA");
    let first = ca.leaf("first");
    write(dir.path(), &ca, &first);
    let server = start(dir.path(), false, None).await;
    let connector = client(&ca, None);
    let served = request(server.addr, &connector, API_KEY).await.server_cert;
    assert_eq!(served, Some(der(&first.cert)));

    // Key first, then certificate, each renamed into place.
    let second = ca.leaf("second");
    for (name, pem) in [("tls.key", &second.key), ("tls.crt", &second.cert)] {
        let tmp = dir.path().join(format!("{name}.new"));
        std::fs::write(&tmp, pem).expect("write");
        std::fs::rename(&tmp, dir.path().join(name)).expect("rename");
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let served = request(server.addr, &connector, API_KEY).await.server_cert;
        if served == Some(der(&second.cert)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn silent_clients_are_cut_and_others_wait_for_a_slot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("Admin CA");
    write(dir.path(), &ca, &ca.leaf("admin server"));
    let server = start(dir.path(), false, None).await;
    // As many silent clients as there are slots (4): never a ClientHello.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    let started = tokio::time::Instant::now();
    let waited = request(server.addr, &client(&ca, None), "nope").await;
    let elapsed = started.elapsed();
    assert_eq!(waited.response.as_deref(), Ok("HTTP/1.1 401 Unauthorized"));
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "served once the 1 s handshake timeout freed a slot: {elapsed:?}"
    );
    for mut stream in silent {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0) | Err(_))),
            "closed by the handshake timeout"
        );
    }
}
