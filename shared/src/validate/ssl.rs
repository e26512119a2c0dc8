use std::sync::Arc;

use regex::RegexSet;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;

use super::{HostPattern, ValidationError};
use crate::resource::{Ssl, SslType};
use crate::x509::CertSummary;

/// A validated SSL object: every PEM parsed, every key matched to its
/// certificate, every regex compiled.
#[derive(Debug)]
pub struct ValidSsl {
    pub id: String,
    /// The object as stored (including the private key: never serialise this
    /// to a client; see `crate::x509::redact`).
    pub spec: Ssl,
    pub kind: SslType,
    /// `status: 1`.
    pub enabled: bool,
    /// From `sni` or `snis`; empty for `type: client`.
    pub snis: Vec<HostPattern>,
    /// `cert`/`key` first, then each `certs[i]`/`keys[i]`.
    pub pairs: Vec<CertKeyPair>,
    pub client: Option<ClientAuth>,
    /// From `ssl_protocols`; empty means the default (TLS 1.2 and 1.3).
    pub protocols: Vec<TlsVersion>,
    /// Things an operator should know that do not make the object invalid
    /// (e.g. "X.509 v1 certificate").
    pub warnings: Vec<String>,
}

/// One certificate chain with its private key.
#[derive(Debug)]
pub struct CertKeyPair {
    /// Leaf first, then any intermediates in the PEM.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Arc<PrivateKeyDer<'static>>,
    pub leaf: CertSummary,
}

/// Client-certificate verification settings.
#[derive(Debug)]
pub struct ClientAuth {
    /// Trust anchors from `client.ca`.
    pub ca: Vec<CertificateDer<'static>>,
    pub ca_summaries: Vec<CertSummary>,
    /// nginx `ssl_verify_depth` (default 1).
    pub depth: u32,
    /// Compiled `skip_mtls_uri_regex`; `None` when absent or empty, which
    /// means a certificate is required at the handshake.
    pub skip_mtls_uri_regex: Option<RegexSet>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

pub(super) fn validate(id: &str, value: &Value) -> Result<ValidSsl, ValidationError> {
    let _ = (id, value);
    todo!("validate helper")
}
