//! Distinguished names exactly as OpenSSL prints them with
//! `XN_FLAG_RFC2253`, which is what nginx's `$ssl_client_s_dn` /
//! `$ssl_client_i_dn` and `openssl x509 -nameopt RFC2253` produce: most
//! specific RDN first, `,` between RDNs, `+` inside a multi-valued RDN,
//! OpenSSL short names, RFC 2253 escaping with every byte above 0x7f and every
//! control character written as `\XX`, and unknown attributes or values as
//! `OID=#<hex DER>`.

use std::fmt::Write;

use x509_parser::asn1_rs::Any;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// `name` in OpenSSL's RFC 2253 form.
pub(super) fn rfc2253(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            // OpenSSL's DN_REV reverses the entries, inside an RDN too.
            let avas: Vec<String> = rdn.iter().map(attribute).collect();
            avas.into_iter().rev().collect::<Vec<_>>().join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn attribute(ava: &AttributeTypeAndValue<'_>) -> String {
    let oid = ava.attr_type().to_id_string();
    let value = ava.attr_value();
    match short_name(&oid) {
        Some(name) => match string_bytes(value) {
            Some(bytes) => format!("{name}={}", escape(&bytes)),
            None => format!("{name}={}", hex_dump(value)),
        },
        None => format!("{oid}={}", hex_dump(value)),
    }
}

/// OpenSSL's short names for the attributes seen in certificate names.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.13" => "description",
        "2.5.4.15" => "businessCategory",
        "2.5.4.17" => "postalCode",
        "2.5.4.41" => "name",
        "2.5.4.42" => "GN",
        "2.5.4.43" => "initials",
        "2.5.4.44" => "generationQualifier",
        "2.5.4.45" => "x500UniqueIdentifier",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.65" => "pseudonym",
        "2.5.4.97" => "organizationIdentifier",
        "1.2.840.113549.1.9.1" => "emailAddress",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.3.6.1.4.1.311.60.2.1.1" => "jurisdictionL",
        "1.3.6.1.4.1.311.60.2.1.2" => "jurisdictionST",
        "1.3.6.1.4.1.311.60.2.1.3" => "jurisdictionC",
        _ => return None,
    })
}

/// The value as UTF-8 bytes, for the string types OpenSSL prints as text
/// (its `tag2nbyte` table); `None` means "print as a hex dump".
fn string_bytes(value: &Any<'_>) -> Option<Vec<u8>> {
    if value.header.class() as u8 != 0 {
        return None;
    }
    let data = value.data;
    match value.tag().0 {
        // UTF8String: OpenSSL passes the bytes through as they are.
        12 => Some(data.to_vec()),
        // Numeric, Printable, T61, IA5, UTCTime, GeneralizedTime, Visible:
        // one byte per character, read as Latin-1.
        18 | 19 | 20 | 22 | 23 | 24 | 26 => Some(chars_to_utf8(data.iter().map(|&b| u32::from(b)))),
        // UniversalString: UCS-4.
        28 => ucs(data, 4),
        // BMPString: UCS-2.
        30 => ucs(data, 2),
        _ => None,
    }
}

/// Big-endian `width`-byte code units; `None` when the length is not a
/// multiple of `width`.
fn ucs(data: &[u8], width: usize) -> Option<Vec<u8>> {
    let units = data.chunks_exact(width);
    if !units.remainder().is_empty() {
        return None;
    }
    Some(chars_to_utf8(units.map(|unit| {
        unit.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
    })))
}

fn chars_to_utf8(chars: impl Iterator<Item = u32>) -> Vec<u8> {
    chars
        .map(|c| char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect::<String>()
        .into_bytes()
}

/// RFC 2253 escaping as OpenSSL's `do_esc_char` with `ASN1_STRFLGS_RFC2253`.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let last = bytes.len().saturating_sub(1);
    for (i, &b) in bytes.iter().enumerate() {
        let at_edge_escape = (i == 0 && matches!(b, b' ' | b'#')) || (i == last && b == b' ');
        if at_edge_escape || matches!(b, b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';') {
            out.push('\\');
            out.push(char::from(b));
        } else if !(0x20..0x7f).contains(&b) {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\{b:02X}");
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// `#` and the uppercase hex of the value's DER encoding.
fn hex_dump(value: &Any<'_>) -> String {
    let mut der = Vec::with_capacity(value.data.len() + 6);
    let tag = value.tag().0;
    let class = value.header.class() as u8;
    let constructed = if value.header.is_constructed() {
        0x20
    } else {
        0
    };
    if tag < 31 {
        // `tag < 31`, so the cast is lossless.
        der.push((class << 6) | constructed | tag as u8);
    } else {
        der.push((class << 6) | constructed | 0x1f);
        der.extend(base128(tag));
    }
    der.extend(der_length(value.data.len()));
    der.extend_from_slice(value.data);
    format!("#{}", hex::encode_upper(der))
}

fn base128(mut n: u32) -> Vec<u8> {
    let mut out = vec![(n & 0x7f) as u8];
    n >>= 7;
    while n > 0 {
        out.push(0x80 | (n & 0x7f) as u8);
        n >>= 7;
    }
    out.reverse();
    out
}

fn der_length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes = len.to_be_bytes();
    let start = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len() - 1);
    let mut out = vec![0x80 | (bytes.len() - start) as u8];
    out.extend_from_slice(&bytes[start..]);
    out
}
