//! Which files make up one TLS configuration, reading them, and validating
//! what was read into [`TlsMaterial`].

use std::fmt;
use std::path::PathBuf;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::x509::{self, CertSummary, X509Error};

/// One file named in `config.yaml`, with the setting that named it, so that
/// every message tells the operator which line of their config to look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemFile {
    /// The config key, e.g. `deployment.admin.tls.cert`.
    pub setting: &'static str,
    pub path: PathBuf,
}

impl PemFile {
    pub fn new(setting: &'static str, path: impl Into<PathBuf>) -> PemFile {
        PemFile {
            setting,
            path: path.into(),
        }
    }
}

impl fmt::Display for PemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.setting, self.path.display())
    }
}

/// The files of one TLS configuration: an identity (certificate chain and
/// its key, given together) and trust anchors for the peer, each optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: Option<PemFile>,
    /// PEM private key of the leaf (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: Option<PemFile>,
    /// PEM certificates trusted to sign the peer's certificate.
    pub ca: Option<PemFile>,
}

impl TlsFiles {
    /// Reads and validates the files as they are now.
    pub fn load(&self) -> Result<TlsMaterial, CertFileError> {
        TlsMaterial::parse(self, &self.read()?)
    }

    /// The raw bytes of every file. Opening follows symlinks, so a
    /// Kubernetes `..data` swap is seen as soon as it happens.
    pub(crate) fn read(&self) -> Result<Contents, CertFileError> {
        Ok(Contents {
            cert: read(self.cert.as_ref())?,
            key: read(self.key.as_ref())?,
            ca: read(self.ca.as_ref())?,
        })
    }

    fn all(&self) -> impl Iterator<Item = &PemFile> {
        [&self.cert, &self.key, &self.ca].into_iter().flatten()
    }
}

impl fmt::Display for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, file) in self.all().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{file}")?;
        }
        Ok(())
    }
}

fn read(file: Option<&PemFile>) -> Result<Option<Vec<u8>>, CertFileError> {
    file.map(|file| {
        std::fs::read(&file.path).map_err(|source| CertFileError::Read {
            file: file.clone(),
            source,
        })
    })
    .transpose()
}

/// Why certificate files cannot be used. Every variant names the setting
/// and the path; none echoes file contents.
#[derive(Debug, Error)]
pub enum CertFileError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PemFile,
        source: std::io::Error,
    },
    #[error("{file}: {source}")]
    Invalid { file: PemFile, source: X509Error },
    #[error("{key}: not the private key of the certificate in {cert}")]
    KeyMismatch { cert: PemFile, key: PemFile },
    #[error("{given}: a certificate and its private key must be given together")]
    Incomplete { given: PemFile },
    /// The files are fine as PEM but their consumer cannot use them (e.g. rustls refuses the CA).
    #[error("{files}: {reason}")]
    Rejected { files: String, reason: String },
}

/// The bytes of every file at one moment. Deliberately not `Debug`: it holds
/// a private key.
pub(crate) struct Contents {
    cert: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
    ca: Option<Vec<u8>>,
}

impl Contents {
    /// Identifies these exact bytes; a changed file changes the digest.
    pub(crate) fn digest(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        for part in [&self.cert, &self.key, &self.ca] {
            match part {
                // Lengths first, so that bytes cannot move between files unnoticed.
                Some(bytes) => {
                    hash.update([1]);
                    hash.update((bytes.len() as u64).to_le_bytes());
                    hash.update(bytes);
                }
                None => hash.update([0]),
            }
        }
        hash.finalize().into()
    }
}

