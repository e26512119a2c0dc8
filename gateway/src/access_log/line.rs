//! The content of access-log lines and their two formats. A line is
//! formatted on the worker that served the request, straight into the
//! worker's batch, from what the request already holds (borrowed, not
//! copied). What describes the connection (addresses, TLS, client
//! certificate) is formatted once per connection.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HOST, REFERER, USER_AGENT};
use http::{Method, Request, Uri, Version};
use shared::config::AccessLogFormat;
use time::macros::format_description;
use time::OffsetDateTime;

use super::digits::{push_six, push_u64, triple};
use super::request_id::RequestId;
use crate::context::{ClientCert, ConnInfo};
use crate::json_text::{self, JsonText};
use crate::metrics::HandshakeFailure;

/// The request line and the headers a line shows, copied: a reference
/// would keep the connection's read buffer from being reused. Path and host
/// share one allocation.
pub(crate) struct RequestHead {
    method: Method,
    version: Version,
    /// The path (with its query), then the host if any.
    path_host: Box<str>,
    path_len: usize,
    has_host: bool,
    /// `combined` only.
    referer: Option<Box<str>>,
    user_agent: Option<Box<str>>,
}

impl RequestHead {
    pub(crate) fn of<B>(req: &Request<B>, format: AccessLogFormat) -> RequestHead {
        let header = |name| req.headers().get(name)?.to_str().ok();
        // HTTP/2 names the host in `:authority`.
        let host = req
            .uri()
            .authority()
            .map(|authority| authority.as_str())
            .or_else(|| header(HOST));
        let path = path(req.uri());
        let mut path_host = String::with_capacity(path.len() + host.map_or(0, str::len));
        path_host.push_str(path);
        path_host.push_str(host.unwrap_or_default());
        let combined = format == AccessLogFormat::Combined;
        let copy = |name| combined.then(|| header(name).map(Box::from)).flatten();
        RequestHead {
            method: req.method().clone(),
            version: req.version(),
            path_host: path_host.into(),
            path_len: path.len(),
            has_host: host.is_some(),
            referer: copy(REFERER),
            user_agent: copy(USER_AGENT),
        }
    }

    fn path(&self) -> &str {
        &self.path_host[..self.path_len]
    }

    fn host(&self) -> Option<&str> {
        self.has_host.then(|| &self.path_host[self.path_len..])
    }
}

/// One served request.
pub(crate) struct RequestLine<'a> {
    pub(crate) time: SystemTime,
    pub(crate) request_id: Option<&'a RequestId>,
    pub(crate) conn: &'a ConnInfo,
    /// Escaped when the route was built.
    pub(crate) route_id: Option<&'a JsonText>,
    pub(crate) head: &'a RequestHead,
    pub(crate) status: u16,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    /// Escaped when the upstream was built.
    pub(crate) upstream_addr: Option<&'a JsonText>,
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
    pub(crate) fn format(
        &self,
        format: AccessLogFormat,
        clock: &mut Clock,
        out: &mut String,
    ) -> bool {
        if format != AccessLogFormat::Json {
            return false;
        }
        out.push_str("{\"time\":\"");
        clock.write(self.time, out);
        let _ = write!(
            out,
            "\",\"type\":\"tls_handshake_refused\",\"client_addr\":\"{}\",\"client_port\":{},\"reason\":\"{}\",\"error\":",
            self.peer.ip().to_canonical(),
            self.peer.port(),
            self.reason.as_str(),
        );
        json_text::push(out, &self.error);
        out.push('}');
        true
    }
}

/// The date of the last line, kept by each thread that formats lines.
#[derive(Default)]
pub(crate) struct Clock {
    /// Unix second and its RFC 3339 text without fraction and zone.
    second: Option<(u64, String)>,
}

impl Clock {
    /// RFC 3339 UTC with milliseconds; the date part formatted once a second.
    fn write(&mut self, at: SystemTime, out: &mut String) {
        let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = since.as_secs();
        let text = match &self.second {
            Some((cached, text)) if *cached == second => text,
            _ => {
                let text = OffsetDateTime::from(at)
                    .format(format_description!(
                        "[year]-[month]-[day]T[hour]:[minute]:[second]"
                    ))
                    .unwrap_or_default();
                &self.second.insert((second, text)).1
            }
        };
        out.push_str(text);
        out.push('.');
        out.push_str(triple(since.subsec_millis()));
        out.push('Z');
    }
}

