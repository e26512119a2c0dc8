//! Header rewriting every proxied message gets: hop-by-hop headers are
//! dropped in both directions (they describe one connection, not the
//! message; a request's go before any plugin runs, so `Connection` cannot
//! name a header a plugin sets), the client's certificate headers are
//! dropped unless `forward-client-cert` decided on them, and the upstream
//! learns who the client is through `X-Forwarded-*` and `X-Real-IP`.

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, COOKIE, EXPECT, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};

use super::websocket::asks_for_upgrade;
use crate::context::ConnInfo;

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The headers that carry a client certificate to the upstream: Envoy's
/// XFCC and RFC 9440's.
static CLIENT_CERT_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-forwarded-client-cert"),
    HeaderName::from_static("client-cert"),
    HeaderName::from_static("client-cert-chain"),
];

/// [`strip_hop_by_hop`] for a request; returns whether the removed headers
/// asked for a WebSocket upgrade (see [`super::websocket`]). Checked only
/// when there are hop-by-hop headers at all, so a plain request pays
/// nothing more.
pub(super) fn strip_request_hop_by_hop(headers: &mut HeaderMap) -> bool {
    if !headers.keys().any(is_hop_by_hop) {
        return false;
    }
    let websocket = asks_for_upgrade(headers);
    remove_hop_by_hop(headers);
    websocket
}

/// Removes the headers that apply to one connection only: those RFC 9110
/// §7.6.1 lists, the legacy ones, and any named in `Connection`.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // The common case, checked without hashing: nothing to strip.
    if headers.keys().any(is_hop_by_hop) {
        remove_hop_by_hop(headers);
    }
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in hop_by_hop() {
        headers.remove(name);
    }
}

fn hop_by_hop() -> [&'static HeaderName; 9] {
    [
        &CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &PROXY_AUTHENTICATE,
        &PROXY_AUTHORIZATION,
        &TE,
        &TRAILER,
        &TRANSFER_ENCODING,
        &UPGRADE,
    ]
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    hop_by_hop().contains(&name)
}

/// Removes the certificate headers a client sent itself, as Envoy sanitizes
/// XFCC by default: only a route's `forward-client-cert` may pass them on.
pub(super) fn remove_client_cert_headers(headers: &mut HeaderMap) {
    // The common case, checked in one pass without hashing: none sent.
    if !headers
        .keys()
        .any(|name| CLIENT_CERT_HEADERS.contains(name))
    {
        return;
    }
    for name in &CLIENT_CERT_HEADERS {
        headers.remove(name);
    }
}

/// Prepares the client's headers (hop-by-hop ones already gone) for the
/// upstream: `Expect` (the gateway answered it already) removed, `Cookie`
/// fields joined, `X-Forwarded-For` appended to, the other forwarding
/// headers replaced by what the gateway saw itself. `Host` is set per
/// attempt.
pub(super) fn prepare_upstream_headers(
    headers: &mut HeaderMap,
    conn: &ConnInfo,
    client_host: Option<&HeaderValue>,
) {
    headers.remove(EXPECT);
    headers.remove(http::header::HOST);
    join_cookies(headers);

    let forwarded_for = forwarded_for(headers, conn.client_ip());
    headers.insert(X_FORWARDED_FOR.clone(), forwarded_for);
    headers.insert(X_REAL_IP.clone(), conn.client_ip().clone());
    let proto = if conn.tls.is_some() { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    headers.insert(X_FORWARDED_PORT.clone(), conn.server_port().clone());
    match client_host {
        Some(host) => headers.insert(X_FORWARDED_HOST.clone(), host.clone()),
        None => headers.remove(&X_FORWARDED_HOST),
    };
}

/// HTTP/2 clients may split `Cookie` into several fields; an HTTP/1.1
/// upstream expects one, joined with `; ` (RFC 9113 §8.2.3).
fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(COOKIE).iter().nth(1).is_none() {
        return;
    }
    let joined = headers
        .get_all(COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    if let Ok(joined) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, joined);
    }
}

