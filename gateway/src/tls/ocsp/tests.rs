//! Responses made by `openssl ocsp` for requests made here.

use super::*;
use crate::tls::testing::WalkthroughPki;

/// Two CAs; certificates issued by `ca`: two leaves, a delegated OCSP
/// responder and a certificate without `OCSPSigning`; every one `good` in
/// the responder's index.
const PKI: &str = r#"
ca() {
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$1.key" -out "$1.cer" -days 30 -subj "/CN=$1" -addext basicConstraints=critical,CA:TRUE
}
issue() {
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$1.key" -out "$1.csr" -subj "/CN=$1"
  printf '%s\n' "$2" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.cer -CAkey ca.key -CAcreateserial -out "$1.cer" -days 30 -extfile "$1.ext"
  serial=$(openssl x509 -in "$1.cer" -noout -serial | cut -d= -f2)
  printf 'V\t351231235959Z\t\t%s\tunknown\t/CN=%s\n' "$serial" "$1" >> index.txt
}
ca ca
ca other-ca
issue leaf subjectAltName=DNS:leaf.test
issue sibling subjectAltName=DNS:sibling.test
issue responder extendedKeyUsage=OCSPSigning
issue not-a-responder extendedKeyUsage=serverAuth
"#;

fn pki() -> WalkthroughPki {
    let pki = WalkthroughPki::scratch();
    pki.run(PKI);
    pki
}

fn target(pki: &WalkthroughPki, leaf: &str) -> OcspTarget {
    let (leaf, issuer) = (pki.cert(&format!("{leaf}.cer")), pki.cert("ca.cer"));
    OcspTarget::new(&leaf, &issuer, "http://127.0.0.1:1/").expect("target")
}

/// `openssl ocsp` answering `target`'s request, signed by `signer`, its
/// nextUpdate 5 minutes away.
fn respond(pki: &WalkthroughPki, target: &OcspTarget, signer: &str) -> Vec<u8> {
    std::fs::write(pki.path("req.der"), target.request()).expect("request");
    pki.run(&format!(
        "openssl ocsp -index index.txt -CA ca.cer -rsigner {signer}.cer -rkey {signer}.key \
         -reqin req.der -respout resp.der -nmin 5"
    ));
    std::fs::read(pki.path("resp.der")).expect("response")
}

#[test]
fn responses_are_believed_only_for_this_certificate_from_its_issuer() {
    let pki = pki();
    let leaf = target(&pki, "leaf");
    let now = SystemTime::now();

    let good = leaf
        .check(&respond(&pki, &leaf, "ca"), now)
        .expect("signed by the issuer");
    assert_eq!(good.state, CertState::Good);
    let next = good.next_update.expect("nextUpdate");
    assert!(next > now && next <= now + Duration::from_secs(301));

    let delegated = respond(&pki, &leaf, "responder");
    let delegated = leaf.check(&delegated, now).expect("a delegated responder");
    assert_eq!(delegated.state, CertState::Good);

    for signer in ["not-a-responder", "other-ca"] {
        let err = leaf
            .check(&respond(&pki, &leaf, signer), now)
            .expect_err(signer);
        assert!(matches!(err, OcspError::Signature), "{signer}: {err}");
    }

    let sibling = target(&pki, "sibling");
    let err = leaf
        .check(&respond(&pki, &sibling, "ca"), now)
        .expect_err("another certificate's answer");
    assert!(matches!(err, OcspError::NotForThisCertificate), "{err}");

    let later = now + Duration::from_secs(600);
    let err = leaf
        .check(&respond(&pki, &leaf, "ca"), later)
        .expect_err("past nextUpdate");
    assert!(matches!(err, OcspError::NotCurrent), "{err}");

    let err = leaf.check(b"not DER", now).expect_err("garbage");
    assert!(matches!(err, OcspError::Malformed(_)), "{err}");
}

#[test]
fn a_responder_error_status_is_named() {
    let pki = pki();
    // tryLater: an OCSPResponse with only its status.
    let try_later = [0x30, 0x03, 0x0a, 0x01, 0x03];
    let err = target(&pki, "leaf")
        .check(&try_later, SystemTime::now())
        .expect_err("tryLater");
    assert_eq!(err.to_string(), "the responder answered tryLater");
}
