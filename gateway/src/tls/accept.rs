//! The per-connection path: read the ClientHello, look its SNI up, finish the
//! handshake with that SSL object's configuration, read the client's leaf.

use std::io;
use std::sync::{Arc, LazyLock};

use rustls::server::{Acceptor, ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, HandshakeKind, ProtocolVersion, ServerConfig};
use shared::validate::normalize_host;
use shared::x509::X509Error;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{LazyConfigAcceptor, StartHandshake};

use super::{ClientCertError, SniTable};
use crate::context::TlsInfo;

/// Why a TLS connection was not established. Each variant names what an
/// operator needs to find the cause.
#[derive(Debug, Error)]
pub enum AcceptError {
    /// The first bytes were not a ClientHello we can use (plain HTTP on the
    /// HTTPS port, a scanner, no common protocol version, ...).
    #[error("unusable ClientHello: {0}")]
    ClientHello(#[source] rustls::Error),
    #[error("the client sent no SNI and no SSL object serves fallback_sni")]
    NoSni,
    #[error("no SSL object serves SNI {0:?}")]
    UnknownSni(String),
    /// The handshake broke a TLS rule: no common cipher suite, a missing or
    /// untrusted client certificate, a bad signature, ...
    #[error("TLS handshake with SSL object {ssl_id} failed: {source}")]
    Handshake {
        ssl_id: Arc<str>,
        #[source]
        source: rustls::Error,
    },
    /// The connection broke (reset, closed, ...) during the handshake.
    #[error("connection lost during the TLS handshake: {0}")]
    Io(#[source] io::Error),
    /// The client certificate is revoked (by a CRL at the handshake, or by
    /// an online answer).
    #[error("SSL object {ssl_id}: client certificate revoked")]
    Revoked { ssl_id: Arc<str> },
    /// `revocation.mode: hard_fail` and no usable answer: the CA does not
    /// know the certificate, its responder is down, or it did not answer
    /// within `timeout_ms`.
    #[error("SSL object {ssl_id}: client certificate revocation status unknown")]
    RevocationUnknown { ssl_id: Arc<str> },
    #[error("SSL object {ssl_id}: unreadable client certificate: {source}")]
    PeerCertificate {
        ssl_id: Arc<str>,
        #[source]
        source: X509Error,
    },
}

impl AcceptError {
    /// The SSL object the handshake was judged under; empty when none was
    /// chosen (no SNI, unknown SNI, a connection lost before the choice).
    pub fn ssl_id(&self) -> &str {
        match self {
            AcceptError::Handshake { ssl_id, .. }
            | AcceptError::PeerCertificate { ssl_id, .. }
            | AcceptError::Revoked { ssl_id }
            | AcceptError::RevocationUnknown { ssl_id } => ssl_id,
            AcceptError::NoSni
            | AcceptError::UnknownSni(_)
            | AcceptError::ClientHello(_)
            | AcceptError::Io(_) => "",
        }
    }
}

/// Reads the ClientHello, picks the SSL object for its SNI, finishes the
/// handshake with that object's configuration, and returns the stream with
/// what the handshake established.
///
/// There is no deadline here: the caller bounds the whole call (a client that
/// stalls mid-handshake holds nothing but its socket and this future).
pub async fn accept(
    tcp: TcpStream,
    table: &SniTable,
) -> Result<(TlsStream<TcpStream>, TlsInfo), AcceptError> {
    let start = LazyConfigAcceptor::new(Acceptor::default(), tcp)
        .await
        .map_err(|err| split_error(err, AcceptError::ClientHello))?;
    let sni = start.client_hello().server_name().map(normalize_host);
    let Some(entry) = table.for_sni(sni.as_deref()) else {
        refuse(start).await;
        return Err(sni.map_or(AcceptError::NoSni, AcceptError::UnknownSni));
    };
    let stream = start
        .into_stream(Arc::clone(&entry.config))
        .await
        .map_err(|err| {
            split_error(err, |source| match source {
                rustls::Error::InvalidCertificate(CertificateError::Revoked) => {
                    AcceptError::Revoked {
                        ssl_id: Arc::clone(&entry.id),
                    }
                }
                source => AcceptError::Handshake {
                    ssl_id: Arc::clone(&entry.id),
                    source,
                },
            })
        })?;
    let conn = stream.get_ref().1;
    if let Err(err) = entry.settle_revocation(conn).await {
        let ssl_id = Arc::clone(&entry.id);
        return Err(match err {
            ClientCertError::Revoked => AcceptError::Revoked { ssl_id },
            _ => AcceptError::RevocationUnknown { ssl_id },
        });
    }
    let client_cert = entry
        .client_cert(conn)
        .map_err(|source| AcceptError::PeerCertificate {
            ssl_id: Arc::clone(&entry.id),
            source,
        })?;
    let info = TlsInfo {
        server_name: sni,
        ssl_id: Arc::clone(&entry.id),
        protocol: protocol_name(conn.protocol_version()),
        resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
        client_cert,
        mtls: entry.mtls.clone(),
        client_policy: entry.client_policy,
    };
    Ok((stream, info))
}

/// tokio-rustls reports TLS failures as `io::Error`s wrapping the
/// `rustls::Error`; tell them apart from transport failures.
fn split_error(err: io::Error, tls: impl FnOnce(rustls::Error) -> AcceptError) -> AcceptError {
    match err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls_error) => tls(tls_error.clone()),
        None => AcceptError::Io(err),
    }
}

/// Answers a ClientHello no SSL object serves with a TLS alert rather than a
/// bare close, so that the client reports a handshake failure.
async fn refuse(start: StartHandshake<TcpStream>) {
    if let Some(config) = REFUSAL.as_ref() {
        // The handshake fails by construction; its error is the caller's.
        let _ = start.into_stream(Arc::clone(config)).await;
    }
}

static REFUSAL: LazyLock<Option<Arc<ServerConfig>>> = LazyLock::new(|| {
    let config = ServerConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .ok()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(NoCertificate));
    Some(Arc::new(config))
});

#[derive(Debug)]
struct NoCertificate;

impl ResolvesServerCert for NoCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }
}

/// As nginx `$ssl_protocol`.
fn protocol_name(version: Option<ProtocolVersion>) -> &'static str {
    match version {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "unknown",
    }
}
