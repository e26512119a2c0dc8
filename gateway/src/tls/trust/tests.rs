use rustls_pki_types::CertificateRevocationListDer;
use shared::resource::{CrlMode, UnknownStatus};
use shared::x509::{parse_crls, CrlSummary};

use super::*;
use crate::tls::testing::{Ca, Identity, WalkthroughPki};

fn algs() -> WebPkiSupportedAlgorithms {
    crate::tls::provider().signature_verification_algorithms
}

fn revocation(
    crls: Vec<CertificateRevocationListDer<'static>>,
    mode: CrlMode,
    unknown_status: UnknownStatus,
) -> Revocation {
    Revocation {
        summaries: crls
            .iter()
            .map(|crl| CrlSummary::from_der(crl).unwrap())
            .collect(),
        crls,
        mode,
        unknown_status,
    }
}

fn yesterday() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() - time::Duration::days(1)
}

fn verify(trust: &TrustSet, identity: &Identity) -> Result<(), ClientCertError> {
    let (leaf, chain) = identity.chain.split_first().unwrap();
    trust.verify(leaf, chain, UnixTime::now()).map(drop)
}

#[test]
fn a_crl_refuses_the_certificates_it_lists_only() {
    let ca = Ca::new("CRL CA");
    let (revoked, fine) = (ca.client("revoked"), ca.client("fine"));
    let crl = ca.crl(&[&revoked], yesterday());
    for mode in [CrlMode::Strict, CrlMode::LeafOnly] {
        let rev = revocation(vec![crl.clone()], mode, UnknownStatus::Deny);
        let trust = TrustSet::new(&[ca.cert()], 1, Some(&rev), None, algs()).unwrap();
        assert_eq!(
            verify(&trust, &revoked),
            Err(ClientCertError::Revoked),
            "{mode:?}"
        );
        assert_eq!(verify(&trust, &fine), Ok(()), "{mode:?}");
    }
}

#[test]
fn strict_checks_the_whole_chain_and_the_crl_dates() {
    let root = Ca::new("Root");
    let issuing = root.intermediate("Issuing");
    let client = issuing.client("chained").sending(&issuing.cert());
    let issuing_crl = issuing.crl(&[], yesterday());
    let check = |crls: Vec<_>, mode, unknown| {
        let rev = revocation(crls, mode, unknown);
        verify(
            &TrustSet::new(&[root.cert()], 2, Some(&rev), None, algs()).unwrap(),
            &client,
        )
    };
    // The root published no CRL covering the intermediate.
    assert_eq!(
        check(
            vec![issuing_crl.clone()],
            CrlMode::Strict,
            UnknownStatus::Deny
        ),
        Err(ClientCertError::UnknownRevocationStatus)
    );
    assert_eq!(
        check(
            vec![issuing_crl.clone()],
            CrlMode::LeafOnly,
            UnknownStatus::Deny
        ),
        Ok(())
    );
    assert_eq!(
        check(
            vec![issuing_crl.clone()],
            CrlMode::Strict,
            UnknownStatus::Allow
        ),
        Ok(())
    );
    let root_crl = root.crl(&[], yesterday());
    assert_eq!(
        check(
            vec![issuing_crl, root_crl.clone()],
            CrlMode::Strict,
            UnknownStatus::Deny
        ),
        Ok(())
    );
    // A CRL past its nextUpdate: refused in strict mode only.
    let stale = issuing.crl(&[], yesterday() - time::Duration::days(60));
    assert_eq!(
        check(
            vec![stale.clone(), root_crl.clone()],
            CrlMode::Strict,
            UnknownStatus::Deny
        ),
        Err(ClientCertError::CrlExpired)
    );
    assert_eq!(
        check(
            vec![stale, root_crl],
            CrlMode::LeafOnly,
            UnknownStatus::Deny
        ),
        Ok(())
    );
}

#[test]
fn a_crl_signed_by_an_impostor_is_not_believed() {
    let ca = Ca::new("Real CA");
    let impostor = Ca::new("Real CA");
    let client = ca.client("client");
    let forged = impostor.crl(&[&client], yesterday());
    let rev = revocation(vec![forged], CrlMode::LeafOnly, UnknownStatus::Deny);
    let trust = TrustSet::new(&[ca.cert()], 1, Some(&rev), None, algs()).unwrap();
    assert_eq!(verify(&trust, &client), Err(ClientCertError::CrlSignature));
}

/// Revokes `client.cer` of the walkthrough PKI with `openssl ca`, and issues
/// a second v1 client, `client2.cer`, that stays valid.
fn walkthrough_crl(pki: &WalkthroughPki) -> CertificateRevocationListDer<'static> {
    const SCRIPT: &str = r#"
printf '[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 30\n' > ca.cnf
: > index.txt
echo 01 > crlnumber
openssl req -new -sha256 -key client.key -out client2.csr -subj "/CN=CLIENT2"
openssl x509 -req -days 36500 -sha256 -CA ca.cer -CAkey ca.key -CAserial ca.srl -in client2.csr -out client2.cer
openssl ca -config ca.cnf -keyfile ca.key -cert ca.cer -revoke client.cer
openssl ca -config ca.cnf -keyfile ca.key -cert ca.cer -gencrl -out crl.pem
"#;
    pki.run(SCRIPT);
    let pem = std::fs::read_to_string(pki.path("crl.pem")).unwrap();
    parse_crls(&pem).unwrap().remove(0)
}

#[test]
fn v1_leaves_are_checked_against_the_anchors_crls() {
    let pki = WalkthroughPki::new();
    let crl = walkthrough_crl(&pki);
    let v1 = |file: &str| pki.identity(file, "client.key");
    let rev = revocation(vec![crl], CrlMode::Strict, UnknownStatus::Deny);
    let trust = TrustSet::new(&[pki.cert("ca.cer")], 1, Some(&rev), None, algs()).unwrap();
    assert_eq!(
        verify(&trust, &v1("client.cer")),
        Err(ClientCertError::Revoked)
    );
    assert_eq!(verify(&trust, &v1("client2.cer")), Ok(()));
    // No CRL of the issuer: the status is unknown.
    let other = Ca::new("Other").crl(&[], yesterday());
    let unknown = revocation(vec![other.clone()], CrlMode::Strict, UnknownStatus::Deny);
    let trust = TrustSet::new(&[pki.cert("ca.cer")], 1, Some(&unknown), None, algs()).unwrap();
    assert_eq!(
        verify(&trust, &v1("client2.cer")),
        Err(ClientCertError::UnknownRevocationStatus)
    );
    let allowed = revocation(vec![other], CrlMode::Strict, UnknownStatus::Allow);
    let trust = TrustSet::new(&[pki.cert("ca.cer")], 1, Some(&allowed), None, algs()).unwrap();
    assert_eq!(verify(&trust, &v1("client2.cer")), Ok(()));
}

#[test]
fn refuses_unusable_configurations() {
    assert!(matches!(
        TrustSet::new(&[], 1, None, None, algs()),
        Err(TrustError::NoAnchor)
    ));
    let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
    let err = TrustSet::new(&[garbage], 1, None, None, algs())
        .err()
        .unwrap();
    assert!(matches!(
        err,
        TrustError::Anchor {
            index: 0,
            source: AnchorError::Webpki(_)
        }
    ));
    assert!(err
        .to_string()
        .starts_with("CA certificate #0 is not a usable trust anchor: "));
}
