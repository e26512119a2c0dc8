//! Decimal numbers appended to a line without `core::fmt`, whose machinery
//! (padding, dynamic dispatch) cost more than the rest of a line's numbers.

/// Appends `n` in decimal.
pub(super) fn push_u64(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// Appends `n` in decimal, left-padded with zeros to `width` digits (at
/// most 20); wider numbers are written whole.
pub(super) fn push_padded(out: &mut String, n: u64, width: usize) {
    const ZEROS: &str = "00000000000000000000";
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(n);
    let pad = width.saturating_sub(digits.len()).min(ZEROS.len());
    out.push_str(&ZEROS[..pad]);
    out.push_str(digits);
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
