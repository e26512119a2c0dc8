//! Certificate parsing, summaries and key matching, checked against what the
//! `openssl` CLI prints for the same certificates.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use rcgen::{DnType, SanType, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519};
use serde_json::json;

use super::test_pki::{openssl, openssl_x509, TestCa, WALKTHROUGH};
use super::*;

fn first_der(pem: &str) -> CertificateDer<'static> {
    parse_certs(pem).expect("certificate parses").remove(0)
}

fn summary(pem: &str) -> CertSummary {
    CertSummary::from_der(&first_der(pem)).expect("summary")
}

fn matches(key_pem: &str, cert_pem: &str) -> bool {
    key_matches_cert(
        &parse_key(key_pem).expect("key parses"),
        &first_der(cert_pem),
    )
    .expect("comparable")
}

/// The value after the first `=` of openssl's one-line output.
fn after_equals(line: &str) -> String {
    line.trim_end()
        .split_once('=')
        .map(|(_, v)| v.to_owned())
        .expect("openssl prints name=value")
}

fn openssl_dn(pem: &str, which: &str) -> String {
    after_equals(&openssl_x509(pem, &[which, "-nameopt", "RFC2253"]))
}

fn openssl_serial(pem: &str) -> String {
    after_equals(&openssl_x509(pem, &["-serial"]))
}

/// openssl prints `SHA1 Fingerprint=AB:CD:…`; nginx prints `abcd…`.
fn openssl_fingerprint(pem: &str, digest: &str) -> String {
    after_equals(&openssl_x509(pem, &["-fingerprint", digest]))
        .replace(':', "")
        .to_ascii_lowercase()
}

fn assert_like_openssl(pem: &str) {
    let ours = summary(pem);
    assert_eq!(ours.subject, openssl_dn(pem, "-subject"), "subject");
    assert_eq!(ours.issuer, openssl_dn(pem, "-issuer"), "issuer");
    assert_eq!(ours.serial, openssl_serial(pem), "serial");
    assert_eq!(
        ours.fingerprint_sha1,
        openssl_fingerprint(pem, "-sha1"),
        "sha1"
    );
    assert_eq!(
        ours.fingerprint_sha256,
        openssl_fingerprint(pem, "-sha256"),
        "sha256"
    );
}

#[test]
fn walkthrough_certificates_are_v1_and_summarised_as_openssl_prints_them() {
    let pki = &*WALKTHROUGH;
    for pem in [&pki.ca_cert, &pki.server_cert, &pki.client_cert] {
        let s = summary(pem);
        assert_eq!(s.version, 1);
        assert!(s.sans.is_empty());
        assert!(!s.is_ca, "a v1 certificate has no basic constraints");
        assert!(s.not_before < s.not_after);
        assert_eq!(s.fingerprint_sha1.len(), 40);
        assert_like_openssl(pem);
    }
    assert_eq!(summary(&pki.client_cert).subject, "CN=CLIENT");
    assert_eq!(summary(&pki.client_cert).issuer, "CN=ROOTCA");
    assert_eq!(summary(&pki.server_cert).subject, "CN=test.com");
}

#[test]
fn walkthrough_keys_match_their_own_certificates_only() {
    let pki = &*WALKTHROUGH;
    assert!(matches(&pki.server_key, &pki.server_cert));
    assert!(matches(&pki.client_key, &pki.client_cert));
    assert!(!matches(&pki.client_key, &pki.server_cert));
    assert!(!matches(&pki.server_key, &pki.client_cert));
}

/// A self-signed certificate for an openssl-made key, as PEM.
fn openssl_self_signed(dir: &Path, key_file: &str) -> String {
    let cert_file = format!("{key_file}.crt");
    openssl(
        dir,
        &[
            "req", "-x509", "-key", key_file, "-subj", "/CN=k", "-days", "2", "-out", &cert_file,
        ],
    );
    std::fs::read_to_string(dir.join(cert_file)).expect("cert")
}

