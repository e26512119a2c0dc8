//! A TLS session of our own with each etcd endpoint, to see whether etcd
//! refuses these TLS settings: for the startup probe (`probe`), and so
//! that rotated TLS files that etcd refuses do not replace working ones
//! (`rotate`).

use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::cause::tls_error;
use super::probe::ProbeError;
use super::tls::EtcdTlsVersion;

/// The HTTP/2 connection preface and an empty SETTINGS frame: what a gRPC
/// client sends first, and what makes etcd answer.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

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

#[cfg(test)]
mod tests {
    use super::host;

    #[test]
    fn the_host_of_an_authority() {
        assert_eq!(host("etcd.test:2379"), "etcd.test");
        assert_eq!(host("127.0.0.1:2379"), "127.0.0.1");
        assert_eq!(host("[::1]:2379"), "::1");
        assert_eq!(host("etcd.test"), "etcd.test");
    }
}