impl RequestLine<'_> {
    pub(crate) fn format(&self, format: AccessLogFormat, clock: &mut Clock, out: &mut String) {
        match format {
            AccessLogFormat::Json => self.json(clock, out),
            AccessLogFormat::Combined => self.combined(out),
        }
    }

    fn json(&self, clock: &mut Clock, out: &mut String) {
        out.push_str("{\"time\":\"");
        clock.write(self.time, out);
        out.push_str("\",\"request_id\":");
        // An id needs no escaping (see `RequestId`).
        match self.request_id {
            Some(id) => {
                out.push('"');
                out.push_str(id.as_str());
                out.push('"');
            }
            None => out.push_str("null"),
        }
        out.push(',');
        out.push_str(conn_fields(self.conn));
        out.push_str(",\"route_id\":");
        push_json_or_null(out, self.route_id);
        let head = &self.head;
        // A method is a token: nothing in it to escape.
        out.push_str(",\"method\":\"");
        out.push_str(head.method.as_str());
        out.push('"');
        out.push_str(",\"host\":");
        json_text::push_opt(out, head.host());
        out.push_str(",\"path\":");
        json_text::push(out, head.path());
        out.push_str(",\"status\":");
        push_status(out, self.status);
        out.push_str(",\"bytes_in\":");
        push_u64(out, self.bytes_in);
        out.push_str(",\"bytes_out\":");
        push_u64(out, self.bytes_out);
        out.push_str(",\"upstream_addr\":");
        push_json_or_null(out, self.upstream_addr);
        out.push_str(",\"upstream_status\":");
        match self.upstream_status {
            Some(status) => push_status(out, status),
            None => out.push_str("null"),
        }
        out.push_str(",\"request_time\":");
        seconds(out, Some(self.request_time));
        out.push_str(",\"upstream_time\":");
        seconds(out, self.upstream_time);
        out.push('}');
    }

    /// nginx `combined`: `$remote_addr - $remote_user [$time_local]
    /// "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`.
    fn combined(&self, out: &mut String) {
        let time = OffsetDateTime::from(self.time)
            .format(format_description!(
                "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
            ))
            .unwrap_or_default();
        let _ = write!(
            out,
            "{} - - [{time}] \"{} ",
            self.conn.remote_addr.ip().to_canonical(),
            self.head.method,
        );
        escape_into(out, self.head.path());
        let _ = write!(
            out,
            " {:?}\" {} {} \"",
            self.head.version, self.status, self.bytes_out
        );
        escape_into(out, self.head.referer.as_deref().unwrap_or("-"));
        out.push_str("\" \"");
        escape_into(out, self.head.user_agent.as_deref().unwrap_or("-"));
        out.push('"');
    }
}

/// The connection's fields of a JSON line: client address, TLS, client
/// certificate (nginx `$ssl_client_verify` and what it judged).
fn conn_fields(conn: &ConnInfo) -> &str {
    conn.log_fields.get_or_init(|| format_conn_fields(conn))
}

fn format_conn_fields(conn: &ConnInfo) -> Box<str> {
    let mut out = String::new();
    out.push_str("\"client_addr\":");
    json_text::push_opt(&mut out, conn.client_ip().to_str().ok());
    let _ = write!(out, ",\"client_port\":{}", conn.remote_addr.port());
    let Some(tls) = &conn.tls else {
        out.push_str(",\"sni\":null,\"ssl_id\":null,\"tls_protocol\":null,\"tls_resumed\":null,\"client_cert\":null");
        return out.into();
    };
    out.push_str(",\"sni\":");
    json_text::push_opt(&mut out, tls.server_name.as_deref());
    out.push_str(",\"ssl_id\":");
    json_text::push(&mut out, &tls.ssl_id);
    let _ = write!(
        out,
        ",\"tls_protocol\":\"{}\",\"tls_resumed\":{},\"client_cert\":",
        tls.protocol, tls.resumed
    );
    client_cert(&mut out, &tls.client_cert);
    out.into()
}

