//! Decimal numbers appended to a line without `core::fmt`, whose machinery
//! (padding, dynamic dispatch) cost more than the rest of a line's numbers.

/// Appends `n` in decimal.
pub(super) fn push_u64(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// "000" to "999", three digits each: a fixed-width field (a status,
/// milliseconds, microseconds) is one or two slices of it, copied with a
/// known length.
const TRIPLES: [u8; 3000] = {
    let mut digits = [0u8; 3000];
    let mut n = 0;
    while n < 1000 {
        digits[3 * n] = b'0' + (n / 100) as u8;
        digits[3 * n + 1] = b'0' + (n / 10 % 10) as u8;
        digits[3 * n + 2] = b'0' + (n % 10) as u8;
        n += 1;
    }
    digits
};

static TRIPLES_TEXT: &str = match std::str::from_utf8(&TRIPLES) {
    Ok(text) => text,
    Err(_) => panic!("digits are ASCII"),
};

/// The last three decimal digits of `n`, zero-padded.
pub(super) fn triple(n: u32) -> &'static str {
    let at = (n % 1000) as usize * 3;
    &TRIPLES_TEXT[at..at + 3]
}

/// Appends the last six decimal digits of `n`, zero-padded.
pub(super) fn push_six(out: &mut String, n: u32) {
    out.push_str(triple(n / 1000));
    out.push_str(triple(n));
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
            let n = (n % 1_000_000) as u32;
            assert_eq!(triple(n), format!("{:03}", n % 1000));
            out.clear();
            push_six(&mut out, n);
            assert_eq!(out, format!("{n:06}"));
        }
    }
}
