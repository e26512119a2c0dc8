//! One SSL object turned into everything its handshakes need, built once per
//! change of that object.

use std::fmt;
use std::sync::Arc;

use rustls::server::{NoServerSessionStorage, ServerConnection};
use rustls::{ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::UnixTime;
use shared::validate::{TlsVersion, ValidSsl};
use shared::x509::{CertSummary, X509Error};
use thiserror::Error;

use super::cert_error::ClientCertError;
use super::policy::client_policy_id;
use super::resolve::CertResolver;
use super::trust::TrustError;
use super::verify::ClientVerifier;
use crate::context::{ClientCert, ClientPolicyId, MtlsPolicy, PeerCert};

/// Why an SSL object cannot serve handshakes.
#[derive(Debug, Error)]
pub(crate) enum EntryError {
    #[error("it has no certificate")]
    NoCertificate,
    #[error("certificate pair {index} cannot be loaded: {source}")]
    Certificate { index: usize, source: rustls::Error },
    #[error("client: {0}")]
    Client(#[from] TrustError),
    #[error("ssl_protocols cannot be used: {0}")]
    Protocols(rustls::Error),
    #[error("cannot make a session ticket key: {0}")]
    Ticketer(rustls::Error),
}

impl EntryError {
    /// A short fixed name of the cause, usable as a label.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            EntryError::NoCertificate => "no_certificate",
            EntryError::Certificate { .. } => "certificate",
            EntryError::Client(_) => "client_ca",
            EntryError::Protocols(_) => "ssl_protocols",
            EntryError::Ticketer(_) => "ticketer",
        }
    }
}

/// A built SSL object: its rustls configuration and client-certificate
/// policy.
pub(crate) struct Entry {
    /// The object this was built from; the next build reuses this entry while
    /// the object is the same `Arc`.
    pub(crate) ssl: Arc<ValidSsl>,
    pub(crate) id: Arc<str>,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) mtls: MtlsPolicy,
    /// The identity of the `client` section, kept by every connection this
    /// entry accepts: requests on it are served while the entry serving its
    /// SNI has the same.
    pub(crate) client_policy: ClientPolicyId,
    /// The CA names requested on behalf of routes (see
    /// [`super::RouteCertRequests`]); a change rebuilds the entry.
    pub(crate) route_names: Option<Vec<Vec<u8>>>,
    verifier: Option<Arc<ClientVerifier>>,
}

impl Entry {
    /// `route_names`: `None` when no route on this object's SNIs verifies
    /// client certificates itself, else the CA names those routes trust.
    pub(crate) fn build(
        ssl: &Arc<ValidSsl>,
        route_names: Option<&[Vec<u8>]>,
    ) -> Result<Entry, EntryError> {
        let provider = super::provider();
        let id: Arc<str> = Arc::from(ssl.id.as_str());
        let pairs = ssl
            .pairs
            .iter()
            .map(|pair| (pair.chain.as_slice(), &*pair.key));
        let resolver = CertResolver::new(pairs, &provider)
            .map_err(|(index, source)| EntryError::Certificate { index, source })?;
        if resolver.is_empty() {
            return Err(EntryError::NoCertificate);
        }
        if let Some(stapling) = &ssl.ocsp_stapling {
            super::stapling::start(&id, stapling, &ssl.pairs, resolver.slots());
        }
        let verifier = match (&ssl.client, route_names) {
            (None, None) => None,
            (auth, names) => Some(Arc::new(ClientVerifier::new(
                Arc::clone(&id),
                auth.as_ref(),
                names.unwrap_or_default(),
                provider.signature_verification_algorithms,
            )?)),
        };
        let builder = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&protocol_versions(&ssl.protocols))
            .map_err(EntryError::Protocols)?;
        let builder = match &verifier {
            Some(verifier) => builder.with_client_cert_verifier(verifier.clone()),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Resumption by stateless tickets (as nginx's default), under a key of
        // this entry's own, replaced whenever the object changes: a session
        // (and the client identity verified in it) can only be resumed on the
        // SSL object, with the CA, that established it. No server-side cache:
        // it would cost memory per SSL object whether used or not.
        config.ticketer =
            rustls::crypto::aws_lc_rs::Ticketer::new().map_err(EntryError::Ticketer)?;
        config.session_storage = Arc::new(NoServerSessionStorage {});
        Ok(Entry {
            ssl: Arc::clone(ssl),
            id,
            config: Arc::new(config),
            mtls: mtls_policy(ssl),
            client_policy: client_policy_id(ssl.client.as_ref()),
            route_names: route_names.map(<[_]>::to_vec),
            verifier,
        })
    }

    /// Under `revocation.mode: hard_fail`, waits for the revocation answers
    /// the handshake found missing (it cannot wait itself). A mandatory
    /// certificate is refused here; an optional one is judged afterwards by
    /// [`Entry::client_cert`], with the answers now cached.
    pub(crate) async fn settle_revocation(
        &self,
        conn: &ServerConnection,
    ) -> Result<(), ClientCertError> {
        let (Some(verifier), Some((leaf, intermediates))) = (
            &self.verifier,
            conn.peer_certificates().and_then(<[_]>::split_first),
        ) else {
            return Ok(());
        };
        let Some(online) = verifier.hard_online() else {
            return Ok(());
        };
        if verifier.mandatory() {
            return online.settle(leaf, intermediates).await;
        }
        if let Err(ClientCertError::RevocationPending) =
            verifier.verify(leaf, intermediates, UnixTime::now())
        {
            // The verdict is recorded by `client_cert`.
            let _ = online.settle(leaf, intermediates).await;
        }
        Ok(())
    }

    /// The client certificate of a finished handshake on this entry's
    /// configuration. Required mode: the handshake already verified it.
    /// Optional mode: verified here, once, so that an untrusted certificate
    /// is recorded rather than refused (and left for routes to judge).
    pub(crate) fn client_cert(&self, conn: &ServerConnection) -> Result<ClientCert, X509Error> {
        let (Some(verifier), Some((leaf, intermediates))) = (
            &self.verifier,
            conn.peer_certificates().and_then(<[_]>::split_first),
        ) else {
            return Ok(ClientCert::None);
        };
        let cert = Arc::new(PeerCert {
            der: leaf.clone(),
            summary: CertSummary::from_der(leaf)?,
            intermediates: intermediates.to_vec(),
        });
        if verifier.mandatory() {
            return Ok(ClientCert::Verified(cert));
        }
        Ok(
            match verifier.verify(leaf, intermediates, UnixTime::now()) {
                Ok(()) => ClientCert::Verified(cert),
                Err(reason) => ClientCert::Failed {
                    reason: reason.to_string(),
                    cert,
                },
            },
        )
    }
}

impl fmt::Debug for Entry {
    /// Never prints the object itself: it holds the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("id", &self.id)
            .field("mtls", &self.mtls)
            .field("client_policy", &self.client_policy)
            .finish_non_exhaustive()
    }
}

fn protocol_versions(versions: &[TlsVersion]) -> Vec<&'static SupportedProtocolVersion> {
    if versions.is_empty() {
        return vec![&rustls::version::TLS13, &rustls::version::TLS12];
    }
    versions
        .iter()
        .map(|version| match version {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        })
        .collect()
}

fn mtls_policy(ssl: &ValidSsl) -> MtlsPolicy {
    match &ssl.client {
        None => MtlsPolicy::Off,
        Some(auth) => match &auth.skip_mtls_uri_regex {
            None => MtlsPolicy::Required,
            Some(skip) => MtlsPolicy::Optional {
                skip: Arc::new(skip.clone()),
            },
        },
    }
}
