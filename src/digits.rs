//! Zero-padded decimal numbers written straight into a string. Keys and timestamps are
//! built for every transition, and `format!("{n:016}")` runs the whole formatting
//! machinery (argument tables, padding logic) for a few digits.

/// Appends `v` in decimal, padded with leading zeros to `width` digits (a number with
/// more digits is written whole): what `format!("{v:0width$}")` writes.
pub fn push_zero_padded(out: &mut String, v: u64, width: usize) {
    // u64::MAX has 20 digits.
    let mut buf = [0u8; 20];
    let mut start = buf.len();
    let mut rest = v;
    loop {
        start -= 1;
        if let Some(slot) = buf.get_mut(start) {
            *slot = b'0' + (rest % 10) as u8;
        }
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let digits = buf.get(start..).unwrap_or_default();
    out.extend(std::iter::repeat_n('0', width.saturating_sub(digits.len())));
    out.extend(digits.iter().map(|&b| char::from(b)));
}

/// Appends `v` as 16 lowercase hex digits: what `format!("{v:016x}")` writes.
pub fn push_hex16(out: &mut String, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(char::from(HEX[((v >> (shift * 4)) & 0xf) as usize]));
    }
}

/// [`push_zero_padded`] into a new string.
pub fn zero_padded(v: u64, width: usize) -> String {
    let mut out = String::with_capacity(width.max(20));
    push_zero_padded(&mut out, v, width);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digits_are_what_format_writes() {
        let mut values = vec![
            0,
            1,
            9,
            10,
            99,
            100,
            1_795_774_500_000,
            u64::MAX - 1,
            u64::MAX,
        ];
        values.extend((0..20).map(|p| 10u64.pow(p)));
        values.extend((1..20).map(|p| 10u64.pow(p) - 1));
        for v in values {
            for width in [0, 1, 2, 3, 4, 10, 16, 20, 24] {
                assert_eq!(zero_padded(v, width), format!("{v:0width$}"), "{v} {width}");
            }
        }
        let mut s = String::from("x:");
        push_zero_padded(&mut s, 42, 4);
        assert_eq!(s, "x:0042");
    }

    #[test]
    fn the_hex_digits_are_what_format_writes() {
        for v in [0, 1, 0xab, 0xdead_beef, 1 << 40, u64::MAX - 1, u64::MAX] {
            let mut s = String::from("n:");
            push_hex16(&mut s, v);
            assert_eq!(s, format!("n:{v:016x}"));
        }
    }
}
