//! Decimal numbers appended to a line without `core::fmt`, whose machinery
//! (padding, dynamic dispatch) cost more than the rest of a line's numbers.

/// Appends `n` in decimal.
pub(super) fn push_u64(out: &mut String, n: u64) {
    let mut buf = [0u8; 20];
    let start = write_digits(&mut buf, n);
    push_ascii(out, &buf[start..]);
}

/// Appends `n` in decimal, left-padded with zeros to `width` digits (at most
/// 20); wider numbers are written whole.
pub(super) fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let start = write_digits(&mut buf, n).min(buf.len() - width.min(buf.len()));
    push_ascii(out, &buf[start..]);
}

/// Writes the digits of `n` at the end of `buf`; returns where they start.
fn write_digits(buf: &mut [u8; 20], mut n: u64) -> usize {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return at;
        }
    }
}

/// Pushed as chars: ASCII digits need no UTF-8 check.
fn push_ascii(out: &mut String, digits: &[u8]) {
    out.reserve(digits.len());
    out.extend(digits.iter().map(|&digit| char::from(digit)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_core_fmt() {
        for n in [0, 7, 10, 999, 1_000, 123_456, u64::from(u32::MAX), u64::MAX] {
            let mut out = String::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string());
            for width in [0, 3, 6, 20] {
                out.clear();
                push_padded(&mut out, n, width);
                assert_eq!(out, format!("{n:0width$}"));
            }
        }
    }
}
