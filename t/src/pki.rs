//! Certificates for the tests: rcgen-made X.509 v3 PKIs, and the walkthrough's
//! PKI made by the exact `openssl` commands of the APISIX client-mTLS doc.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

/// An rcgen-made (X.509 v3) certificate authority.
pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its private key, PEM.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    /// A new self-signed CA with its own key (two `Ca::new("x")` are different CAs).
    pub fn new(cn: &str) -> Ca {
        let key = KeyPair::generate().expect("generate a CA key");
        let mut params = base_params(cn, &[]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("self-sign a CA");
        Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// An intermediate CA signed by this one. Its `cert_pem` is its own
    /// certificate only; see [`Leaf::with_chain`] to send it along a leaf.
    pub fn intermediate(&self, cn: &str) -> Ca {
        let key = KeyPair::generate().expect("generate an intermediate key");
        let mut params = base_params(cn, &[]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign an intermediate");
        Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate (serverAuth) for `cn` with DNS `sans`.
    pub fn server(&self, cn: &str, sans: &[&str]) -> Leaf {
        self.sign(cn, sans, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate (clientAuth) for `cn`.
    pub fn client(&self, cn: &str) -> Leaf {
        self.sign(cn, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn sign(&self, cn: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().expect("generate a leaf key");
        let mut params = base_params(cn, sans);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).expect("sign a leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

fn base_params(cn: &str, sans: &[&str]) -> CertificateParams {
    let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(sans).expect("valid SANs");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.not_before = date_time_ymd(2024, 1, 1);
    params.not_after = date_time_ymd(2124, 1, 1);
    params
}

impl Leaf {
    /// The same leaf with `chain` (intermediates, leaf-most first) appended to
    /// its certificate PEM, as a client sends it.
    pub fn with_chain(&self, chain: &[&Ca]) -> Leaf {
        let mut cert_pem = self.cert_pem.clone();
        for ca in chain {
            cert_pem.push_str(&ca.cert_pem);
        }
        Leaf {
            cert_pem,
            key_pem: self.key_pem.clone(),
        }
    }

    /// Writes `name.crt` and `name.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).expect("write a certificate");
        std::fs::write(&key, &self.key_pem).expect("write a key");
        (cert, key)
    }
}

/// The walkthrough's commands, verbatim (minus the optional pkcs12 export).
/// `-extensions v3_req` without `-extfile` yields X.509 version 1 certificates.
const WALKTHROUGH: &[&str] = &[
    "genrsa -out ca.key 2048",
    "req -new -sha256 -key ca.key -out ca.csr -subj /CN=ROOTCA",
    "x509 -req -days 36500 -sha256 -extensions v3_ca -signkey ca.key -in ca.csr -out ca.cer",
    "genrsa -out server.key 2048",
    "req -new -sha256 -key server.key -out server.csr -subj /CN=test.com",
    "x509 -req -days 36500 -sha256 -extensions v3_req -CA ca.cer -CAkey ca.key -CAserial ca.srl -CAcreateserial -in server.csr -out server.cer",
    "genrsa -out client.key 2048",
    "req -new -sha256 -key client.key -out client.csr -subj /CN=CLIENT",
    "x509 -req -days 36500 -sha256 -extensions v3_req -CA ca.cer -CAkey ca.key -CAserial ca.srl -CAcreateserial -in client.csr -out client.cer",
];

/// The walkthrough's PKI made with the exact openssl commands of the APISIX
/// client-mTLS doc (v1 certificates: `ca.cer`/`ca.key`, `server.cer`/`server.key`
/// for CN=test.com, `client.cer`/`client.key` for CN=CLIENT), in a temporary directory.
#[derive(Debug)]
pub struct OpensslPki {
    pub dir: PathBuf,
    _tmp: TempDir,
}

impl OpensslPki {
    /// Runs the walkthrough's openssl commands in a fresh temporary directory.
    pub fn walkthrough() -> anyhow::Result<OpensslPki> {
        let tmp = tempfile::Builder::new()
            .prefix("portcullis-pki-")
            .tempdir()
            .context("cannot create a temporary directory for the PKI")?;
        for line in WALKTHROUGH {
            openssl_in(tmp.path(), line)?;
        }
        Ok(OpensslPki {
            dir: tmp.path().to_owned(),
            _tmp: tmp,
        })
    }

    /// The path of one of the files, e.g. `pki.path("client.cer")`.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The content of one of the files.
    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.path(file))
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", self.path(file).display()))
    }
}

/// Runs `openssl LINE` (arguments split on whitespace) in `dir`; the error
/// holds openssl's stderr.
pub(crate) fn openssl_in(dir: &Path, line: &str) -> anyhow::Result<()> {
    let output = Command::new("openssl")
        .args(line.split_whitespace())
        .current_dir(dir)
        .output()
        .context("cannot run openssl (run ./scripts/deps to install it)")?;
    if !output.status.success() {
        bail!(
            "openssl {line} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