fn client_cert(out: &mut String, cert: &ClientCert) {
    let (verify, cert) = match cert {
        ClientCert::None => return out.push_str("{\"verify\":\"NONE\"}"),
        ClientCert::Verified(cert) => ("SUCCESS".to_owned(), cert),
        ClientCert::Failed { reason, cert } => (format!("FAILED:{reason}"), cert),
    };
    let summary = &cert.summary;
    out.push_str("{\"verify\":");
    json_text::push(out, &verify);
    for (name, value) in [
        ("subject", &summary.subject),
        ("serial", &summary.serial),
        ("sha256", &summary.fingerprint_sha256),
    ] {
        let _ = write!(out, ",\"{name}\":");
        json_text::push(out, value);
    }
    out.push('}');
}

fn path(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |p| p.as_str())
}

fn push_json_or_null(out: &mut String, value: Option<&JsonText>) {
    out.push_str(value.map_or("null", JsonText::as_json));
}

/// `"` and `\` escaped, control characters as `\xHH`, as nginx does.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// An HTTP status: three digits (`http::StatusCode` holds 100 to 999).
fn push_status(out: &mut String, status: u16) {
    out.push_str(triple(status.into()));
}

/// Seconds with microseconds, as nginx `$request_time`; `null` for none.
fn seconds(out: &mut String, took: Option<Duration>) {
    let Some(took) = took else {
        return out.push_str("null");
    };
    match took.as_secs() {
        secs @ 0..=9 => out.push(char::from(b'0' + secs as u8)),
        secs => push_u64(out, secs),
    }
    out.push('.');
    push_six(out, took.subsec_micros());
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn a_request_line_is_one_json_object() {
        let conn = ConnInfo::new(
            "127.0.0.1:5000".parse().unwrap(),
            "127.0.0.1:9080".parse().unwrap(),
            None,
        );
        let head = RequestHead::of(
            &Request::get("/a?b=c")
                .header(HOST, "example.test")
                .header(USER_AGENT, "say \"hi\"")
                .body(())
                .unwrap(),
            AccessLogFormat::Combined,
        );
        let mut headers = http::HeaderMap::new();
        headers.insert("x-request-id", http::HeaderValue::from_static("id-1"));
        let id = super::super::request_id::ensure(&mut headers);
        let line = RequestLine {
            time: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            request_id: Some(&id),
            conn: &conn,
            route_id: Some(&JsonText::new("r1")),
            head: &head,
            status: 502,
            bytes_in: 0,
            bytes_out: 42,
            upstream_addr: Some(&JsonText::new("127.0.0.1:1")),
            upstream_status: None,
            request_time: Duration::from_micros(1_500),
            upstream_time: None,
        };
        let mut out = String::new();
        line.format(AccessLogFormat::Json, &mut Clock::default(), &mut out);
        let parsed: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(parsed["request_id"], "id-1");
        assert_eq!(parsed["route_id"], "r1");
        assert_eq!(parsed["upstream_addr"], "127.0.0.1:1");
        assert_eq!(parsed["path"], "/a?b=c");
        assert_eq!(parsed["client_addr"], "127.0.0.1");
        assert_eq!(parsed["client_cert"], Value::Null);
        assert_eq!(parsed["status"], 502);
        assert_eq!(parsed["upstream_status"], Value::Null);
        assert_eq!(parsed["request_time"], 0.0015);
        out.clear();
        line.format(AccessLogFormat::Combined, &mut Clock::default(), &mut out);
        assert_eq!(
            out,
            r#"127.0.0.1 - - [14/Nov/2023:22:13:20 +0000] "GET /a?b=c HTTP/1.1" 502 42 "-" "say \"hi\"""#
        );
    }

    #[test]
    fn durations_are_seconds_with_six_decimals() {
        for (micros, text) in [
            (0, "0.000000"),
            (651, "0.000651"),
            (999_999, "0.999999"),
            (1_000_000, "1.000000"),
            (12_345_678, "12.345678"),
            (100_000_001, "100.000001"),
        ] {
            let mut out = String::new();
            seconds(&mut out, Some(Duration::from_micros(micros)));
            assert_eq!(out, text);
        }
        let mut out = String::new();
        seconds(&mut out, None);
        assert_eq!(out, "null");
    }
}
