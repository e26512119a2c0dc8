//! "mTLS everywhere" set-ups: certificate files for etcd and the admin API
//! as `config.yaml` names them, mounted the way Kubernetes mounts a Secret
//! (and rotated the way the kubelet rotates it), and a look at the
//! certificate a TLS listener serves.

use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use tempfile::TempDir;

use crate::curl::openssl_output;
use crate::fixtures::CertFacts;
use crate::pki::Leaf;

/// What etcd serves with (`--client-cert-auth`), and the identity the harness
/// itself uses for its health checks and `etcdctl`.
#[derive(Clone, Debug)]
pub struct EtcdServerTls {
    /// The CA(s) client certificates must chain to (`--trusted-ca-file`).
    pub trusted_ca: PathBuf,
    /// etcd's certificate and key (`--cert-file`, `--key-file`).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that signed `cert`, for the harness's own calls.
    pub server_ca: PathBuf,
    /// A client certificate (clientAuth) for the harness's own calls.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// `deployment.etcd.tls` of a gateway.
#[derive(Clone, Debug)]
pub struct EtcdClientTls {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub sni: Option<String>,
}

/// `deployment.admin.tls` of a gateway.
#[derive(Clone, Debug)]
pub struct AdminTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// The file names of a cert-manager Secret.
pub const SECRET_FILES: [&str; 3] = ["tls.crt", "tls.key", "ca.crt"];

/// A directory laid out like a mounted Kubernetes Secret: `tls.crt`,
/// `tls.key` and `ca.crt` are symlinks into `..data`, itself a symlink to a
/// timestamped generation directory. [`SecretDir::rotate`] swaps `..data`
/// atomically, as the kubelet does when cert-manager renews a certificate.
#[derive(Debug)]
pub struct SecretDir {
    dir: TempDir,
    generation: u32,
}

impl SecretDir {
    /// Mounts `leaf` (its certificate and key) and `ca_pem`.
    pub fn mount(leaf: &Leaf, ca_pem: &str) -> crate::Result<SecretDir> {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-secret-")
            .tempdir()
            .context("cannot create a temporary directory for a secret")?;
        let mut secret = SecretDir { dir, generation: 0 };
        secret.rotate_to(&[
            ("tls.crt", &leaf.cert_pem),
            ("tls.key", &leaf.key_pem),
            ("ca.crt", ca_pem),
        ])?;
        for name in SECRET_FILES {
            symlink(Path::new("..data").join(name), secret.path(name))
                .with_context(|| format!("cannot link {name}"))?;
        }
        Ok(secret)
    }

    /// A new generation with `leaf` and `ca_pem`, swapped in atomically.
    pub fn rotate(&mut self, leaf: &Leaf, ca_pem: &str) -> crate::Result<()> {
        self.rotate_to(&[
            ("tls.crt", &leaf.cert_pem),
            ("tls.key", &leaf.key_pem),
            ("ca.crt", ca_pem),
        ])
    }

    /// A new generation with exactly `files` (name, content), swapped in
    /// atomically; names left out dangle, as in a broken Secret.
    pub fn rotate_to(&mut self, files: &[(&str, &str)]) -> crate::Result<()> {
        self.generation += 1;
        let generation = format!(
            "..2026_11_23_10_00_{:02}.{}",
            self.generation % 60,
            self.generation
        );
        let dir = self.dir.path().join(&generation);
        std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (name, content) in files {
            std::fs::write(dir.join(name), content)
                .with_context(|| format!("cannot write {name}"))?;
        }
        let tmp = self.dir.path().join("..data_tmp");
        symlink(&generation, &tmp).context("cannot link ..data_tmp")?;
        std::fs::rename(&tmp, self.dir.path().join("..data")).context("cannot swap ..data")?;
        Ok(())
    }

    /// `tls.crt`, `tls.key` or `ca.crt`: the path a config file names.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// This secret as `deployment.admin.tls`, requiring client certificates
    /// signed by its `ca.crt` when `require_client_cert`.
    pub fn admin_tls(&self, require_client_cert: bool) -> AdminTlsFiles {
        AdminTlsFiles {
            cert: self.path("tls.crt"),
            key: self.path("tls.key"),
            client_ca: require_client_cert.then(|| self.path("ca.crt")),
        }
    }
}

/// What the certificate a TLS server on `addr` presents for `server_name`
/// says, read with `openssl s_client`; `client` (certificate and key files)
/// is presented when given, for servers that require one.
pub fn served_cert(
    addr: SocketAddr,
    server_name: &str,
    client: Option<(&Path, &Path)>,
) -> crate::Result<CertFacts> {
    let connect = addr.to_string();
    let mut args = vec!["s_client", "-connect", &connect, "-servername", server_name];
    if let Some((cert, key)) = client {
        args.extend(["-cert", utf8(cert)?, "-key", utf8(key)?]);
    }
    let session = openssl_output(&args, "")?;
    if !session.stdout.contains("-----BEGIN CERTIFICATE-----") {
        bail!("{addr} presented no certificate: {}", session.stderr.trim());
    }
    // `openssl x509` skips s_client's text up to the PEM block.
    CertFacts::of(&session.stdout)
}

pub(crate) fn utf8(path: &Path) -> crate::Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

/// A TLS client trusting exactly the certificates in `ca_pem`, offering
/// `alpn` (e.g. `b"http/1.1"` or `b"h2"`), with no client certificate.
pub fn connector(ca_pem: &str, alpn: &[u8]) -> crate::Result<tokio_rustls::TlsConnector> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::CertificateDer;

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.context("a CA certificate PEM")?)
            .context("a CA certificate")?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}

/// A TLS connection to `addr` with SNI `server_name`, by [`connector`]
/// offering `alpn`: for tests that speak HTTP by hand (a WebSocket
/// handshake) or hold one connection open.
pub async fn connect(
    addr: SocketAddr,
    server_name: &str,
    ca_pem: &str,
    alpn: &[u8],
) -> crate::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let name = rustls_pki_types::ServerName::try_from(server_name.to_owned())
        .context("the server name")?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    connector(ca_pem, alpn)?
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS handshake with {addr} as {server_name}"))
}
