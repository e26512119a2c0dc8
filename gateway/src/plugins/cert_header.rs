//! Client certificates passed in a request header by a front proxy that
//! terminated TLS itself (WSO2 APK's `X-WSO2-CLIENT-CERTIFICATE`, nginx's
//! `$ssl_client_escaped_cert`, ...), in one of three encodings:
//!
//! * `pem`: PEM text; a header is one line, so the line breaks may be
//!   spaces, tabs or missing altogether. Several certificates (the leaf,
//!   then its intermediates) may follow each other; `client-cert-auth`
//!   refuses a header whose later certificates are not all CAs.
//! * `url-pem`: the same, percent-encoded.
//! * `base64-der`: the DER of one certificate, in base64.
//!
//! The header value comes from the network: it is bounded, and anything
//! malformed is an error, never a panic.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use percent_encoding::percent_decode;
use rustls_pki_types::CertificateDer;
use shared::plugins::client_cert_auth::CertEncoding;
use thiserror::Error;

/// Longest header value decoded: a leaf and a few intermediates.
const MAX_HEADER_LEN: usize = 64 * 1024;
/// Most certificates read from one header.
const MAX_CERTS: usize = 8;

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// Why a header did not hold a certificate.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum CertHeaderError {
    #[error("the header is longer than {MAX_HEADER_LEN} bytes")]
    TooLong,
    #[error("the header holds no certificate")]
    Empty,
    #[error("the header holds more than {MAX_CERTS} certificates")]
    TooMany,
    #[error("a PEM block has no END line")]
    Unterminated,
    #[error("the header is not text")]
    NotText,
    #[error("invalid percent-encoding")]
    Percent,
    #[error("invalid base64")]
    Base64,
}

/// The certificates in `value`, leaf first.
pub(crate) fn decode(
    value: &[u8],
    encoding: CertEncoding,
) -> Result<Vec<CertificateDer<'static>>, CertHeaderError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(CertHeaderError::TooLong);
    }
    match encoding {
        CertEncoding::Pem => {
            pem_blocks(std::str::from_utf8(value).map_err(|_| CertHeaderError::NotText)?)
        }
        CertEncoding::UrlPem => {
            let decoded = percent_decode(value)
                .decode_utf8()
                .map_err(|_| CertHeaderError::Percent)?;
            pem_blocks(&decoded)
        }
        CertEncoding::Base64Der => Ok(vec![base64_der(value)?]),
    }
}

fn pem_blocks(text: &str) -> Result<Vec<CertificateDer<'static>>, CertHeaderError> {
    let mut certs = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        if certs.len() == MAX_CERTS {
            return Err(CertHeaderError::TooMany);
        }
        let body = &rest[start + BEGIN.len()..];
        let end = body.find(END).ok_or(CertHeaderError::Unterminated)?;
        certs.push(base64_der(&body.as_bytes()[..end])?);
        rest = &body[end + END.len()..];
    }
    if certs.is_empty() {
        return Err(CertHeaderError::Empty);
    }
    Ok(certs)
}

/// Base64 with any whitespace (line breaks turned into spaces) ignored.
fn base64_der(encoded: &[u8]) -> Result<CertificateDer<'static>, CertHeaderError> {
    let compact: Vec<u8> = encoded
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return Err(CertHeaderError::Empty);
    }
    STANDARD
        .decode(&compact)
        .map(CertificateDer::from)
        .map_err(|_| CertHeaderError::Base64)
}

#[cfg(test)]
mod tests {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

    use super::*;
    use crate::plugins::testing::Pki;

    #[test]
    fn decodes_every_encoding() {
        let pki = Pki::new();
        let leaf = pki.client("client1");
        let chain = format!("{}{}", leaf.pem, pki.ca.pem);
        let one_line = chain.replace('\n', " ");
        let squashed = chain.replace('\n', "");
        for pem in [&chain, &one_line, &squashed] {
            let certs = decode(pem.as_bytes(), CertEncoding::Pem).unwrap();
            assert_eq!(certs, [leaf.der.clone(), pki.ca.der.clone()]);
        }
        let escaped = utf8_percent_encode(&leaf.pem, NON_ALPHANUMERIC).to_string();
        assert_eq!(
            decode(escaped.as_bytes(), CertEncoding::UrlPem).unwrap(),
            std::slice::from_ref(&leaf.der)
        );
        let b64 = STANDARD.encode(leaf.der.as_ref());
        assert_eq!(
            decode(b64.as_bytes(), CertEncoding::Base64Der).unwrap(),
            std::slice::from_ref(&leaf.der)
        );
    }

    #[test]
    fn refuses_malformed_values() {
        let cases: [(&[u8], CertEncoding, CertHeaderError); 7] = [
            (b"", CertEncoding::Pem, CertHeaderError::Empty),
            (b"hello", CertEncoding::Pem, CertHeaderError::Empty),
            (
                b"-----BEGIN CERTIFICATE-----AAAA",
                CertEncoding::Pem,
                CertHeaderError::Unterminated,
            ),
            (
                b"-----BEGIN CERTIFICATE-----!!-----END CERTIFICATE-----",
                CertEncoding::Pem,
                CertHeaderError::Base64,
            ),
            (b"%ff%fe", CertEncoding::UrlPem, CertHeaderError::Percent),
            (
                b"not base64!",
                CertEncoding::Base64Der,
                CertHeaderError::Base64,
            ),
            (b"   ", CertEncoding::Base64Der, CertHeaderError::Empty),
        ];
        for (value, encoding, expected) in cases {
            assert_eq!(decode(value, encoding), Err(expected), "{value:?}");
        }
        let huge = vec![b'A'; MAX_HEADER_LEN + 1];
        assert_eq!(
            decode(&huge, CertEncoding::Base64Der),
            Err(CertHeaderError::TooLong)
        );
        let block = "-----BEGIN CERTIFICATE-----AAAA-----END CERTIFICATE-----";
        let many = block.repeat(MAX_CERTS + 1);
        assert_eq!(
            decode(many.as_bytes(), CertEncoding::Pem),
            Err(CertHeaderError::TooMany)
        );
    }
}
