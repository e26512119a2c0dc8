//! nginx-style variables in plugin settings (`$ssl_client_s_dn`,
//! `${host}`, `${http_x_tenant ?? none}`).
//!
//! A [`Template`] is parsed once, when the route is built; a request only
//! walks its segments. As in nginx and APISIX, an unknown variable expands to
//! the empty string (the route build logs it). Client-certificate variables
//! expand only for a *verified* certificate: an upstream must never mistake
//! the fields of a certificate the gateway refused for an identity.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::request::Parts;
use http::{HeaderName, HeaderValue};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS, NON_ALPHANUMERIC};
use shared::plugins::template;
use time::OffsetDateTime;

use super::RequestCtx;
use crate::context::{ClientCert, PeerCert};

/// Text with variables, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    /// Boxed: every route keeps its templates, with no room for more.
    segments: Box<[Segment]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `$name`, `${name}`, or `${name ?? default}` (the default replaces an
    /// empty value).
    Var {
        var: Var,
        default: Option<String>,
    },
}

/// The variables the gateway knows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Var {
    SslClientFingerprint,
    SslClientSerial,
    SslClientSDn,
    SslClientIDn,
    SslClientVerify,
    SslClientRawCert,
    SslClientEscapedCert,
    SslClientVStart,
    SslClientVEnd,
    SslClientVRemain,
    SslServerName,
    SslProtocol,
    RemoteAddr,
    RemotePort,
    ServerPort,
    Scheme,
    Host,
    Uri,
    RequestUri,
    Args,
    RequestMethod,
    /// `$http_x_tenant`: the request header `x-tenant`.
    Header(HeaderName),
    /// `$arg_page`: the raw query parameter `page`.
    Arg(String),
    Unknown(String),
}

/// How a variable's value is made safe for where it lands. Literal text is
/// checked when the template is built instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Escape {
    /// A header value: control characters (CR, LF, NUL, ...) become spaces,
    /// so no certificate field or client input can inject a header. (So
    /// `$ssl_client_raw_cert` arrives as one line, its PEM lines separated by
    /// spaces; `$ssl_client_escaped_cert` keeps them, percent-encoded.)
    HeaderValue,
    /// A URI path: anything not allowed there, and `?`, `#` and `%`, is
    /// percent-encoded so a value cannot start the query or the fragment,
    /// nor smuggle an encoded byte. `/` and `.` are kept: a value can add
    /// segments, including `..` (`proxy-rewrite` refuses such a result).
    Path,
}

/// Percent-encoded in a path value: what a path cannot hold, plus what
/// would change its meaning.
const PATH_VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

/// nginx's `$ssl_client_escaped_cert`: everything but RFC 3986 unreserved.
pub(crate) const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl Template {
    /// Parses `text` ([`shared::plugins::template`]: never fails) and
    /// resolves its variable names.
    pub(crate) fn parse(text: &str) -> Template {
        let segments = template::parse(text)
            .into_iter()
            .map(|segment| match segment {
                template::Segment::Literal(text) => Segment::Literal(text),
                template::Segment::Var { name, default } => Segment::Var {
                    var: Var::named(name),
                    default: default.map(str::to_owned),
                },
            })
            .collect();
        Template { segments }
    }

    /// The text, when it holds no variable: its expansion on every request.
    pub(crate) fn fixed_text(&self) -> Option<&str> {
        match &*self.segments {
            [] => Some(""),
            [Segment::Literal(text)] => Some(text),
            _ => None,
        }
    }

    /// Names of variables this build does not know (they expand to "").
    pub(crate) fn unknown_variables(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|segment| match segment {
            Segment::Var {
                var: Var::Unknown(name),
                ..
            } => Some(name.as_str()),
            _ => None,
        })
    }

    /// Appends the expansion to `out`.
    pub(crate) fn render(&self, vars: &Vars<'_>, escape: Escape, out: &mut String) {
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Var { var, default } => {
                    let value = var.value(vars);
                    match default {
                        Some(default) if value.is_empty() => out.push_str(default),
                        _ => push_escaped(&value, escape, out),
                    }
                }
            }
        }
    }

    /// The expansion as a new string.
    pub(crate) fn render_to_string(&self, vars: &Vars<'_>, escape: Escape) -> String {
        let mut out = String::new();
        self.render(vars, escape, &mut out);
        out
    }
}

fn push_escaped(value: &str, escape: Escape, out: &mut String) {
    match escape {
        Escape::HeaderValue => {
            out.extend(
                value
                    .chars()
                    .map(|c| if c.is_control() && c != '\t' { ' ' } else { c }),
            )
        }
        Escape::Path => out.extend(utf8_percent_encode(value, PATH_VALUE)),
    }
}

/// What variables are read from: the connection, the request as the client
/// sent it, and the request as it is now (for `$http_*`).
pub(crate) struct Vars<'a> {
    pub(crate) ctx: &'a RequestCtx<'a>,
    pub(crate) req: &'a Parts,
}

