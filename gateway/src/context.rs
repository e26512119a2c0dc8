//! What the data plane knows about one client connection, established once at
//! accept time and shared by every request on it.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use http::HeaderValue;
use regex::RegexSet;
use rustls_pki_types::CertificateDer;
use shared::x509::CertSummary;

use crate::shutdown::ShutdownSignal;

/// One accepted client connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote_addr: SocketAddr,
    pub local_addr: SocketAddr,
    /// `None` on the plain-HTTP listener.
    pub tls: Option<TlsInfo>,
    /// Set by the listener: what keeps the connection counted.
    pub hold: Option<ConnHold>,
    /// The client's IP as text (an IPv4-mapped IPv6 address as IPv4), and
    /// the local port: every request forwards them (`X-Real-IP`,
    /// `X-Forwarded-*`), so they are written once per connection.
    client_ip: HeaderValue,
    server_port: HeaderValue,
    /// The connection's part of each JSON access-log line, written by its
    /// first logged request.
    pub(crate) log_fields: OnceLock<Box<str>>,
}

impl ConnInfo {
    pub fn new(remote_addr: SocketAddr, local_addr: SocketAddr, tls: Option<TlsInfo>) -> ConnInfo {
        ConnInfo {
            client_ip: header_text(remote_addr.ip().to_canonical()),
            server_port: header_text(local_addr.port()),
            remote_addr,
            local_addr,
            tls,
            hold: None,
            log_fields: OnceLock::new(),
        }
    }

    /// `remote_addr`'s IP, as nginx `$remote_addr`.
    pub fn client_ip(&self) -> &HeaderValue {
        &self.client_ip
    }

    /// `local_addr`'s port, as nginx `$server_port`.
    pub fn server_port(&self) -> &HeaderValue {
        &self.server_port
    }
}

/// An address or a port printed: digits, dots, colons and hex only, always
/// a valid header value.
fn header_text(value: impl std::fmt::Display) -> HeaderValue {
    HeaderValue::try_from(value.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The outcome of the TLS handshake.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    /// The SNI the client sent, normalised; `None` when it sent none and the
    /// fallback SNI was used.
    pub server_name: Option<String>,
    /// The SSL object whose configuration completed the handshake.
    pub ssl_id: Arc<str>,
    /// `TLSv1.2` or `TLSv1.3`, as nginx `$ssl_protocol`.
    pub protocol: &'static str,
    /// The session was resumed (nginx `$ssl_session_reused`).
    pub resumed: bool,
    pub client_cert: ClientCert,
    /// What that SSL object demands of client certificates.
    pub mtls: MtlsPolicy,
    /// Which `client` section `client_cert` and `mtls` were judged under:
    /// a request after that section changed must not be served on this
    /// connection.
    pub client_policy: ClientPolicyId,
}

/// The client certificate presented on this connection, if any.
#[derive(Debug, Clone)]
pub enum ClientCert {
    /// None was sent.
    None,
    /// Sent, and it chains to the SSL object's `client.ca` within `depth`.
    Verified(Arc<PeerCert>),
    /// Sent but not trusted (only possible when the SSL object lets the
    /// handshake through without one, i.e. with `skip_mtls_uri_regex`).
    Failed { reason: String, cert: Arc<PeerCert> },
}

impl ClientCert {
    /// The certificate when it was verified.
    pub fn verified(&self) -> Option<&PeerCert> {
        match self {
            ClientCert::Verified(cert) => Some(cert),
            _ => None,
        }
    }
}

/// The client's leaf certificate.
#[derive(Debug, Clone)]
pub struct PeerCert {
    pub der: CertificateDer<'static>,
    pub summary: CertSummary,
    /// The certificates the client sent after its leaf, as sent (possibly
    /// in any order, possibly including its CA): what a route that verifies
    /// client certificates itself builds the chain from.
    pub intermediates: Vec<CertificateDer<'static>>,
}

/// The client-certificate policy of the SSL object that served the handshake.
#[derive(Debug, Clone)]
pub enum MtlsPolicy {
    /// No `client` section: no certificate is requested.
    Off,
    /// `client.ca` without `skip_mtls_uri_regex`: the handshake already
    /// refused anyone without a verified certificate.
    Required,
    /// `client.ca` with `skip_mtls_uri_regex`: paths matching one of the
    /// regexes pass without a verified certificate, others get HTTP 400.
    Optional { skip: Arc<RegexSet> },
}

/// Identifies an SSL object's client-certificate policy (its `client`
/// section: CAs, depth, skip regexes, CRLs and their modes): equal ids, same
/// policy. The default is the policy of an object without a `client`
/// section. Cheap to compare: a request checks it against the current
/// configuration.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientPolicyId(pub(crate) [u8; 32]);

impl std::fmt::Debug for ClientPolicyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == ClientPolicyId::default() {
            return f.write_str("ClientPolicyId(none)");
        }
        write!(f, "ClientPolicyId({})", hex::encode(&self.0[..8]))
    }
}

/// Keeps an accepted connection counted (its `proxy.max_connections` slot,
/// and the wait of a graceful shutdown) for as long as a clone lives, with
/// the shutdown signal: what a connection hyper hands over (a WebSocket)
/// carries on after its HTTP connection ended.
#[derive(Clone)]
pub struct ConnHold {
    _slot: Arc<dyn Send + Sync>,
    pub shutdown: ShutdownSignal,
}

impl ConnHold {
    pub(crate) fn new(slot: Arc<dyn Send + Sync>, shutdown: ShutdownSignal) -> ConnHold {
        ConnHold {
            _slot: slot,
            shutdown,
        }
    }
}

impl std::fmt::Debug for ConnHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnHold")
    }
}
