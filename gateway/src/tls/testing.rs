//! Test fixtures: PKIs (rcgen for v3, the APISIX walkthrough's `openssl`
//! commands for v1), SSL objects, a TLS server running [`accept`], and a
//! rustls client that can present X.509 v1 certificates.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, HandshakeKind, SignatureScheme, SupportedProtocolVersion};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use shared::resource::SslType;
use shared::validate::{CertKeyPair, ClientAuth, HostPattern, ValidSsl};
use shared::x509::{parse_certs, parse_key, CertSummary};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::signature::AnyServerCert;
use super::{accept, provider, AcceptError, SniTable};
use crate::context::{ClientCert, TlsInfo};

/// Long enough for a loaded CI machine, short enough to fail a hung test.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(20);

/// A certificate chain (leaf first) and its private key.
pub(crate) struct Identity {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    pub(crate) fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// The same identity, sending `cert` after its chain.
    pub(crate) fn sending(mut self, cert: &CertificateDer<'static>) -> Identity {
        self.chain.push(cert.clone());
        self
    }
}

/// An rcgen certificate authority (X.509 v3).
pub(crate) struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub(crate) fn new(cn: &str) -> Ca {
        let issuer =
            CertifiedIssuer::self_signed(ca_params(cn), KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    pub(crate) fn intermediate(&self, cn: &str) -> Ca {
        let issuer =
            CertifiedIssuer::signed_by(ca_params(cn), KeyPair::generate().unwrap(), &self.issuer)
                .unwrap();
        Ca { issuer }
    }

    pub(crate) fn cert(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// An ECDSA P-256 server certificate for `names`.
    pub(crate) fn server(&self, names: &[&str]) -> Identity {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].clone());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate with subject `CN=<cn>`.
    pub(crate) fn client(&self, cn: &str) -> Identity {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    /// A client certificate naming `ocsp` (Authority Information Access)
    /// and `crl` (CRL Distribution Points) as where its status is published.
    pub(crate) fn client_publishing(&self, cn: &str, ocsp: &str, crl: &str) -> Identity {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.custom_extensions = vec![shared::testing::ocsp_aia(ocsp)];
        params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
            uris: vec![crl.to_owned()],
        }];
        self.issue(params)
    }

    /// A CRL of this CA revoking the leaves of `revoked`, valid for 30 days
    /// from `this_update`.
    pub(crate) fn crl(
        &self,
        revoked: &[&Identity],
        this_update: time::OffsetDateTime,
    ) -> rustls_pki_types::CertificateRevocationListDer<'static> {
        let revoked_certs = revoked
            .iter()
            .map(|identity| {
                let (_, leaf) = X509Certificate::from_der(identity.leaf().as_ref()).unwrap();
                rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from_slice(leaf.raw_serial()),
                    revocation_time: this_update,
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                }
            })
            .collect();
        let params = rcgen::CertificateRevocationListParams {
            this_update,
            next_update: this_update + time::Duration::days(30),
            crl_number: 1u64.into(),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().der().clone()
    }

    fn issue(&self, params: CertificateParams) -> Identity {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Identity {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        }
    }
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// The APISIX client-mTLS walkthrough's PKI, made with its exact commands:
/// X.509 v1 CA, server (`CN=test.com`) and client (`CN=CLIENT`), RSA 2048.
/// Also, with the same client key: `stranger.cer` signed by another CA
/// (`other.cer`), `selfsigned.cer`, and `forged.cer` signed by an impostor CA
/// that is also named `CN=ROOTCA`.
pub(crate) struct WalkthroughPki {
    dir: tempfile::TempDir,
}

const WALKTHROUGH: &str = r#"
openssl genrsa -out ca.key 2048
openssl req -new -sha256 -key ca.key -out ca.csr -subj "/CN=ROOTCA"
openssl x509 -req -days 36500 -sha256 -extensions v3_ca -signkey ca.key -in ca.csr -out ca.cer
openssl genrsa -out server.key 2048
openssl req -new -sha256 -key server.key -out server.csr -subj "/CN=test.com"
openssl x509 -req -days 36500 -sha256 -extensions v3_req -CA ca.cer -CAkey ca.key -CAserial ca.srl -CAcreateserial -in server.csr -out server.cer
openssl genrsa -out client.key 2048
openssl req -new -sha256 -key client.key -out client.csr -subj "/CN=CLIENT"
openssl x509 -req -days 36500 -sha256 -extensions v3_req -CA ca.cer -CAkey ca.key -CAserial ca.srl -CAcreateserial -in client.csr -out client.cer
openssl x509 -req -days 36500 -sha256 -signkey client.key -in client.csr -out selfsigned.cer
openssl genrsa -out other.key 2048
openssl req -new -sha256 -key other.key -out other.csr -subj "/CN=OTHERCA"
openssl x509 -req -days 36500 -sha256 -signkey other.key -in other.csr -out other.cer
openssl x509 -req -days 36500 -sha256 -CA other.cer -CAkey other.key -CAserial other.srl -CAcreateserial -in client.csr -out stranger.cer
openssl genrsa -out impostor.key 2048
openssl req -new -sha256 -key impostor.key -out impostor.csr -subj "/CN=ROOTCA"
openssl x509 -req -days 36500 -sha256 -signkey impostor.key -in impostor.csr -out impostor.cer
openssl x509 -req -days 36500 -sha256 -CA impostor.cer -CAkey impostor.key -CAserial impostor.srl -CAcreateserial -in client.csr -out forged.cer
"#;

