//! rustls client configurations for the benchmark's mTLS clients.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Whether the client may resume TLS sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Every handshake is a full one: no session is stored or offered.
    Never,
    /// Sessions (TLS 1.3 tickets, TLS 1.2 ids or tickets) are stored and
    /// offered on the next connection to the same server name.
    Always,
}

/// A client trusting `ca` and presenting `cert`/`key`.
///
/// Key exchange is X25519 only, so that every server (nginx with OpenSSL,
/// Portcullis with aws-lc-rs) does the same work; rustls would otherwise
/// offer the post-quantum hybrid first, which only one of them speaks.
pub fn client_config(ca: &Path, cert: &Path, key: &Path, resume: Resume) -> anyhow::Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for ca in certs(ca)? {
        roots.add(ca).context("adding the CA")?;
    }
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs(cert)?, key)
        .context("the client certificate and key do not go together")?;
    config.resumption = match resume {
        Resume::Never => Resumption::disabled(),
        Resume::Always => Resumption::in_memory_sessions(1024),
    };
    Ok(config)
}

fn provider() -> CryptoProvider {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    provider
}

pub fn certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", path.display()))
}