#[test]
fn keys_in_every_supported_encoding_are_matched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    openssl(d, &["genrsa", "-traditional", "-out", "rsa1.pem", "2048"]);
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "p256.pem",
        ],
    );
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "secp384r1",
            "-genkey",
            "-noout",
            "-out",
            "p384.pem",
        ],
    );
    openssl(d, &["genpkey", "-algorithm", "ed25519", "-out", "ed.pem"]);
    let files = ["rsa1.pem", "p256.pem", "p384.pem", "ed.pem"];
    let pairs: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            let key = std::fs::read_to_string(d.join(f)).expect("key");
            (key, openssl_self_signed(d, f))
        })
        .collect();
    assert!(pairs[0].0.contains("BEGIN RSA PRIVATE KEY"), "PKCS#1");
    assert!(pairs[1].0.contains("BEGIN EC PRIVATE KEY"), "SEC1");
    for (i, (key, _)) in pairs.iter().enumerate() {
        for (j, (_, cert)) in pairs.iter().enumerate() {
            assert_eq!(
                matches(key, cert),
                i == j,
                "key {} vs cert {}",
                files[i],
                files[j]
            );
        }
    }
}

#[test]
fn v3_certificates_from_rcgen() {
    let ca = TestCa::new("Test CA", &PKCS_ECDSA_P256_SHA256);
    let ca_summary = summary(&ca.cert_pem());
    assert_eq!(ca_summary.version, 3);
    assert!(ca_summary.is_ca);
    let extra = vec![
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        SanType::URI("spiffe://example.org/api".try_into().expect("ia5")),
        SanType::Rfc822Name("ops@example.org".try_into().expect("ia5")),
    ];
    let leaf = ca.leaf("api", &["api.example.org"], extra, &PKCS_ECDSA_P256_SHA256);
    let s = summary(&leaf.cert);
    assert_eq!(s.version, 3);
    assert!(!s.is_ca);
    assert_eq!(s.subject, "CN=api");
    assert_eq!(s.issuer, "CN=Test CA");
    assert_eq!(
        s.sans,
        [
            "DNS:api.example.org",
            "IP:10.0.0.1",
            "IP:::1",
            "URI:spiffe://example.org/api",
            "email:ops@example.org"
        ]
    );
    assert_like_openssl(&leaf.cert);
}

#[test]
fn keys_of_each_algorithm_match_only_their_certificate() {
    let ca = TestCa::new("Test CA", &PKCS_ECDSA_P384_SHA384);
    let mut pairs: Vec<(String, String)> = [
        &PKCS_ECDSA_P256_SHA256,
        &PKCS_ECDSA_P384_SHA384,
        &PKCS_ED25519,
    ]
    .into_iter()
    .map(|alg| ca.leaf("leaf", &["leaf.test"], Vec::new(), alg))
    .map(|issued| (issued.key, issued.cert))
    .collect();
    // RSA (rcgen cannot generate RSA keys with its ring backend).
    pairs.push((
        WALKTHROUGH.server_key.clone(),
        WALKTHROUGH.server_cert.clone(),
    ));
    for (i, (key, _)) in pairs.iter().enumerate() {
        for (j, (_, cert)) in pairs.iter().enumerate() {
            assert_eq!(matches(key, cert), i == j, "key {i} vs cert {j}");
        }
    }
}

#[test]
fn distinguished_names_are_escaped_like_openssl() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    openssl(d, &["genpkey", "-algorithm", "ed25519", "-out", "k.pem"]);
    // (subject, whether `+` separates the values of a multi-valued RDN)
    let subjects = [
        (
            "/C=US/ST=CA/O=Org, Inc./OU=R&D+Ops/CN=api.example.com",
            false,
        ),
        ("/CN=#hash/O= lead/OU=trail /L=a\"b;c<d>e\\\\f=g", false),
        ("/CN=J\u{fc}rgen M\u{fc}ller/O=Zo\u{eb}", false),
        (
            "/DC=com/DC=example/UID=jdoe/emailAddress=j@example.com/serialNumber=42/CN=J",
            false,
        ),
        ("/O=Org/CN=a+UID=b", true),
    ];
    for (subject, multi_valued) in subjects {
        let mut args = vec![
            "req", "-x509", "-utf8", "-key", "k.pem", "-subj", subject, "-days", "1", "-out",
            "c.pem",
        ];
        if multi_valued {
            args.push("-multivalue-rdn");
        }
        openssl(d, &args);
        let pem = std::fs::read_to_string(d.join("c.pem")).expect("cert");
        assert_eq!(
            summary(&pem).subject,
            openssl_dn(&pem, "-subject"),
            "subject {subject:?}"
        );
    }
}