impl WalkthroughPki {
    pub(crate) fn new() -> WalkthroughPki {
        let pki = WalkthroughPki {
            dir: tempfile::tempdir().unwrap(),
        };
        pki.run(WALKTHROUGH);
        pki
    }

    /// An empty directory, for PKIs made by scripts of one's own ([`Self::run`]).
    pub(crate) fn scratch() -> WalkthroughPki {
        WalkthroughPki {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs the `openssl` commands of `script` in the PKI's directory.
    pub(crate) fn run(&self, script: &str) {
        let out = Command::new("sh")
            .args(["-ec", script])
            .current_dir(self.dir.path())
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub(crate) fn cert(&self, file: &str) -> CertificateDer<'static> {
        parse_certs(&self.read(file)).unwrap().remove(0)
    }

    pub(crate) fn identity(&self, cert: &str, key: &str) -> Identity {
        Identity {
            chain: parse_certs(&self.read(cert)).unwrap(),
            key: parse_key(&self.read(key)).unwrap(),
        }
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.path(file)).unwrap()
    }
}

/// A validated server SSL object, as the validation in `shared` makes it.
pub(crate) fn valid_ssl(
    id: &str,
    snis: &[&str],
    pairs: &[&Identity],
    client: Option<ClientAuth>,
) -> ValidSsl {
    ValidSsl {
        id: id.to_owned(),
        kind: SslType::Server,
        enabled: true,
        snis: snis
            .iter()
            .map(|sni| HostPattern::parse(sni).unwrap())
            .collect(),
        pairs: pairs.iter().map(|identity| pair(identity)).collect(),
        client,
        protocols: Vec::new(),
        ocsp_stapling: None,
        warnings: Vec::new(),
    }
}

pub(crate) fn ssl(
    id: &str,
    snis: &[&str],
    pairs: &[&Identity],
    client: Option<ClientAuth>,
) -> Arc<ValidSsl> {
    Arc::new(valid_ssl(id, snis, pairs, client))
}

fn pair(identity: &Identity) -> CertKeyPair {
    CertKeyPair {
        chain: identity.chain.clone(),
        key: Arc::new(identity.key.clone_key()),
        leaf: CertSummary::from_der(identity.leaf()).unwrap(),
    }
}

/// A `client` section; an empty `skip` means the certificate is required.
pub(crate) fn client_auth(ca: &[CertificateDer<'static>], depth: u32, skip: &[&str]) -> ClientAuth {
    ClientAuth {
        ca: ca.to_vec(),
        ca_summaries: ca
            .iter()
            .map(|der| CertSummary::from_der(der).unwrap())
            .collect(),
        depth,
        skip_mtls_uri_regex: (!skip.is_empty()).then(|| regex::RegexSet::new(skip).unwrap()),
        revocation: None,
        online_revocation: None,
    }
}

/// What the server made of one connection.
pub(crate) type Served = Result<(TlsInfo, Option<HandshakeKind>), AcceptError>;

/// A loopback HTTPS server: runs [`accept`] on every connection against the
/// current table, reports the outcome, then answers one HTTP/1.1 request
/// with `<ssl_id> <verdict>` (the verdict as `$ssl_client_verify`).
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    table: Arc<Mutex<Arc<SniTable>>>,
    served: mpsc::UnboundedReceiver<Served>,
}

impl TestServer {
    pub(crate) async fn start(table: SniTable) -> TestServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let table = Arc::new(Mutex::new(Arc::new(table)));
        let (report, served) = mpsc::unbounded_channel();
        let current = Arc::clone(&table);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let table = Arc::clone(&current.lock().unwrap());
                tokio::spawn(serve(tcp, table, report.clone()));
            }
        });
        TestServer {
            addr,
            table,
            served,
        }
    }

    pub(crate) fn table(&self) -> Arc<SniTable> {
        Arc::clone(&self.table.lock().unwrap())
    }

    pub(crate) fn set_table(&self, table: SniTable) {
        *self.table.lock().unwrap() = Arc::new(table);
    }

    /// The outcome of the next connection.
    pub(crate) async fn next(&mut self) -> Served {
        tokio::time::timeout(TIMEOUT, self.served.recv())
            .await
            .expect("the server accepted a connection in time")
            .expect("the server is running")
    }

    pub(crate) async fn next_info(&mut self) -> TlsInfo {
        match self.next().await {
            Ok((info, _)) => info,
            Err(err) => panic!("handshake refused: {err}"),
        }
    }

    pub(crate) async fn next_error(&mut self) -> AcceptError {
        match self.next().await {
            Ok((info, _)) => panic!("handshake accepted: {info:?}"),
            Err(err) => err,
        }
    }
}

