//! Certificates as request headers carry them, both ways: what a front
//! proxy sends (PEM on one line, percent-encoded PEM, base64 DER) and what
//! the upstream receives, decoded back to the exact DER bytes so a test can
//! compare them with the certificate the client presented.

use anyhow::{bail, Context};
use x509_parser::pem::parse_x509_pem;

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// The DER of every certificate in PEM `text`, in order. The base64 of a
/// block may be split by newlines, by spaces (a header is one line) or not
/// at all; anything that is not strict base64 is an error.
pub fn pem_ders(text: &str) -> crate::Result<Vec<Vec<u8>>> {
    let mut ders = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let body = &rest[start + BEGIN.len()..];
        let end = body
            .find(END)
            .with_context(|| format!("a PEM block has no END line: {text:?}"))?;
        ders.push(base64_der(&body[..end])?);
        rest = &body[end + END.len()..];
    }
    if ders.is_empty() {
        bail!("no PEM certificate in {text:?}");
    }
    Ok(ders)
}

/// The DER of one certificate in base64 (whitespace ignored). Decoded by
/// x509-parser's strict decoder, which the text is rewrapped for.
pub fn base64_der(encoded: &str) -> crate::Result<Vec<u8>> {
    let compact: String = encoded.split_whitespace().collect();
    let pem = format!("{BEGIN}\n{compact}\n{END}\n");
    let (_, pem) = parse_x509_pem(pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("not base64 DER ({e}): {encoded:?}"))?;
    Ok(pem.contents)
}

/// The DER of an RFC 8941 byte sequence (`:base64:`, RFC 9440's
/// `Client-Cert`); `Client-Cert-Chain` lists several, `, `-separated.
pub fn byte_sequence_ders(value: &str) -> crate::Result<Vec<Vec<u8>>> {
    value
        .split(',')
        .map(|item| {
            let item = item.trim();
            let inner = item
                .strip_prefix(':')
                .and_then(|rest| rest.strip_suffix(':'))
                .with_context(|| format!("not an RFC 8941 byte sequence: {item:?}"))?;
            base64_der(inner)
        })
        .collect()
}

/// The base64 of the first certificate in `cert_pem`, on one line: how a
/// front proxy sends DER in a header.
pub fn base64_of_pem(cert_pem: &str) -> String {
    let body = cert_pem
        .split(BEGIN)
        .nth(1)
        .and_then(|rest| rest.split(END).next())
        .expect("a PEM certificate");
    body.split_whitespace().collect()
}

/// `text` with every byte but RFC 3986's unreserved ones percent-encoded,
/// as nginx's `$ssl_client_escaped_cert`.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `%XX` sequences decoded; a `%` not followed by two hex digits, or bytes
/// that are not UTF-8, are an error.
pub fn percent_decode(text: &str) -> crate::Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .with_context(|| format!("bad percent-encoding at byte {i}: {text:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).context("percent-decoded text is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_pki::ClientCa;

    #[test]
    fn every_encoding_decodes_to_the_same_der() {
        let ca = ClientCa::new("Text CA");
        let leaf = ca.client("text", "Org").cert_pem;
        let der = pem_ders(&leaf).unwrap();
        assert_eq!(der.len(), 1);
        let one_line = leaf.replace('\n', " ");
        let escaped = percent_encode(&leaf);
        assert!(
            !escaped.contains('\n') && escaped.contains("%0A"),
            "{escaped}"
        );
        let b64 = base64_of_pem(&leaf);
        assert_eq!(pem_ders(&one_line).unwrap(), der);
        assert_eq!(pem_ders(&percent_decode(&escaped).unwrap()).unwrap(), der);
        assert_eq!(vec![base64_der(&b64).unwrap()], der);
        let chain = format!(":{b64}:, :{}:", base64_of_pem(&ca.cert_pem));
        let ders = byte_sequence_ders(&chain).unwrap();
        assert_eq!(ders[0], der[0]);
        assert_eq!(ders[1], pem_ders(&ca.cert_pem).unwrap()[0]);
    }

    #[test]
    fn refuses_damaged_text() {
        assert!(pem_ders("no certificate").is_err());
        assert!(pem_ders(&format!("{BEGIN}AAAA")).is_err());
        assert!(base64_der("not base64!").is_err());
        assert!(byte_sequence_ders("AAAA").is_err());
        assert!(percent_decode("%G1").is_err());
        assert!(percent_decode("%4").is_err());
        assert!(percent_decode("%+1").is_err());
    }
}
