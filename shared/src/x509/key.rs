//! Does a private key belong to a certificate?
//!
//! rustls answers this with webpki, which refuses X.509 v1 certificates; here
//! the public key is derived from the private key with aws-lc-rs and compared
//! with the certificate's SubjectPublicKeyInfo as parsed by x509-parser.

use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{
    EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING,
    ECDSA_P384_SHA384_ASN1_SIGNING, ECDSA_P521_SHA512_ASN1_SIGNING,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::public_key::PublicKey as CertPublicKey;

use super::{parse_x509, X509Error};

const OID_ED25519: &str = "1.3.101.112";

/// The public half of a key, in a form comparable across encodings.
#[derive(Debug, PartialEq, Eq)]
enum PublicKey {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa {
        modulus: Vec<u8>,
        exponent: Vec<u8>,
    },
    /// The uncompressed SEC1 point (`04 || X || Y`); its length fixes the curve.
    Ec(Vec<u8>),
    Ed25519(Vec<u8>),
}

/// Whether `key` is the private key for `cert`'s public key. Works for X.509
/// v1 certificates too (rustls's own check refuses those).
///
/// Supports RSA, ECDSA P-256/P-384/P-521 and Ed25519. An error means the key
/// or the certificate could not be understood; `Ok(false)` means both are
/// fine but belong to different key pairs.
pub fn key_matches_cert(
    key: &PrivateKeyDer<'_>,
    cert: &CertificateDer<'_>,
) -> Result<bool, X509Error> {
    let from_key = public_key_of(key)?;
    let from_cert = public_key_in(cert)?;
    Ok(from_key == from_cert)
}

fn public_key_of(key: &PrivateKeyDer<'_>) -> Result<PublicKey, X509Error> {
    let found = match key {
        PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der()).ok().map(rsa),
        PrivateKeyDer::Sec1(der) => {
            ecdsa(|alg| EcdsaKeyPair::from_private_key_der(alg, der.secret_sec1_der()))
        }
        PrivateKeyDer::Pkcs8(der) => {
            let der = der.secret_pkcs8_der();
            RsaKeyPair::from_pkcs8(der)
                .ok()
                .map(rsa)
                .or_else(|| ecdsa(|alg| EcdsaKeyPair::from_pkcs8(alg, der)))
                .or_else(|| {
                    Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                        .ok()
                        .map(|kp| PublicKey::Ed25519(kp.public_key().as_ref().to_vec()))
                })
        }
        _ => None,
    };
    found.ok_or_else(|| {
        X509Error::Key("not an RSA, ECDSA (P-256, P-384, P-521) or Ed25519 private key".into())
    })
}

fn rsa(kp: RsaKeyPair) -> PublicKey {
    let public = kp.public_key();
    PublicKey::Rsa {
        modulus: public.modulus().big_endian_without_leading_zero().to_vec(),
        exponent: public.exponent().big_endian_without_leading_zero().to_vec(),
    }
}

/// Tries each supported curve; a key only parses under its own curve.
fn ecdsa<E>(
    parse: impl Fn(&'static EcdsaSigningAlgorithm) -> Result<EcdsaKeyPair, E>,
) -> Option<PublicKey> {
    [
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        &ECDSA_P384_SHA384_ASN1_SIGNING,
        &ECDSA_P521_SHA512_ASN1_SIGNING,
    ]
    .into_iter()
    .find_map(|alg| parse(alg).ok())
    .map(|kp| PublicKey::Ec(kp.public_key().as_ref().to_vec()))
}

fn public_key_in(cert: &CertificateDer<'_>) -> Result<PublicKey, X509Error> {
    let cert = parse_x509(cert)?;
    let spki = cert.public_key();
    let parsed = spki
        .parsed()
        .map_err(|e| X509Error::Certificate(format!("subject public key: {e}")))?;
    match parsed {
        CertPublicKey::RSA(rsa) => Ok(PublicKey::Rsa {
            modulus: strip_zeros(rsa.modulus),
            exponent: strip_zeros(rsa.exponent),
        }),
        CertPublicKey::EC(point) => Ok(PublicKey::Ec(point.data().to_vec())),
        CertPublicKey::Unknown(raw) if spki.algorithm.algorithm.to_id_string() == OID_ED25519 => {
            Ok(PublicKey::Ed25519(raw.to_vec()))
        }
        _ => Err(X509Error::Certificate(format!(
            "unsupported public key algorithm {}",
            spki.algorithm.algorithm.to_id_string()
        ))),
    }
}

fn strip_zeros(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes[start..].to_vec()
}