/// `X-Forwarded-For` with the client appended, as nginx's
/// `$proxy_add_x_forwarded_for` (several incoming headers are joined).
fn forwarded_for(headers: &HeaderMap, client_ip: &HeaderValue) -> HeaderValue {
    let mut value = Vec::new();
    for previous in headers.get_all(&X_FORWARDED_FOR) {
        value.extend_from_slice(previous.as_bytes());
        value.extend_from_slice(b", ");
    }
    value.extend_from_slice(client_ip.as_bytes());
    // Joined from valid header values and an IP address: always valid.
    HeaderValue::from_bytes(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    /// A plain-HTTP client on a dual-stack socket (an IPv4-mapped address).
    fn plain_conn() -> ConnInfo {
        let remote: SocketAddr = "[::ffff:192.0.2.7]:50000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:9080".parse().unwrap();
        ConnInfo::new(remote, local, None)
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-session"),
            ("keep-alive", "timeout=5"),
            ("x-session", "abc"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("x-kept", "yes"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert_eq!(headers["x-kept"], "yes");
    }

    #[test]
    fn a_request_learns_whether_its_stripped_headers_asked_for_a_websocket() {
        let mut headers = HeaderMap::new();
        headers.insert("upgrade", HeaderValue::from_static("websocket"));
        headers.insert("connection", HeaderValue::from_static("Upgrade"));
        headers.insert("sec-websocket-key", HeaderValue::from_static("a2V5"));
        assert!(strip_request_hop_by_hop(&mut headers));
        assert_eq!(headers.len(), 1, "end-to-end headers kept: {headers:?}");
        headers.insert("upgrade", HeaderValue::from_static("websocket"));
        assert!(!strip_request_hop_by_hop(&mut headers), "no Connection");
        assert!(!headers.contains_key("upgrade"));
        assert!(!strip_request_hop_by_hop(&mut headers), "nothing to strip");
    }

    #[test]
    fn removes_every_client_cert_header_and_nothing_else() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-forwarded-client-cert", "Hash=00"),
            ("x-forwarded-client-cert", "Hash=01"),
            ("client-cert", ":AAAA:"),
            ("client-cert-chain", ":AAAA:"),
            ("x-kept", "yes"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        remove_client_cert_headers(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert_eq!(headers["x-kept"], "yes");
        for name in ["client-cert", "client-cert-chain"] {
            let mut only = HeaderMap::new();
            only.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(":AAAA:"),
            );
            remove_client_cert_headers(&mut only);
            assert!(only.is_empty(), "{name} kept");
        }
    }

    #[test]
    fn forwarding_headers_describe_the_client() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", HeaderValue::from_static("203.0.113.1"));
        headers.append("x-forwarded-for", HeaderValue::from_static("203.0.113.2"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        headers.insert("x-real-ip", HeaderValue::from_static("10.9.9.9"));
        headers.insert("host", HeaderValue::from_static("api.example.com"));
        headers.insert("expect", HeaderValue::from_static("100-continue"));
        headers.append("cookie", HeaderValue::from_static("a=1"));
        headers.append("cookie", HeaderValue::from_static("b=2"));
        let host = HeaderValue::from_static("api.example.com");
        prepare_upstream_headers(&mut headers, &plain_conn(), Some(&host));
        assert_eq!(
            headers["x-forwarded-for"],
            "203.0.113.1, 203.0.113.2, 192.0.2.7"
        );
        assert_eq!(headers["x-real-ip"], "192.0.2.7");
        assert_eq!(
            headers["x-forwarded-proto"], "http",
            "a client cannot claim https"
        );
        assert_eq!(headers["x-forwarded-host"], "api.example.com");
        assert_eq!(headers["x-forwarded-port"], "9080");
        assert!(!headers.contains_key("host") && !headers.contains_key("expect"));
        let cookies: Vec<_> = headers.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1; b=2"]);
    }
}
