//! PEM and X.509 helpers: parsing, key/certificate matching and the
//! operator-facing certificate summary (also the source of the gateway's
//! `$ssl_client_*` variables).
//!
//! Everything here works on X.509 **v1** certificates too: the walkthroughs'
//! `openssl x509 -req` commands produce them, and rustls/webpki refuse to
//! parse them, so no certificate in this module goes through webpki (CRLs
//! do, see `crl`).

mod crl;
mod dn;
mod key;
mod locations;
#[cfg(test)]
pub(crate) mod test_pki;
#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, Ipv6Addr};

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use serde_json::Value;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use thiserror::Error;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

pub use crl::{parse_crls, CrlSummary};
pub use key::key_matches_cert;
pub use locations::ocsp_urls;

/// Why a PEM or certificate could not be used.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum X509Error {
    #[error("no PEM {0} found")]
    NoPem(&'static str),
    #[error("malformed PEM: {0}")]
    Pem(String),
    #[error("malformed certificate: {0}")]
    Certificate(String),
    #[error("unsupported private key: {0}")]
    Key(String),
    #[error("malformed CRL: {0}")]
    Crl(String),
    /// A private key where only public material belongs (a key pasted with
    /// its certificate): refused, so that it is neither stored unsealed nor
    /// returned by a read. The message never quotes the input.
    #[error("holds a private key; give only {0} here")]
    PrivateKey(&'static str),
}

/// What an operator (and a `$ssl_client_*` variable) wants to know about a
/// certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertSummary {
    /// X.509 version as written in certificates: 1 or 3.
    pub version: u32,
    /// RFC 2253, most specific RDN first, as nginx prints it (`CN=CLIENT,O=Org`).
    pub subject: String,
    pub issuer: String,
    /// Uppercase hex without separators, as nginx `$ssl_client_serial`.
    pub serial: String,
    /// `DNS:`, `URI:`, `email:` and `IP:` prefixed subject alternative names.
    pub sans: Vec<String>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// Lowercase hex SHA-1 of the DER, as nginx `$ssl_client_fingerprint`.
    pub fingerprint_sha1: String,
    /// Lowercase hex SHA-256 of the DER.
    pub fingerprint_sha256: String,
    /// Basic constraints `CA:TRUE`.
    pub is_ca: bool,
}

impl CertSummary {
    pub fn from_der(der: &CertificateDer<'_>) -> Result<CertSummary, X509Error> {
        let cert = parse_x509(der)?;
        let validity = cert.validity();
        Ok(CertSummary {
            // A hostile header's certificate may claim any version number.
            version: cert.version().0.saturating_add(1),
            subject: dn::rfc2253(cert.subject()),
            issuer: dn::rfc2253(cert.issuer()),
            serial: serial_hex(cert.raw_serial()),
            sans: sans(&cert)?,
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            fingerprint_sha1: hex::encode(Sha1::digest(der.as_ref())),
            fingerprint_sha256: hex::encode(Sha256::digest(der.as_ref())),
            is_ca: cert.is_ca(),
        })
    }

    /// Whether the certificate is past its `notAfter` at `now` (unix seconds).
    pub fn is_expired_at(&self, now: i64) -> bool {
        now > self.not_after
    }
}

/// Parses one DER certificate, requiring that nothing trails it.
pub(crate) fn parse_x509<'a>(
    der: &'a CertificateDer<'_>,
) -> Result<X509Certificate<'a>, X509Error> {
    match X509Certificate::from_der(der.as_ref()) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(X509Error::Certificate(
            "trailing data after the certificate".into(),
        )),
        Err(e) => Err(X509Error::Certificate(e.to_string())),
    }
}

/// Every `CERTIFICATE` block in `pem`, in order; at least one. Each block must
/// be a well-formed X.509 certificate, and `pem` must hold no private key
/// (see [`refuse_private_keys`]).
pub fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, X509Error> {
    refuse_private_keys(pem, "certificates")?;
    parse_certs_beside_key(pem)
}

/// [`parse_certs`] for a file of the gateway's own configuration
/// (`config.yaml`), which may hold the key beside the certificate as nginx
/// allows: that key is read from disk, never stored nor served.
pub(crate) fn parse_certs_beside_key(pem: &str) -> Result<Vec<CertificateDer<'static>>, X509Error> {
    let mut certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    // Validated objects keep these: no room for more.
    certs.shrink_to_fit();
    if certs.is_empty() {
        return Err(X509Error::NoPem("certificate"));
    }
    for cert in &certs {
        parse_x509(cert)?;
    }
    Ok(certs)
}

/// Refuses `pem` (a field meant for `what`: certificates, CRLs) when it holds
/// a private key PEM section of any kind: PKCS#8 (encrypted or not), PKCS#1,
/// SEC1, OpenSSH... The PEM parsers skip sections they do not read, so such
/// a key would otherwise be kept, in clear, with the certificates.
pub(crate) fn refuse_private_keys(pem: &str, what: &'static str) -> Result<(), X509Error> {
    if holds_private_key(pem) {
        return Err(X509Error::PrivateKey(what));
    }
    Ok(())
}

