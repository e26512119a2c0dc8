//! Why a request got no upstream response, as the client sees it (status
//! and a JSON `{"error_msg": ...}` body that names no internal address) and
//! as the operator sees it (the full reason, logged).

use http::header::{HeaderValue, CONNECTION};
use http::{Response, StatusCode};
use thiserror::Error;

use crate::path::PathError;
use crate::reply::{json_response, ProxyBody};
use crate::upstream::SendError;

/// A request the proxy answers itself.
#[derive(Debug, Error)]
pub(crate) enum ProxyError {
    #[error("invalid request path: {0}")]
    BadPath(#[from] PathError),
    #[error("the request has more than one Host header (RFC 9112 §3.2)")]
    MultipleHosts,
    #[error("HTTP/2 :authority {authority:?} and Host {host:?} name different servers (malformed, RFC 9113 §8.3.1)")]
    AuthorityMismatch { authority: String, host: String },
    #[error("SSL object {ssl_id} requires a verified client certificate for {path:?} (client certificate: {presented})")]
    ClientCertRequired {
        ssl_id: String,
        path: String,
        presented: String,
    },
    #[error("host {host:?} belongs to SSL object {host_ssl}, not to SSL object {conn_ssl} that served the handshake, and one of them verifies client certificates")]
    Misdirected {
        host: String,
        host_ssl: String,
        conn_ssl: String,
    },
    #[error("host {host:?} belongs to SSL object {host_ssl}, which verifies client certificates, but the request came over plain HTTP")]
    PlaintextToMtlsHost { host: String, host_ssl: String },
    #[error("the client-certificate policy of SSL object {conn_ssl} changed since this connection's handshake (SNI {sni}): {now}; the client must reconnect")]
    PolicyChanged {
        conn_ssl: String,
        /// The connection's SNI, or what stands for its absence.
        sni: String,
        /// What serves that SNI now.
        now: String,
    },
    #[error("no route matches")]
    RouteNotFound,
    #[error("route {route} cannot serve: {reason}")]
    RouteUnavailable { route: String, reason: String },
    #[error("route {route}: {upstream} has no node to send to")]
    NoNode { route: String, upstream: String },
    #[error("route {route}: cannot build the request for {upstream}: {source}")]
    UpstreamRequest {
        route: String,
        upstream: String,
        source: http::Error,
    },
    #[error("route {route}: {upstream}, node {node}: {source}")]
    Upstream {
        route: String,
        upstream: String,
        node: String,
        source: SendError,
    },
}

impl ProxyError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadPath(_)
            | ProxyError::MultipleHosts
            | ProxyError::AuthorityMismatch { .. }
            | ProxyError::ClientCertRequired { .. } => StatusCode::BAD_REQUEST,
            ProxyError::Misdirected { .. }
            | ProxyError::PlaintextToMtlsHost { .. }
            | ProxyError::PolicyChanged { .. } => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::RouteNotFound => StatusCode::NOT_FOUND,
            ProxyError::RouteUnavailable { .. } | ProxyError::NoNode { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::UpstreamRequest { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::Upstream { source, .. } if source.is_timeout() => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// What the client is told: enough to act on, nothing internal.
    fn public_message(&self) -> &'static str {
        match self {
            ProxyError::BadPath(reason) => reason.public_message(),
            ProxyError::MultipleHosts => "invalid request: more than one Host header",
            ProxyError::AuthorityMismatch { .. } => "invalid request: :authority and Host disagree",
            ProxyError::ClientCertRequired { .. } => "client certificate required: this path needs a verified client certificate",
            ProxyError::Misdirected { .. } => {
                "misdirected request: the Host header names another server than the TLS server name (SNI)"
            }
            ProxyError::PlaintextToMtlsHost { .. } => {
                "misdirected request: this host requires a client certificate, use HTTPS"
            }
            ProxyError::PolicyChanged { .. } => {
                "misdirected request: the server's TLS settings changed, retry on a new connection"
            }
            ProxyError::RouteNotFound => "404 Route Not Found",
            ProxyError::RouteUnavailable { .. } | ProxyError::UpstreamRequest { .. } => "the route is misconfigured",
            ProxyError::NoNode { .. } => "no upstream node available",
            ProxyError::Upstream { source, .. } => match source {
                SendError::ConnectTimeout(_) | SendError::ReadTimeout(_) => "upstream timed out",
                SendError::Connect(_) => "failed to connect to upstream",
                SendError::Failed(_) => "upstream request failed",
                SendError::TlsUnavailable(_) => "upstream TLS configuration unavailable",
            },
        }
    }

    fn log(&self) {
        let status = self.status().as_u16();
        match self {
            ProxyError::RouteNotFound
            | ProxyError::BadPath(_)
            | ProxyError::MultipleHosts
            | ProxyError::AuthorityMismatch { .. } => {
                tracing::debug!(status, reason = %self, "request refused")
            }
            ProxyError::ClientCertRequired { .. }
            | ProxyError::Misdirected { .. }
            | ProxyError::PlaintextToMtlsHost { .. }
            | ProxyError::PolicyChanged { .. } => {
                tracing::info!(status, reason = %self, "request refused")
            }
            _ => tracing::warn!(status, reason = %self, "request failed"),
        }
    }

    /// Logs the error and turns it into the client's response.
    pub(crate) fn into_response(self) -> Response<ProxyBody> {
        self.log();
        let mut response = json_response(self.status(), self.public_message());
        if self.ends_connection() {
            // HTTP/1.1 closes after this response; HTTP/2 drops the header
            // (connection-specific), its clients retry 421 on a new
            // connection.
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    /// Whether no further request on this connection can be served: only a
    /// new handshake can help.
    fn ends_connection(&self) -> bool {
        matches!(self, ProxyError::PolicyChanged { .. })
    }
}
