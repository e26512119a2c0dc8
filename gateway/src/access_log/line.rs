//! The content of access-log lines and their two formats. Built on the
//! worker with what is at hand (cheap clones), formatted on the writer
//! thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, Uri, Version};
use serde::Serialize;
use serde_json::Value;
use shared::config::AccessLogFormat;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::context::{ClientCert, ConnInfo, PeerCert};
use crate::metrics::HandshakeFailure;

/// One served request.
pub(crate) struct RequestLine {
    pub(crate) time: SystemTime,
    pub(crate) request_id: Option<HeaderValue>,
    pub(crate) conn: Arc<ConnInfo>,
    pub(crate) route_id: Option<Box<str>>,
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    pub(crate) host: Option<HeaderValue>,
    pub(crate) referer: Option<HeaderValue>,
    pub(crate) user_agent: Option<HeaderValue>,
    pub(crate) status: u16,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) upstream_addr: Option<Box<str>>,
    pub(crate) upstream_status: Option<u16>,
    pub(crate) request_time: Duration,
    pub(crate) upstream_time: Option<Duration>,
}

/// One refused TLS handshake.
pub(crate) struct HandshakeLine {
    time: SystemTime,
    peer: SocketAddr,
    reason: HandshakeFailure,
    error: String,
}

impl HandshakeLine {
    pub(crate) fn new(peer: SocketAddr, reason: HandshakeFailure, error: String) -> Self {
        HandshakeLine {
            time: SystemTime::now(),
            peer,
            reason,
            error,
        }
    }

    /// JSON only: `combined` has no form for it (the error log has it).
    pub(crate) fn format(&self, format: AccessLogFormat) -> Option<String> {
        (format == AccessLogFormat::Json).then(|| {
            serde_json::json!({
                "time": rfc3339(self.time),
                "type": "tls_handshake_refused",
                "client_addr": self.peer.ip().to_canonical().to_string(),
                "client_port": self.peer.port(),
                "reason": self.reason.as_str(),
                "error": self.error,
            })
            .to_string()
        })
    }
}

#[derive(Serialize)]
struct JsonRequest<'a> {
    time: String,
    request_id: Option<&'a str>,
    client_addr: String,
    client_port: u16,
    sni: Option<&'a str>,
    ssl_id: Option<&'a str>,
    tls_protocol: Option<&'a str>,
    tls_resumed: Option<bool>,
    client_cert: Value,
    route_id: Option<&'a str>,
    method: &'a str,
    host: Option<&'a str>,
    path: &'a str,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    upstream_addr: Option<&'a str>,
    upstream_status: Option<u16>,
    /// Seconds, as nginx `$request_time`.
    request_time: f64,
    upstream_time: Option<f64>,
}

impl RequestLine {
    pub(crate) fn format(&self, format: AccessLogFormat) -> String {
        match format {
            AccessLogFormat::Json => self.json(),
            AccessLogFormat::Combined => self.combined(),
        }
    }

    fn json(&self) -> String {
        let tls = self.conn.tls.as_ref();
        let line = JsonRequest {
            time: rfc3339(self.time),
            request_id: text(self.request_id.as_ref()),
            client_addr: self
                .conn
                .client_ip()
                .to_str()
                .unwrap_or_default()
                .to_owned(),
            client_port: self.conn.remote_addr.port(),
            sni: tls.and_then(|tls| tls.server_name.as_deref()),
            ssl_id: tls.map(|tls| &*tls.ssl_id),
            tls_protocol: tls.map(|tls| tls.protocol),
            tls_resumed: tls.map(|tls| tls.resumed),
            client_cert: tls.map_or(Value::Null, |tls| client_cert(&tls.client_cert)),
            route_id: self.route_id.as_deref(),
            method: self.method.as_str(),
            host: text(self.host.as_ref()),
            path: self.uri.path_and_query().map_or("/", |p| p.as_str()),
            status: self.status,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            upstream_addr: self.upstream_addr.as_deref(),
            upstream_status: self.upstream_status,
            request_time: seconds(self.request_time),
            upstream_time: self.upstream_time.map(seconds),
        };
        serde_json::to_string(&line).unwrap_or_default()
    }

    /// nginx `combined`: `$remote_addr - $remote_user [$time_local]
    /// "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`.
    fn combined(&self) -> String {
        let time = OffsetDateTime::from(self.time)
            .format(format_description!(
                "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
            ))
            .unwrap_or_default();
        let quoted = |value: Option<&HeaderValue>| text(value).map_or("-".to_owned(), escape);
        format!(
            "{} - - [{time}] \"{} {} {:?}\" {} {} \"{}\" \"{}\"",
            self.conn.client_ip().to_str().unwrap_or_default(),
            self.method,
            escape(self.uri.path_and_query().map_or("/", |p| p.as_str())),
            self.version,
            self.status,
            self.bytes_out,
            quoted(self.referer.as_ref()),
            quoted(self.user_agent.as_ref()),
        )
    }
}

/// nginx `$ssl_client_verify` and the certificate it judged.
fn client_cert(cert: &ClientCert) -> Value {
    let described = |verify: String, cert: &PeerCert| {
        serde_json::json!({
            "verify": verify,
            "subject": cert.summary.subject,
            "serial": cert.summary.serial,
            "sha256": cert.summary.fingerprint_sha256,
        })
    };
    match cert {
        ClientCert::None => serde_json::json!({ "verify": "NONE" }),
        ClientCert::Verified(cert) => described("SUCCESS".to_owned(), cert),
        ClientCert::Failed { reason, cert } => described(format!("FAILED:{reason}"), cert),
    }
}

fn text(value: Option<&HeaderValue>) -> Option<&str> {
    value.and_then(|value| value.to_str().ok())
}

/// `"` and `\` escaped, control characters as `\xHH`, as nginx does.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii_control() => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn rfc3339(at: SystemTime) -> String {
    OffsetDateTime::from(at)
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn seconds(took: Duration) -> f64 {
    (took.as_secs_f64() * 1e6).round() / 1e6
}