/// Whether `text` holds a line of a private key PEM section of any kind
/// (`-----BEGIN RSA PRIVATE KEY-----`, `...ENCRYPTED PRIVATE KEY-----`, ...).
pub fn holds_private_key(text: &str) -> bool {
    const MARKER: &[u8] = b"PRIVATE KEY-----";
    text.as_bytes()
        .windows(MARKER.len())
        .any(|window| window.eq_ignore_ascii_case(MARKER))
}

/// The first private key in `pem` (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn parse_key(pem: &str) -> Result<PrivateKeyDer<'static>, X509Error> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| match e {
        pem::Error::NoItemsFound => X509Error::NoPem("private key"),
        other => pem_error(other),
    })
}

/// Summaries of every certificate in `pem` that parses (for read-only
/// computed fields in admin API responses; stored objects were validated).
pub fn describe_certs(pem: &str) -> Vec<CertSummary> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .filter_map(|der| CertSummary::from_der(&der).ok())
        .collect()
}

/// Removes the private keys from a stored object's JSON before it leaves the
/// process: an SSL object's `key` and `keys`, an upstream's
/// `tls.client_key`, a route's inline `upstream.tls.client_key`. Safe on any
/// kind (routes and upstreams have no top-level `key`). Works on the object
/// itself, not on an `{"key": …, "value": …}` envelope.
pub fn redact(value: &mut Value) {
    if let Value::Object(map) = value {
        map.remove("key");
        map.remove("keys");
        remove_client_key(map.get_mut("tls"));
        if let Some(Value::Object(upstream)) = map.get_mut("upstream") {
            remove_client_key(upstream.get_mut("tls"));
        }
    }
}

fn remove_client_key(tls: Option<&mut Value>) {
    if let Some(Value::Object(tls)) = tls {
        tls.remove("client_key");
    }
}

/// The message of a PEM error, without echoing any of the input.
fn pem_error(e: pem::Error) -> X509Error {
    let reason = match e {
        pem::Error::MissingSectionEnd { .. } => "a section is missing its END line".to_owned(),
        pem::Error::IllegalSectionStart { .. } => "malformed BEGIN line".to_owned(),
        pem::Error::Base64Decode(_) => "invalid base64".to_owned(),
        pem::Error::NoItemsFound => "no PEM section found".to_owned(),
        pem::Error::SectionTooLarge => "section too large".to_owned(),
        other => other.to_string(),
    };
    X509Error::Pem(reason)
}

/// The serial as OpenSSL's `i2a_ASN1_INTEGER` prints it (nginx
/// `$ssl_client_serial`, `openssl x509 -serial`): uppercase hex of the
/// magnitude without DER's sign padding, `-` for (invalid but seen) negative
/// serials.
fn serial_hex(raw: &[u8]) -> String {
    let negative = raw.first().is_some_and(|b| b & 0x80 != 0);
    let magnitude = if negative {
        twos_complement(raw)
    } else {
        raw.to_vec()
    };
    let first_significant = magnitude
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(magnitude.len());
    let digits = &magnitude[first_significant..];
    let hex = if digits.is_empty() {
        "00".to_owned()
    } else {
        hex::encode_upper(digits)
    };
    if negative {
        format!("-{hex}")
    } else {
        hex
    }
}

/// The magnitude of a negative big-endian two's complement integer.
fn twos_complement(raw: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = raw.iter().map(|b| !b).collect();
    for byte in out.iter_mut().rev() {
        let (sum, carry) = byte.overflowing_add(1);
        *byte = sum;
        if !carry {
            break;
        }
    }
    out
}

fn sans(cert: &X509Certificate<'_>) -> Result<Vec<String>, X509Error> {
    let ext = cert
        .subject_alternative_name()
        .map_err(|e| X509Error::Certificate(format!("subjectAltName: {e}")))?;
    let Some(ext) = ext else {
        return Ok(Vec::new());
    };
    Ok(ext.value.general_names.iter().filter_map(san).collect())
}

fn san(name: &GeneralName<'_>) -> Option<String> {
    match name {
        GeneralName::DNSName(s) => Some(format!("DNS:{s}")),
        GeneralName::URI(s) => Some(format!("URI:{s}")),
        GeneralName::RFC822Name(s) => Some(format!("email:{s}")),
        GeneralName::IPAddress(bytes) => ip(bytes).map(|ip| format!("IP:{ip}")),
        _ => None,
    }
}

fn ip(bytes: &[u8]) -> Option<String> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(Ipv4Addr::from(v4).to_string());
    }
    <[u8; 16]>::try_from(bytes)
        .ok()
        .map(|v6| Ipv6Addr::from(v6).to_string())
}
