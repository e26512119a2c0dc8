use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;

use http::Request;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use shared::x509::CertSummary;

use super::*;
use crate::context::ConnInfo;
use crate::plugins::testing;

/// 2022-09-04T12:00:00Z: a single-digit day shows nginx's space padding.
const NOT_BEFORE: i64 = 1_662_292_800;
/// 2052-11-14T23:05:09Z.
const NOT_AFTER: i64 = 2_615_238_309;

/// A client certificate with subject `CN=<cn>` and `O=Org`, issued by
/// `CN=Test Root CA`, with the walkthrough client certificate's serial.
fn client_cert(cn: &str) -> CertificateDer<'static> {
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "Test Root CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();

    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Org");
    params.serial_number = Some(SerialNumber::from_slice(&[
        0x51, 0x41, 0xCC, 0x6F, 0x5E, 0x2B, 0x4B, 0xA3, 0x17, 0x46, 0xD7, 0xDB, 0xFE, 0x9B, 0xA8,
        0x1F, 0x06, 0x9C, 0xF9, 0x70,
    ]));
    params.not_before = OffsetDateTime::from_unix_timestamp(NOT_BEFORE).unwrap();
    params.not_after = OffsetDateTime::from_unix_timestamp(NOT_AFTER).unwrap();
    let key = KeyPair::generate().unwrap();
    params.signed_by(&key, &ca).unwrap().der().clone()
}

fn peer(der: CertificateDer<'static>) -> Arc<PeerCert> {
    let summary = CertSummary::from_der(&der).unwrap();
    Arc::new(PeerCert {
        der,
        summary,
        intermediates: Vec::new(),
    })
}

fn tls_conn(client_cert: ClientCert) -> ConnInfo {
    testing::tls_conn(client_cert, "[::ffff:198.51.100.4]:40000").0
}

fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut builder = Request::builder().uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}

fn ctx<'a>(conn: &'a ConnInfo, uri: &'a str, request_uri: &'a str) -> RequestCtx<'a> {
    RequestCtx {
        conn,
        route_id: "1",
        host: Some("test.com"),
        uri,
        request_uri,
        extensions: http::Extensions::new(),
    }
}

fn expand(text: &str, conn: &ConnInfo, req: &Parts) -> String {
    let ctx = ctx(conn, "/anything", "/anything?a=1&page=2");
    Template::parse(text).render_to_string(&Vars { ctx: &ctx, req }, Escape::HeaderValue)
}

