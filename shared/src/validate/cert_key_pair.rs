//! A certificate chain with its private key, as SSL objects and upstream
//! client certificates give them: parsed, and the key matched to the leaf.

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::ValidationError;
use crate::x509::{self, CertSummary};

/// One certificate chain with its private key.
#[derive(Debug)]
pub struct CertKeyPair {
    /// Leaf first, then any intermediates in the PEM.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Arc<PrivateKeyDer<'static>>,
    pub leaf: CertSummary,
}

impl CertKeyPair {
    /// Parses a chain and its key and checks that the key matches the leaf
    /// (X.509 v1 certificates included). Errors name `cert_field` or
    /// `key_field`.
    pub(super) fn parse(
        cert_field: &str,
        cert_pem: &str,
        key_field: &str,
        key_pem: &str,
    ) -> Result<CertKeyPair, ValidationError> {
        let x509_error = |field: &str| {
            let field = field.to_owned();
            move |e: x509::X509Error| ValidationError::field(field, e.to_string())
        };
        let chain = x509::parse_certs(cert_pem).map_err(|e| match e {
            x509::X509Error::PrivateKey(_) => ValidationError::field(
                cert_field,
                format!("holds a private key; give it in `{key_field}`"),
            ),
            other => x509_error(cert_field)(other),
        })?;
        let key = x509::parse_key(key_pem).map_err(x509_error(key_field))?;
        let leaf_der = chain
            .first()
            .ok_or_else(|| ValidationError::field(cert_field, "no certificate"))?;
        let matches = x509::key_matches_cert(&key, leaf_der).map_err(|e| match e {
            x509::X509Error::Key(_) => ValidationError::field(key_field, e.to_string()),
            _ => ValidationError::field(cert_field, e.to_string()),
        })?;
        if !matches {
            return Err(ValidationError::field(
                key_field,
                format!("{key_field} does not match {cert_field}"),
            ));
        }
        let leaf = CertSummary::from_der(leaf_der).map_err(x509_error(cert_field))?;
        Ok(CertKeyPair {
            chain,
            key: Arc::new(key),
            leaf,
        })
    }
}
