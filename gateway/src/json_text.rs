//! JSON strings for log lines, written without `serde_json` (a line is
//! written straight into a buffer, field by field) and, where the text comes
//! from the configuration (a route id, an upstream address), escaped once
//! when the configuration is built rather than on every request.

use std::fmt;

/// A JSON string value, quotes included, escaped once.
#[derive(Clone, PartialEq, Eq)]
pub struct JsonText(Box<str>);

impl JsonText {
    pub fn new(text: &str) -> JsonText {
        let mut out = String::with_capacity(text.len() + 2);
        push(&mut out, text);
        JsonText(out.into())
    }

    /// The JSON value, quotes included.
    pub fn as_json(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Appends `value` as a JSON string, or `null`.
pub(crate) fn push_opt(out: &mut String, value: Option<&str>) {
    match value {
        Some(value) => push(out, value),
        None => out.push_str("null"),
    }
}

/// Appends `value` as a JSON string, quoted and escaped.
pub(crate) fn push(out: &mut String, value: &str) {
    out.push('"');
    let mut rest = value;
    // Every byte to escape is ASCII, so the split points are char boundaries.
    while let Some(at) = first_to_escape(rest.as_bytes()) {
        out.push_str(&rest[..at]);
        match rest.as_bytes()[at] {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b => {
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Where the first byte JSON must escape is (`"`, `\`, below 0x20), eight
/// bytes at a time: a byte at a time cost more than the rest of a line.
fn first_to_escape(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte below `n` (n <= 0x80); the lowest flag set
    // is exact (a borrow only flags bytes above a real one).
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH;
    let mut chunks = bytes.chunks_exact(8);
    for (index, chunk) in (&mut chunks).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let found = below(word, b' ')
            | below(word ^ (ONES * u64::from(b'"')), 1)
            | below(word ^ (ONES * u64::from(b'\\')), 1);
        if found != 0 {
            return Some(index * 8 + found.trailing_zeros() as usize / 8);
        }
    }
    let done = bytes.len() - chunks.remainder().len();
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < b' ')
        .map(|at| done + at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_byte_to_escape_is_found_in_any_position() {
        for len in 0..20 {
            let plain = "é".repeat(len / 2) + &"a".repeat(len % 2);
            assert_eq!(first_to_escape(plain.as_bytes()), None, "{plain}");
            for special in ['"', '\\', '\n', '\u{1f}', '\0'] {
                for at in 0..=plain.len() {
                    if !plain.is_char_boundary(at) {
                        continue;
                    }
                    let mut text = plain.clone();
                    text.insert(at, special);
                    text.push('"');
                    assert_eq!(first_to_escape(text.as_bytes()), Some(at), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn strings_are_escaped() {
        let text = "a\"b\\c\nd\u{1}é";
        let mut out = String::new();
        push(&mut out, text);
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, text);
        assert_eq!(JsonText::new(text).as_json(), out);
        out.clear();
        push_opt(&mut out, None);
        assert_eq!(out, "null");
    }
}