/// `openssl x509` fields for `der`, the reference nginx's variables follow.
fn openssl_fields(der: &[u8], args: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-nameopt", "RFC2253"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    child.stdin.take().unwrap().write_all(der).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

fn openssl_field(der: &[u8], flag: &str) -> String {
    let out = openssl_fields(der, &["-noout", flag]);
    let (_, value) = out.trim_end().split_once('=').unwrap();
    value.to_owned()
}

#[test]
fn parses_variables_and_leaves_stray_dollars_literal() {
    let t = Template::parse("pre-$uri/${host}-${http_x_tenant ?? none}$");
    assert_eq!(
        *t.segments,
        [
            Segment::Literal("pre-".into()),
            Segment::Var {
                var: Var::Uri,
                default: None
            },
            Segment::Literal("/".into()),
            Segment::Var {
                var: Var::Host,
                default: None
            },
            Segment::Literal("-".into()),
            Segment::Var {
                var: Var::Header(HeaderName::from_static("x-tenant")),
                default: Some("none".into()),
            },
            Segment::Literal("$".into()),
        ]
    );
    for literal in ["$ 5", "${unterminated", "${bad name}", "${}", "cost: $"] {
        assert_eq!(
            *Template::parse(literal).segments,
            [Segment::Literal(literal.into())],
            "{literal}"
        );
    }
    let unknown = Template::parse("$nope ${arg_page} $http_");
    assert_eq!(
        unknown.unknown_variables().collect::<Vec<_>>(),
        ["nope", "http_"]
    );
}

#[test]
fn client_certificate_variables_match_openssl() {
    let der = client_cert("CLIENT");
    let conn = tls_conn(ClientCert::Verified(peer(der.clone())));
    let req = parts("/anything", &[]);
    let fingerprint = openssl_field(&der, "-fingerprint")
        .replace(':', "")
        .to_lowercase();

    assert_eq!(expand("$ssl_client_fingerprint", &conn, &req), fingerprint);
    assert_eq!(fingerprint.len(), 40);
    assert_eq!(
        expand("$ssl_client_serial", &conn, &req),
        openssl_field(&der, "-serial")
    );
    assert_eq!(
        expand("$ssl_client_serial", &conn, &req),
        "5141CC6F5E2B4BA31746D7DBFE9BA81F069CF970"
    );
    assert_eq!(
        expand("$ssl_client_s_dn", &conn, &req),
        openssl_field(&der, "-subject")
    );
    let subject = expand("$ssl_client_s_dn", &conn, &req);
    assert!(
        subject.split(',').any(|rdn| rdn == "CN=CLIENT") && subject.contains("O=Org"),
        "{subject}"
    );
    assert_eq!(
        expand("$ssl_client_i_dn", &conn, &req),
        openssl_field(&der, "-issuer")
    );
    assert_eq!(
        expand("$ssl_client_v_start", &conn, &req),
        "Sep  4 12:00:00 2022 GMT"
    );
    assert_eq!(
        expand("$ssl_client_v_start", &conn, &req),
        openssl_field(&der, "-startdate")
    );
    assert_eq!(
        expand("$ssl_client_v_end", &conn, &req),
        openssl_field(&der, "-enddate")
    );
    assert_eq!(expand("$ssl_client_verify", &conn, &req), "SUCCESS");

    let remain: i64 = expand("$ssl_client_v_remain", &conn, &req).parse().unwrap();
    assert_eq!(remain, (NOT_AFTER - unix_now()) / 86_400);
}

#[test]
fn raw_and_escaped_certificates_match_openssl_pem() {
    let der = client_cert("CLIENT");
    let conn = tls_conn(ClientCert::Verified(peer(der.clone())));
    let openssl_pem = openssl_fields(&der, &["-outform", "PEM"]);
    let ctx = ctx(&conn, "/", "/");
    let req = parts("/", &[]);
    let vars = Vars {
        ctx: &ctx,
        req: &req,
    };
    let render = |text: &str, escape| Template::parse(text).render_to_string(&vars, escape);

    // In a path the PEM's newlines are percent-encoded, so it comes out whole.
    let raw = percent_encoding::percent_decode_str(&render("$ssl_client_raw_cert", Escape::Path))
        .decode_utf8()
        .unwrap()
        .into_owned();
    assert_eq!(raw, openssl_pem);
    let escaped = render("$ssl_client_escaped_cert", Escape::HeaderValue);
    assert!(
        escaped.starts_with("-----BEGIN%20CERTIFICATE-----%0A"),
        "{escaped}"
    );
    assert!(!escaped.contains(['/', '+', '=', '\n']));
    assert_eq!(
        percent_encoding::percent_decode_str(&escaped)
            .decode_utf8()
            .unwrap(),
        openssl_pem
    );
    // In a header the newlines become spaces: one valid line.
    let header = render("$ssl_client_raw_cert", Escape::HeaderValue);
    assert_eq!(header, openssl_pem.replace('\n', " "));
}

#[test]
fn unverified_certificates_expose_nothing_but_the_verdict() {
    let failed = ClientCert::Failed {
        reason: "certificate has expired".to_owned(),
        cert: peer(client_cert("MALLORY")),
    };
    let req = parts("/", &[]);
    let all = "$ssl_client_fingerprint$ssl_client_serial$ssl_client_s_dn$ssl_client_i_dn$ssl_client_raw_cert$ssl_client_v_end$ssl_client_v_remain";
    let conn = tls_conn(failed);
    assert_eq!(expand(all, &conn, &req), "");
    assert_eq!(
        expand("$ssl_client_verify", &conn, &req),
        "FAILED:certificate has expired"
    );

    let conn = tls_conn(ClientCert::None);
    assert_eq!(expand(all, &conn, &req), "");
    assert_eq!(expand("$ssl_client_verify", &conn, &req), "NONE");

    let plain = ConnInfo::new(conn.remote_addr, conn.local_addr, None);
    assert_eq!(
        expand(
            "[$ssl_client_verify|$ssl_server_name|$ssl_protocol|$scheme]",
            &plain,
            &req
        ),
        "[NONE|||http]"
    );
}

#[test]
fn certificate_fields_cannot_inject_headers() {
    let der = client_cert("evil\r\nX-Admin: true");
    let conn = tls_conn(ClientCert::Verified(peer(der)));
    let req = parts("/", &[]);
    let value = expand("$ssl_client_s_dn", &conn, &req);
    assert!(!value.contains(['\r', '\n']), "{value:?}");
    assert!(http::HeaderValue::from_str(&value).is_ok());
}

#[test]
fn connection_and_request_variables() {
    let conn = tls_conn(ClientCert::None);
    let req = parts(
        "/anything?a=1&page=2",
        &[
            ("x-tenant", "acme"),
            ("x-multi", "one"),
            ("x-multi", "two"),
            ("x-evil", "a b"),
        ],
    );
    let expanded = expand(
        "$remote_addr:$remote_port>$server_port $ssl_server_name $ssl_protocol $host $uri $request_uri $args $arg_page $arg_missing|$request_method",
        &conn,
        &req,
    );
    assert_eq!(
        expanded,
        "198.51.100.4:40000>9443 test.com TLSv1.3 test.com /anything /anything?a=1&page=2 a=1&page=2 2 |GET"
    );
    assert_eq!(
        expand("${http_x_tenant}/$http_x_multi", &conn, &req),
        "acme/one, two"
    );
    assert_eq!(
        expand(
            "${http_x_absent ?? anonymous}|${http_x_tenant ?? anonymous}",
            &conn,
            &req
        ),
        "anonymous|acme"
    );
    assert_eq!(expand("[$no_such_variable]", &conn, &req), "[]");
}

#[test]
fn path_values_are_percent_encoded() {
    let conn = tls_conn(ClientCert::None);
    let req = parts("/", &[("x-id", "a b?c#d%e/f")]);
    let ctx = ctx(&conn, "/", "/");
    let path = Template::parse("/users/$http_x_id").render_to_string(
        &Vars {
            ctx: &ctx,
            req: &req,
        },
        Escape::Path,
    );
    assert_eq!(path, "/users/a%20b%3Fc%23d%25e/f");
}

#[test]
fn nginx_time_and_remaining_days() {
    assert_eq!(nginx_time(NOT_BEFORE), "Sep  4 12:00:00 2022 GMT");
    assert_eq!(nginx_time(NOT_AFTER), "Nov 14 23:05:09 2052 GMT");
    assert_eq!(days_remaining(NOT_BEFORE + 86_400 * 3 + 5, NOT_BEFORE), 3);
    assert_eq!(days_remaining(NOT_BEFORE, NOT_BEFORE + 1), 0, "expired");
}

#[test]
fn only_text_without_variables_is_fixed() {
    assert_eq!(Template::parse("").fixed_text(), Some(""));
    assert_eq!(Template::parse("v2 $ 5").fixed_text(), Some("v2 $ 5"));
    assert_eq!(Template::parse("v$host").fixed_text(), None);
    assert_eq!(Template::parse("${x ?? d}").fixed_text(), None);
}