#[test]
fn unknown_attributes_are_dumped_as_hex_like_openssl() {
    let ca = TestCa::new("Test CA", &PKCS_ECDSA_P256_SHA256);
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(DnType::CustomDnType(vec![1, 2, 3, 4]), "foo");
    params.distinguished_name.push(DnType::CommonName, "x");
    let key = rcgen::KeyPair::generate().expect("key");
    let pem = params.signed_by(&key, &ca.issuer).expect("cert").pem();
    let ours = summary(&pem).subject;
    assert!(ours.contains("1.2.3.4=#0C03666F6F"), "{ours}");
    assert_eq!(ours, openssl_dn(&pem, "-subject"));
}

#[test]
fn serials_are_printed_like_openssl() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    openssl(d, &["genpkey", "-algorithm", "ed25519", "-out", "k.pem"]);
    for (serial, expected) in [
        ("1", "01"),
        ("0x80112233", "80112233"),
        ("0x00FF", "FF"),
        ("0x0102", "0102"),
    ] {
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-key",
                "k.pem",
                "-subj",
                "/CN=s",
                "-set_serial",
                serial,
                "-days",
                "1",
                "-out",
                "c.pem",
            ],
        );
        let pem = std::fs::read_to_string(d.join("c.pem")).expect("cert");
        assert_eq!(summary(&pem).serial, expected, "serial {serial}");
        assert_eq!(
            openssl_serial(&pem),
            expected,
            "openssl agrees for {serial}"
        );
    }
}

#[test]
fn serial_hex_handles_sign_padding_and_negative_serials() {
    assert_eq!(serial_hex(&[0x00, 0x80, 0x01]), "8001");
    assert_eq!(serial_hex(&[0x00]), "00");
    assert_eq!(serial_hex(&[]), "00");
    assert_eq!(serial_hex(&[0xff]), "-01");
    assert_eq!(serial_hex(&[0xff, 0x00]), "-0100");
}

#[test]
fn garbage_is_refused_without_echoing_it() {
    assert_eq!(parse_certs("hello"), Err(X509Error::NoPem("certificate")));
    assert_eq!(parse_certs(""), Err(X509Error::NoPem("certificate")));
    let bad_base64 = "-----BEGIN CERTIFICATE-----\nsecret!!!\n-----END CERTIFICATE-----\n";
    let err = parse_certs(bad_base64).expect_err("bad base64");
    assert!(matches!(err, X509Error::Pem(_)), "{err:?}");
    assert!(!err.to_string().contains("secret"));
    let unterminated = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n";
    assert!(matches!(parse_certs(unterminated), Err(X509Error::Pem(_))));
    let not_a_cert = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        parse_certs(not_a_cert),
        Err(X509Error::Certificate(_))
    ));
    assert_eq!(
        parse_key(&WALKTHROUGH.server_cert),
        Err(X509Error::NoPem("private key"))
    );
    let bad_key = "-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n";
    let key = parse_key(bad_key).expect("PEM framing is fine");
    assert!(matches!(
        key_matches_cert(&key, &first_der(&WALKTHROUGH.server_cert)),
        Err(X509Error::Key(_))
    ));
}

#[test]
fn chains_are_parsed_in_order_and_described() {
    let pki = &*WALKTHROUGH;
    let chain = format!("{}{}", pki.server_cert, pki.ca_cert);
    let certs = parse_certs(&chain).expect("chain");
    assert_eq!(certs.len(), 2);
    let described = describe_certs(&format!("junk\n{chain}"));
    let subjects: Vec<_> = described.iter().map(|s| s.subject.as_str()).collect();
    assert_eq!(subjects, ["CN=test.com", "CN=ROOTCA"]);
}

#[test]
fn redact_removes_private_keys_only() {
    let mut ssl =
        json!({"cert": "C", "key": "K", "certs": ["C2"], "keys": ["K2"], "sni": "a.test"});
    redact(&mut ssl);
    assert_eq!(ssl, json!({"cert": "C", "certs": ["C2"], "sni": "a.test"}));
}

