//! rustls client configurations for the benchmark's mTLS clients.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Context;
use rustls::client::{
    ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, NamedGroup, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

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
pub fn client_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
    resume: Resume,
) -> anyhow::Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for ca in certs(ca)? {
        roots.add(ca).context("adding the CA")?;
    }
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs(cert)?, key)
        .context("the client certificate and key do not go together")?;
    config.resumption = match resume {
        Resume::Never => Resumption::disabled(),
        Resume::Always => Resumption::store(Arc::new(TicketStash::default())),
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

/// Tickets kept per server for a loader with many connections in flight.
const TICKETS_PER_SERVER: usize = 4096;

/// A client session store for loaders. rustls's own keeps 8 TLS 1.3 tickets
/// per server: when dozens of connections finish at once, their tickets
/// overflow it and the next wave starts without any, so a "resumed" run
/// would silently do full handshakes. This one keeps thousands.
#[derive(Debug, Default)]
struct TicketStash {
    state: Mutex<Stash>,
}

#[derive(Debug, Default)]
struct Stash {
    kx_hints: HashMap<ServerName<'static>, NamedGroup>,
    tls12: HashMap<ServerName<'static>, Tls12ClientSessionValue>,
    tls13: HashMap<ServerName<'static>, VecDeque<Tls13ClientSessionValue>>,
}

impl TicketStash {
    fn lock(&self) -> MutexGuard<'_, Stash> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ClientSessionStore for TicketStash {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.lock().kx_hints.insert(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.lock().kx_hints.get(&server_name.to_owned()).copied()
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.lock().tls12.insert(server_name, value);
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.lock().tls12.get(&server_name.to_owned()).cloned()
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.lock().tls12.remove(server_name);
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        let mut stash = self.lock();
        let tickets = stash.tls13.entry(server_name).or_default();
        if tickets.len() == TICKETS_PER_SERVER {
            tickets.pop_front();
        }
        tickets.push_back(value);
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.lock().tls13.get_mut(server_name)?.pop_back()
    }
}