async fn serve(tcp: TcpStream, table: Arc<SniTable>, report: mpsc::UnboundedSender<Served>) {
    let (mut stream, info) = match accept(tcp, &table).await {
        Ok(accepted) => accepted,
        Err(err) => {
            let _ = report.send(Err(err));
            return;
        }
    };
    let body = format!("{} {}", info.ssl_id, verdict(&info.client_cert));
    let kind = stream.get_ref().1.handshake_kind();
    let _ = report.send(Ok((info, kind)));
    // Errors below are the client's business (openssl s_client hangs up
    // without a request).
    let mut request = [0u8; 4096];
    let _ = tokio::time::timeout(TIMEOUT, stream.read(&mut request)).await;
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn verdict(cert: &ClientCert) -> String {
    match cert {
        ClientCert::None => "NONE".to_owned(),
        ClientCert::Verified(_) => "SUCCESS".to_owned(),
        ClientCert::Failed { reason, .. } => format!("FAILED:{reason}"),
    }
}

/// How the test client behaves.
#[derive(Clone, Default)]
pub(crate) struct ClientOptions {
    pub(crate) identity: Option<Identity>,
    /// Signature schemes offered in the ClientHello; all by default.
    pub(crate) schemes: Option<Vec<SignatureScheme>>,
    /// Protocol versions; TLS 1.2 and 1.3 by default.
    pub(crate) versions: Option<Vec<&'static SupportedProtocolVersion>>,
}

/// A rustls client configuration (reusable, so that it can resume sessions)
/// and what its certificate resolver saw.
pub(crate) struct TestClient {
    config: Arc<ClientConfig>,
    hints: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// What the client saw of one connection.
pub(crate) struct Connected {
    pub(crate) server_cert: CertificateDer<'static>,
    /// The response, or why it could not be read (a refused client
    /// certificate shows up here under TLS 1.3).
    pub(crate) response: std::io::Result<String>,
}

impl TestClient {
    pub(crate) fn new(options: ClientOptions) -> TestClient {
        let provider = provider();
        let algs = provider.signature_verification_algorithms;
        let schemes = options.schemes.unwrap_or_else(|| algs.supported_schemes());
        let versions = options
            .versions
            .unwrap_or_else(|| vec![&rustls::version::TLS13, &rustls::version::TLS12]);
        let key = options.identity.map(|identity| {
            let key = provider
                .key_provider
                .load_private_key(identity.key)
                .unwrap();
            // `new`, not `from_der`: the latter refuses v1 certificates.
            Arc::new(CertifiedKey::new(identity.chain, key))
        });
        let hints = Arc::new(Mutex::new(Vec::new()));
        let resolver = Presenter {
            key,
            hints: Arc::clone(&hints),
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert::new(algs).offering(schemes)))
            .with_client_cert_resolver(Arc::new(resolver));
        TestClient {
            config: Arc::new(config),
            hints,
        }
    }

    /// Handshakes with `sni` (none when `None`) and sends one request.
    pub(crate) async fn connect(
        &self,
        addr: SocketAddr,
        sni: Option<&str>,
    ) -> std::io::Result<Connected> {
        let name = match sni {
            Some(sni) => ServerName::try_from(sni.to_owned()).unwrap(),
            // rustls sends no SNI for an IP address.
            None => ServerName::IpAddress(Ipv4Addr::LOCALHOST.into()),
        };
        let tcp = TcpStream::connect(addr).await?;
        let connector = TlsConnector::from(Arc::clone(&self.config));
        let mut stream = tokio::time::timeout(TIMEOUT, connector.connect(name, tcp)).await??;
        let server_cert = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
        let response = async {
            stream
                .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
                .await?;
            let mut response = String::new();
            stream.read_to_string(&mut response).await?;
            Ok(response)
        };
        let response = tokio::time::timeout(TIMEOUT, response).await?;
        Ok(Connected {
            server_cert,
            response,
        })
    }

    /// The CA names of the last CertificateRequest.
    pub(crate) fn hints(&self) -> Vec<Vec<u8>> {
        self.hints.lock().unwrap().clone()
    }
}

#[derive(Debug)]
struct Presenter {
    key: Option<Arc<CertifiedKey>>,
    hints: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl ResolvesClientCert for Presenter {
    fn resolve(&self, hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        *self.hints.lock().unwrap() = hints.iter().map(|hint| hint.to_vec()).collect();
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        self.key.is_some()
    }
}
