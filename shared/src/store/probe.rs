//! Telling "etcd is not there (yet)" from "etcd will never accept us".
//!
//! A data plane must start while etcd is down and keep retrying; but a
//! wrong client certificate, an untrusted etcd certificate or refused
//! credentials will not fix themselves, and retrying them forever looks like
//! a hang. The startup probe separates the two; the same handshake check
//! keeps rotated TLS files that etcd refuses from replacing working ones.

use std::error::Error as StdError;
use std::time::Duration;

use rustls_pki_types::ServerName;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::tls::EtcdTlsVersion;

/// The HTTP/2 connection preface and an empty SETTINGS frame: what a gRPC
/// client sends first, and what makes etcd answer.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Why the startup probe failed.
#[derive(Debug, Error)]
pub enum ProbeError {
    /// TLS failed or etcd refused our credentials: fix the configuration.
    #[error("etcd at {endpoints} refused the connection: {reason}")]
    Refused { endpoints: String, reason: String },
    /// etcd is down, unreachable or slow: worth retrying.
    #[error("etcd at {endpoints} is unreachable: {reason}")]
    Unreachable { endpoints: String, reason: String },
}

impl ProbeError {
    /// Whether retrying cannot help.
    pub fn is_fatal(&self) -> bool {
        matches!(self, ProbeError::Refused { .. })
    }
}

/// Classifies a failed etcd call.
pub(super) fn classify(endpoints: &str, err: &etcd_client::Error) -> ProbeError {
    let endpoints = endpoints.to_owned();
    match refusal(err) {
        Some(reason) => ProbeError::Refused { endpoints, reason },
        None => ProbeError::Unreachable {
            endpoints,
            reason: super::describe(err),
        },
    }
}

/// Whether etcd at `endpoint` refuses a TLS session with these settings,
/// and why. The etcd client's own errors cannot always tell: with TLS 1.3
/// the server judges our certificate only after the handshake completed on
/// our side, and its alert may surface as a mere "connection closed". So
/// this opens a session of its own and reads etcd's first answer, which is
/// either HTTP/2 or that alert. `None`: no refusal seen (etcd may be down).
async fn handshake_refusal(
    endpoint: &str,
    tls: &EtcdTlsVersion,
    timeout: Duration,
) -> Option<String> {
    let authority = endpoint.strip_prefix("https://")?.split('/').next()?;
    let name = tls.sni.as_deref().unwrap_or_else(|| host(authority));
    let name = ServerName::try_from(name).ok()?.to_owned();
    let connector = TlsConnector::from(tls.rustls.clone());
    let attempt = async {
        let tcp = TcpStream::connect(authority).await.ok()?;
        let mut session = match connector.connect(name, tcp).await {
            Ok(session) => session,
            Err(err) => return tls_reason(&err),
        };
        if let Err(err) = session.write_all(H2_PREFACE).await {
            return tls_reason(&err);
        }
        match session.read(&mut [0; 1]).await {
            Ok(_) => None,
            Err(err) => tls_reason(&err),
        }
    };
    tokio::time::timeout(timeout, attempt).await.ok().flatten()
}

/// The first of `endpoints` that refuses these TLS settings, as a
/// [`ProbeError::Refused`] naming it.
pub(super) async fn first_refusal(
    endpoints: &[String],
    tls: &EtcdTlsVersion,
    timeout: Duration,
) -> Option<ProbeError> {
    for endpoint in endpoints {
        if let Some(reason) = handshake_refusal(endpoint, tls, timeout).await {
            return Some(ProbeError::Refused {
                endpoints: endpoint.clone(),
                reason,
            });
        }
    }
    None
}

/// `host` of `host:port` or `[v6]:port`.
fn host(authority: &str) -> &str {
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

fn tls_reason(err: &std::io::Error) -> Option<String> {
    tls_error(err).map(|tls| format!("TLS: {tls}"))
}

/// gRPC status codes (fixed by the gRPC specification) that mean "not with
/// these credentials".
const PERMISSION_DENIED: i32 = 7;
const UNAUTHENTICATED: i32 = 16;

/// The reason etcd will never accept this client, if that is the case: a
/// TLS error anywhere in the chain, or a gRPC authentication refusal.
fn refusal(err: &etcd_client::Error) -> Option<String> {
    if let etcd_client::Error::GRpcStatus(status) = err {
        if matches!(status.code() as i32, PERMISSION_DENIED | UNAUTHENTICATED) {
            return Some(format!("{:?}: {}", status.code(), status.message()));
        }
    }
    let mut cause = inner(err);
    while let Some(current) = cause {
        if let Some(tls) = tls_error(current) {
            return Some(format!("TLS: {tls}"));
        }
        cause = current.source();
    }
    None
}

/// Where the cause chain of an etcd error starts (`etcd_client::Error`
/// does not expose it through `source()`).
pub(super) fn inner(err: &etcd_client::Error) -> Option<&(dyn StdError + 'static)> {
    match err {
        etcd_client::Error::GRpcStatus(status) => Some(status),
        etcd_client::Error::TransportError(transport) => Some(transport),
        etcd_client::Error::IoError(io) => Some(io),
        _ => None,
    }
}

/// A rustls error, directly or wrapped in the `io::Error` that tokio-rustls
/// returns (whose `source()` skips the wrapped error itself).
fn tls_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    err.downcast_ref::<std::io::Error>()?
        .get_ref()?
        .downcast_ref::<rustls::Error>()
}