#[test]
fn redact_removes_upstream_client_keys_inline_or_not() {
    let tls = json!({"client_cert": "C", "client_key": "K", "sni": "a.test"});
    let mut upstream = json!({"nodes": {"a:1": 1}, "tls": tls});
    redact(&mut upstream);
    assert_eq!(
        upstream["tls"],
        json!({"client_cert": "C", "sni": "a.test"})
    );
    let mut route = json!({"uri": "/", "upstream": {"nodes": {"a:1": 1}, "tls": tls}});
    redact(&mut route);
    assert_eq!(
        route["upstream"]["tls"],
        json!({"client_cert": "C", "sni": "a.test"})
    );
    assert_eq!(route["uri"], "/");
}

#[test]
fn certificate_fields_refuse_private_keys_of_every_kind_without_echoing_them() {
    let pki = &*WALKTHROUGH;
    let section =
        |label: &str| format!("-----BEGIN {label}-----\nc2VjcmV0LWtleQ==\n-----END {label}-----\n");
    let mut keys: Vec<String> = [
        "PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
        "RSA PRIVATE KEY",
        "EC PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
    ]
    .iter()
    .map(|label| section(label))
    .collect();
    keys.push(pki.server_key.clone());
    for key in &keys {
        for pem in [
            format!("{}{key}", pki.server_cert),
            format!("{key}{}", pki.server_cert),
        ] {
            let err = parse_certs(&pem).expect_err("a key among certificates");
            assert_eq!(err, X509Error::PrivateKey("certificates"));
            let message = err.to_string();
            assert_eq!(message, "holds a private key; give only certificates here");
            let err = parse_crls(&pem).expect_err("a key among CRLs");
            assert_eq!(err, X509Error::PrivateKey("CRLs"));
        }
    }
    // A file of the gateway's own configuration may hold both.
    let combined = format!("{}{}", pki.server_cert, pki.server_key);
    assert_eq!(
        parse_certs_beside_key(&combined).expect("certificate beside its key"),
        [first_der(&pki.server_cert)]
    );
    assert_eq!(parse_certs(&pki.server_cert).map(|c| c.len()), Ok(1));
}

#[test]
fn an_absurd_version_number_does_not_overflow() {
    // A hostile header may carry any version: the summary saturates instead
    // of overflowing (a panic in debug builds).
    let ca = TestCa::new("Version CA", &PKCS_ECDSA_P256_SHA256);
    let leaf = ca.leaf(
        "odd",
        &["a-certificate-of-some-length.example.test"],
        Vec::new(),
        &PKCS_ECDSA_P256_SHA256,
    );
    let patched = with_version(first_der(&leaf.cert).as_ref(), u32::MAX);
    let summary = CertSummary::from_der(&CertificateDer::from(patched)).expect("parses");
    assert_eq!(summary.version, u32::MAX);
}

/// `der` (a v3 certificate whose two outer SEQUENCEs have two-byte lengths,
/// as any certificate of a few hundred bytes) with its version field
/// replaced by `version`; the signature no longer matches, which a summary
/// does not check.
fn with_version(der: &[u8], version: u32) -> Vec<u8> {
    const V3: [u8; 5] = [0xa0, 0x03, 0x02, 0x01, 0x02];
    assert_eq!(der[0..2], [0x30, 0x82], "certificate SEQUENCE");
    assert_eq!(der[4..6], [0x30, 0x82], "tbsCertificate SEQUENCE");
    assert_eq!(der[8..13], V3, "a v3 version field");
    let mut field = vec![0xa0, 0x07, 0x02, 0x05, 0x00];
    field.extend_from_slice(&version.to_be_bytes());
    let grown = field.len() - V3.len();
    let mut out = der.to_vec();
    out.splice(8..13, field);
    for at in [2, 6] {
        let len = usize::from(u16::from_be_bytes([out[at], out[at + 1]])) + grown;
        let len = u16::try_from(len).expect("still two bytes");
        out[at..at + 2].copy_from_slice(&len.to_be_bytes());
    }
    out
}