/// Validated certificate files: every PEM parses, and the key belongs to the
/// leaf certificate. Its `Debug` never shows the key.
pub struct TlsMaterial {
    files: TlsFiles,
    chain: Vec<CertificateDer<'static>>,
    chain_pem: String,
    key: Option<(PrivateKeyDer<'static>, String)>,
    roots: Vec<CertificateDer<'static>>,
    roots_pem: String,
    leaf: Option<CertSummary>,
}

impl TlsMaterial {
    pub(crate) fn parse(
        files: &TlsFiles,
        contents: &Contents,
    ) -> Result<TlsMaterial, CertFileError> {
        let chain = parse_each(&files.cert, &contents.cert, certs_in)?;
        let key = parse_each(&files.key, &contents.key, key_in)?;
        let roots = parse_each(&files.ca, &contents.ca, certs_in)?;
        let leaf = match (&chain, &key) {
            (Some((cert_file, (chain, _))), Some((key_file, (key, _)))) => {
                Some(check_pair(cert_file, &chain[0], key_file, key)?)
            }
            (Some((given, _)), None) | (None, Some((given, _))) => {
                return Err(CertFileError::Incomplete {
                    given: (*given).clone(),
                })
            }
            (None, None) => None,
        };
        let (chain, chain_pem) = chain.map(|(_, parsed)| parsed).unwrap_or_default();
        let (roots, roots_pem) = roots.map(|(_, parsed)| parsed).unwrap_or_default();
        Ok(TlsMaterial {
            files: files.clone(),
            chain,
            chain_pem,
            key: key.map(|(_, parsed)| parsed),
            roots,
            roots_pem,
            leaf,
        })
    }

    /// The files this was read from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The certificate chain, leaf first; empty without a `cert` file.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The private key of the leaf.
    pub fn key(&self) -> Option<&PrivateKeyDer<'static>> {
        self.key.as_ref().map(|(der, _)| der)
    }

    /// The trust anchors of the `ca` file; empty without one.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// The certificate chain and its key as PEM text (for clients that take PEM).
    pub fn identity_pem(&self) -> Option<(&str, &str)> {
        let (_, key_pem) = self.key.as_ref()?;
        Some((&self.chain_pem, key_pem))
    }

    /// The `ca` file as PEM text.
    pub fn roots_pem(&self) -> Option<&str> {
        self.files.ca.as_ref().map(|_| self.roots_pem.as_str())
    }

    /// What an operator wants to know about the leaf certificate.
    pub fn leaf(&self) -> Option<&CertSummary> {
        self.leaf.as_ref()
    }

    /// An error saying these files cannot be used by their consumer.
    pub fn rejected(&self, reason: impl fmt::Display) -> CertFileError {
        CertFileError::Rejected {
            files: self.files.to_string(),
            reason: reason.to_string(),
        }
    }
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("files", &self.files)
            .field("leaf", &self.leaf)
            .field("chain", &self.chain.len())
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("roots", &self.roots.len())
            .finish()
    }
}

/// Parses one file's bytes when the file is configured; keeps the file
/// beside the result for messages.
fn parse_each<'f, T>(
    file: &'f Option<PemFile>,
    bytes: &Option<Vec<u8>>,
    parse: impl Fn(&PemFile, &[u8]) -> Result<T, CertFileError>,
) -> Result<Option<(&'f PemFile, T)>, CertFileError> {
    match (file, bytes) {
        (Some(file), Some(bytes)) => Ok(Some((file, parse(file, bytes)?))),
        _ => Ok(None),
    }
}

fn certs_in(
    file: &PemFile,
    bytes: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, String), CertFileError> {
    let pem = text(file, bytes)?;
    let certs = x509::parse_certs_beside_key(&pem).map_err(|source| invalid(file, source))?;
    Ok((certs, pem))
}

fn key_in(file: &PemFile, bytes: &[u8]) -> Result<(PrivateKeyDer<'static>, String), CertFileError> {
    let pem = text(file, bytes)?;
    let key = x509::parse_key(&pem).map_err(|source| invalid(file, source))?;
    Ok((key, pem))
}

fn text(file: &PemFile, bytes: &[u8]) -> Result<String, CertFileError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| invalid(file, X509Error::Pem("not a PEM file (not text)".into())))
}

/// Checks that `key` belongs to `leaf`; returns the leaf's summary.
fn check_pair(
    cert_file: &PemFile,
    leaf: &CertificateDer<'_>,
    key_file: &PemFile,
    key: &PrivateKeyDer<'_>,
) -> Result<CertSummary, CertFileError> {
    match x509::key_matches_cert(key, leaf) {
        Ok(true) => CertSummary::from_der(leaf).map_err(|source| invalid(cert_file, source)),
        Ok(false) => Err(CertFileError::KeyMismatch {
            cert: cert_file.clone(),
            key: key_file.clone(),
        }),
        Err(source) => Err(invalid(key_file, source)),
    }
}

fn invalid(file: &PemFile, source: X509Error) -> CertFileError {
    CertFileError::Invalid {
        file: file.clone(),
        source,
    }
}