impl Var {
    fn named(name: &str) -> Var {
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "ssl_client_fingerprint" => Var::SslClientFingerprint,
            "ssl_client_serial" => Var::SslClientSerial,
            "ssl_client_s_dn" => Var::SslClientSDn,
            "ssl_client_i_dn" => Var::SslClientIDn,
            "ssl_client_verify" => Var::SslClientVerify,
            "ssl_client_raw_cert" => Var::SslClientRawCert,
            "ssl_client_escaped_cert" => Var::SslClientEscapedCert,
            "ssl_client_v_start" => Var::SslClientVStart,
            "ssl_client_v_end" => Var::SslClientVEnd,
            "ssl_client_v_remain" => Var::SslClientVRemain,
            "ssl_server_name" => Var::SslServerName,
            "ssl_protocol" => Var::SslProtocol,
            "remote_addr" => Var::RemoteAddr,
            "remote_port" => Var::RemotePort,
            "server_port" => Var::ServerPort,
            "scheme" => Var::Scheme,
            "host" => Var::Host,
            "uri" | "document_uri" => Var::Uri,
            "request_uri" => Var::RequestUri,
            "args" | "query_string" => Var::Args,
            "request_method" => Var::RequestMethod,
            _ => Var::prefixed(name),
        }
    }

    fn prefixed(name: String) -> Var {
        if let Some(header) = name.strip_prefix("http_") {
            if let Ok(header) = HeaderName::from_bytes(header.replace('_', "-").as_bytes()) {
                return Var::Header(header);
            }
        }
        if let Some(arg) = name.strip_prefix("arg_").filter(|arg| !arg.is_empty()) {
            return Var::Arg(arg.to_owned());
        }
        Var::Unknown(name)
    }

    fn value<'a>(&self, vars: &Vars<'a>) -> Cow<'a, str> {
        let ctx = vars.ctx;
        let tls = ctx.conn.tls.as_ref();
        let cert = tls.and_then(|tls| tls.client_cert.verified());
        let cert_field =
            |field: fn(&PeerCert) -> String| Cow::Owned(cert.map(field).unwrap_or_default());
        match self {
            Var::SslClientFingerprint => cert_field(|c| c.summary.fingerprint_sha1.clone()),
            Var::SslClientSerial => cert_field(|c| c.summary.serial.clone()),
            Var::SslClientSDn => cert_field(|c| c.summary.subject.clone()),
            Var::SslClientIDn => cert_field(|c| c.summary.issuer.clone()),
            Var::SslClientRawCert => cert_field(|c| pem(c.der.as_ref())),
            Var::SslClientEscapedCert => {
                cert_field(|c| utf8_percent_encode(&pem(c.der.as_ref()), URI_COMPONENT).to_string())
            }
            Var::SslClientVStart => cert_field(|c| nginx_time(c.summary.not_before)),
            Var::SslClientVEnd => cert_field(|c| nginx_time(c.summary.not_after)),
            Var::SslClientVRemain => {
                cert_field(|c| days_remaining(c.summary.not_after, unix_now()).to_string())
            }
            Var::SslClientVerify => Cow::Owned(match tls.map(|tls| &tls.client_cert) {
                Some(ClientCert::Verified(_)) => "SUCCESS".to_owned(),
                Some(ClientCert::Failed { reason, .. }) => format!("FAILED:{reason}"),
                Some(ClientCert::None) | None => "NONE".to_owned(),
            }),
            Var::SslServerName => {
                Cow::Borrowed(tls.and_then(|tls| tls.server_name.as_deref()).unwrap_or(""))
            }
            Var::SslProtocol => Cow::Borrowed(tls.map_or("", |tls| tls.protocol)),
            Var::RemoteAddr => header_text(ctx.conn.client_ip()),
            Var::RemotePort => Cow::Owned(ctx.conn.remote_addr.port().to_string()),
            Var::ServerPort => header_text(ctx.conn.server_port()),
            Var::Scheme => Cow::Borrowed(if tls.is_some() { "https" } else { "http" }),
            Var::Host => Cow::Borrowed(ctx.host.unwrap_or("")),
            Var::Uri => Cow::Borrowed(ctx.uri),
            Var::RequestUri => Cow::Borrowed(ctx.request_uri),
            Var::Args => Cow::Borrowed(ctx.query().unwrap_or("")),
            Var::RequestMethod => Cow::Owned(vars.req.method.as_str().to_owned()),
            Var::Header(name) => header_value(vars.req, name),
            Var::Arg(name) => {
                Cow::Borrowed(query_arg(ctx.query().unwrap_or(""), name).unwrap_or(""))
            }
            Var::Unknown(_) => Cow::Borrowed(""),
        }
    }
}

/// A value the connection wrote once (an address, a port): ASCII.
fn header_text(value: &HeaderValue) -> Cow<'_, str> {
    Cow::Borrowed(value.to_str().unwrap_or(""))
}

/// Every value of `name`, joined with `, ` as nginx 1.23+ does.
fn header_value<'a>(req: &Parts, name: &HeaderName) -> Cow<'a, str> {
    let mut values = req
        .headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()));
    let Some(first) = values.next() else {
        return Cow::Borrowed("");
    };
    let mut joined = first.into_owned();
    for value in values {
        joined.push_str(", ");
        joined.push_str(&value);
    }
    Cow::Owned(joined)
}

/// The raw (still percent-encoded) value of the first `name=` in `query`.
fn query_arg<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        key.eq_ignore_ascii_case(name).then_some(value)
    })
}

/// A certificate as PEM, 64 base64 characters a line, as nginx prints it.
pub(crate) fn pem(der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 64 + 64);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    // Base64 output is ASCII, so splitting on bytes keeps it valid UTF-8.
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// OpenSSL's `ASN1_TIME_print` format nginx uses: `Sep  4 12:00:00 2022 GMT`
/// (the day padded with a space).
fn nginx_time(unix: i64) -> String {
    let Ok(at) = OffsetDateTime::from_unix_timestamp(unix) else {
        return String::new();
    };
    let month = at.month().to_string();
    let mut out = String::with_capacity(24);
    let _ = write!(
        out,
        "{} {:>2} {:02}:{:02}:{:02} {} GMT",
        &month[..3],
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.year()
    );
    out
}

/// Whole days until `not_after`, 0 once expired (nginx `$ssl_client_v_remain`).
fn days_remaining(not_after: i64, now: i64) -> i64 {
    ((not_after - now) / 86_400).max(0)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
