//! RFC 3339 timestamps ⇄ milliseconds since the Unix epoch (UTC), without a date crate.
//!
//! Accepted input (RFC 3339 `date-time`, the subset every producer in the platform emits):
//!
//! ```text
//! YYYY-MM-DD ( T | t ) HH:MM:SS [ .fraction ] ( Z | z | +HH:MM | -HH:MM )
//! ```
//!
//! - The date/time separator must be `T` or `t` (a space is rejected).
//! - The fraction has one or more digits; digits beyond milliseconds are truncated
//!   (toward the past for the absolute instant, i.e. `.9999` → `.999`).
//! - Ranges are validated: month 1–12, day within the month (leap years per the Gregorian
//!   rules), hour < 24, minute < 60, second ≤ 60, offset hour < 24 and offset minute < 60.
//! - A leap second (`:60`) is accepted and clamped to `:59` (keeping the fraction), since
//!   Unix time has no leap seconds.
//! - The offset is subtracted, so the result is always UTC.
//!
//! Output ([`format_rfc3339_ms`]) is always UTC with a `Z` suffix, `YYYY-MM-DDTHH:MM:SSZ`
//! when the instant is a whole second, else `YYYY-MM-DDTHH:MM:SS.mmmZ`, for years
//! 0000–9999; instants outside that range are an error.
//!
//! Calendar arithmetic uses Howard Hinnant's `days_from_civil` / `civil_from_days`
//! (proleptic Gregorian calendar).

const MS_PER_DAY: i64 = 86_400_000;
const MAX_SHOWN: usize = 64;

/// Why a timestamp could not be parsed or formatted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// The text is not an RFC 3339 timestamp this module accepts.
    #[error("invalid RFC 3339 timestamp {text:?}: {reason}")]
    Invalid {
        /// The offending text, truncated to 64 characters.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The instant cannot be written as a year between 0000 and 9999.
    #[error("instant {ms} ms since the epoch is outside the years 0000-9999")]
    OutOfRange {
        /// The instant, in milliseconds since the Unix epoch.
        ms: i64,
    },
}

fn invalid(text: &str, reason: &'static str) -> TimeError {
    let text = match text.char_indices().nth(MAX_SHOWN) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    };
    TimeError::Invalid { text, reason }
}

/// Days since 1970-01-01 of the proleptic Gregorian date `y-m-d` (Hinnant).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Hinnant).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A cursor over the ASCII bytes of the input.
struct Cursor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, n: usize, what: &'static str) -> Result<i64, TimeError> {
        let end = self.pos + n;
        let chunk = self
            .bytes
            .get(self.pos..end)
            .ok_or_else(|| invalid(self.text, what))?;
        let mut v = 0i64;
        for b in chunk {
            if !b.is_ascii_digit() {
                return Err(invalid(self.text, what));
            }
            v = v * 10 + i64::from(b - b'0');
        }
        self.pos = end;
        Ok(v)
    }

    fn expect(&mut self, allowed: &[u8], what: &'static str) -> Result<u8, TimeError> {
        match self.bytes.get(self.pos) {
            Some(b) if allowed.contains(b) => {
                self.pos += 1;
                Ok(*b)
            }
            _ => Err(invalid(self.text, what)),
        }
    }
}

/// Parses an RFC 3339 timestamp into milliseconds since the Unix epoch (UTC).
///
/// See the module documentation for the accepted syntax. Sub-millisecond digits are
/// truncated and a leap second (`:60`) is clamped to `:59`.
pub fn parse_rfc3339_ms(s: &str) -> Result<i64, TimeError> {
    let mut c = Cursor {
        text: s,
        bytes: s.as_bytes(),
        pos: 0,
    };
    let year = c.digits(4, "expected a four-digit year")?;
    c.expect(b"-", "expected '-' after the year")?;
    let month = c.digits(2, "expected a two-digit month")?;
    c.expect(b"-", "expected '-' after the month")?;
    let day = c.digits(2, "expected a two-digit day")?;
    c.expect(b"Tt", "expected 'T' between date and time")?;
    let hour = c.digits(2, "expected a two-digit hour")?;
    c.expect(b":", "expected ':' after the hour")?;
    let minute = c.digits(2, "expected a two-digit minute")?;
    c.expect(b":", "expected ':' after the minute")?;
    let second = c.digits(2, "expected a two-digit second")?;

    let mut millis = 0i64;
    if c.bytes.get(c.pos) == Some(&b'.') {
        c.pos += 1;
        let start = c.pos;
        while let Some(b) = c.bytes.get(c.pos).filter(|b| b.is_ascii_digit()) {
            if c.pos - start < 3 {
                millis = millis * 10 + i64::from(b - b'0');
            }
            c.pos += 1;
        }
        let n = c.pos - start;
        if n == 0 {
            return Err(invalid(s, "expected digits after '.'"));
        }
        for _ in n..3 {
            millis *= 10;
        }
    }

    let offset_min = match c.expect(b"Zz+-", "expected 'Z' or a '+HH:MM'/'-HH:MM' offset")? {
        sign @ (b'+' | b'-') => {
            let sign = if sign == b'-' { -1 } else { 1 };
            let oh = c.digits(2, "expected a two-digit offset hour")?;
            c.expect(b":", "expected ':' in the offset")?;
            let om = c.digits(2, "expected a two-digit offset minute")?;
            if oh > 23 || om > 59 {
                return Err(invalid(s, "offset out of range"));
            }
            sign * (oh * 60 + om)
        }
        _ => 0,
    };
    if c.pos != c.bytes.len() {
        return Err(invalid(s, "unexpected text after the timestamp"));
    }
    if !(1..=12).contains(&month) {
        return Err(invalid(s, "month out of range"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(invalid(s, "day out of range for the month"));
    }
    if hour > 23 {
        return Err(invalid(s, "hour out of range"));
    }
    if minute > 59 {
        return Err(invalid(s, "minute out of range"));
    }
    if second > 60 {
        return Err(invalid(s, "second out of range"));
    }
    let second = second.min(59);

    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_min * 60;
    Ok(secs * 1_000 + millis)
}

/// The first millisecond of 0000-01-01 and the first of 10000-01-01.
fn supported_range() -> (i64, i64) {
    (
        days_from_civil(0, 1, 1) * MS_PER_DAY,
        days_from_civil(10_000, 1, 1) * MS_PER_DAY,
    )
}

/// The wall clock in milliseconds since the Unix epoch (0 for a clock before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The wall clock as RFC 3339 with milliseconds (for records and result timestamps).
pub fn now_rfc3339() -> String {
    format_rfc3339_ms(now_ms()).unwrap_or_default()
}

/// Formats milliseconds since the Unix epoch as an RFC 3339 UTC timestamp.
///
/// `YYYY-MM-DDTHH:MM:SSZ` for whole seconds, `YYYY-MM-DDTHH:MM:SS.mmmZ` otherwise.
/// Instants before 0000-01-01 or from 10000-01-01 on are [`TimeError::OutOfRange`].
pub fn format_rfc3339_ms(ms: i64) -> Result<String, TimeError> {
    let (lo, hi) = supported_range();
    if ms < lo || ms >= hi {
        return Err(TimeError::OutOfRange { ms });
    }
    let days = ms.div_euclid(MS_PER_DAY);
    let in_day = ms.rem_euclid(MS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let secs = in_day / 1_000;
    let millis = in_day % 1_000;
    let (hh, mm, ss) = (secs / 3_600, secs / 60 % 60, secs % 60);
    // Digit by digit rather than through `format!`: every transition that sets a timer
    // formats its due time (each field is in range, so its width is exact).
    let mut out = String::with_capacity(24);
    let mut field = |v: i64, width: usize, after: char| {
        crate::digits::push_zero_padded(&mut out, v as u64, width);
        out.push(after);
    };
    field(y, 4, '-');
    field(m, 2, '-');
    field(d, 2, 'T');
    field(hh, 2, ':');
    field(mm, 2, ':');
    if millis == 0 {
        field(ss, 2, 'Z');
    } else {
        field(ss, 2, '.');
        field(millis, 3, 'Z');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> i64 {
        parse_rfc3339_ms(s).unwrap()
    }

    fn f(ms: i64) -> String {
        format_rfc3339_ms(ms).unwrap()
    }

    /// What the formatter wrote before it wrote digits itself.
    fn with_format(ms: i64) -> String {
        let (days, in_day) = (ms.div_euclid(MS_PER_DAY), ms.rem_euclid(MS_PER_DAY));
        let (y, m, d) = civil_from_days(days);
        let (secs, millis) = (in_day / 1_000, in_day % 1_000);
        let (hh, mm, ss) = (secs / 3_600, secs / 60 % 60, secs % 60);
        if millis == 0 {
            format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
        } else {
            format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{millis:03}Z")
        }
    }

    #[test]
    fn the_digits_are_those_format_wrote_across_the_range() {
        let (lo, hi) = supported_range();
        // Both ends, whole seconds and not, and a spread of instants in between.
        let mut at = vec![lo, lo + 1, hi - 1, hi - 1_000, 0, -1, 1, 999, 1_000];
        let step = (hi - lo) / 20_011;
        at.extend((0..20_011).map(|i| lo + i * step + i % 1_000));
        for ms in at {
            assert_eq!(f(ms), with_format(ms), "{ms}");
        }
    }

    #[test]
    fn epoch() {
        assert_eq!(p("1970-01-01T00:00:00Z"), 0);
        assert_eq!(f(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn known_instants() {
        assert_eq!(p("2026-11-27T10:00:00Z"), 1_795_773_600_000);
        assert_eq!(p("2000-03-01T00:00:00Z"), 951_868_800_000);
        assert_eq!(f(1_795_773_600_000), "2026-11-27T10:00:00Z");
        assert_eq!(f(1_795_773_600_123), "2026-11-27T10:00:00.123Z");
        assert_eq!(f(1), "1970-01-01T00:00:00.001Z");
    }

    #[test]
    fn fractions_are_truncated_to_millis() {
        assert_eq!(p("1970-01-01T00:00:00.5Z"), 500);
        assert_eq!(p("1970-01-01T00:00:00.12Z"), 120);
        assert_eq!(p("1970-01-01T00:00:00.123Z"), 123);
        assert_eq!(p("1970-01-01T00:00:00.123999999Z"), 123);
        assert_eq!(p("1969-12-31T23:59:59.9999Z"), -1);
    }

    #[test]
    fn offsets_are_converted_to_utc() {
        assert_eq!(p("1970-01-01T01:00:00+01:00"), 0);
        assert_eq!(p("1969-12-31T19:30:00-04:30"), 0);
        assert_eq!(p("2026-11-27T12:00:00+02:00"), p("2026-11-27T10:00:00Z"));
        assert_eq!(p("2026-11-27t10:00:00z"), p("2026-11-27T10:00:00Z"));
        assert_eq!(p("2026-11-27T10:00:00-00:00"), p("2026-11-27T10:00:00Z"));
    }

    #[test]
    fn leap_years() {
        assert_eq!(f(p("2024-02-29T12:00:00Z")), "2024-02-29T12:00:00Z");
        assert_eq!(f(p("2000-02-29T00:00:00Z")), "2000-02-29T00:00:00Z");
        assert!(parse_rfc3339_ms("2023-02-29T00:00:00Z").is_err());
        assert!(parse_rfc3339_ms("1900-02-29T00:00:00Z").is_err());
        assert_eq!(
            p("2024-03-01T00:00:00Z") - p("2024-02-28T00:00:00Z"),
            2 * MS_PER_DAY
        );
        assert_eq!(
            p("2023-03-01T00:00:00Z") - p("2023-02-28T00:00:00Z"),
            MS_PER_DAY
        );
    }

    #[test]
    fn leap_second_is_clamped() {
        assert_eq!(p("2016-12-31T23:59:60Z"), p("2016-12-31T23:59:59Z"));
        assert_eq!(p("2016-12-31T23:59:60.5Z"), p("2016-12-31T23:59:59.500Z"));
    }

    #[test]
    fn pre_epoch() {
        assert_eq!(p("1969-12-31T23:59:59Z"), -1_000);
        assert_eq!(f(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(f(-1_000), "1969-12-31T23:59:59Z");
        assert_eq!(p("1900-01-01T00:00:00Z"), -2_208_988_800_000);
        assert_eq!(f(-2_208_988_800_000), "1900-01-01T00:00:00Z");
    }

    #[test]
    fn round_trips() {
        for s in [
            "0000-01-01T00:00:00Z",
            "0001-12-31T23:59:59.999Z",
            "1600-02-29T06:07:08.009Z",
            "1999-12-31T23:59:59Z",
            "2038-01-19T03:14:07Z",
            "2100-02-28T00:00:00.100Z",
            "9999-12-31T23:59:59.999Z",
        ] {
            assert_eq!(f(p(s)), s);
        }
        let mut ms = -62_167_219_200_000i64; // 0000-01-01
        while ms < 253_402_300_800_000 {
            assert_eq!(p(&f(ms)), ms);
            ms += 7_777_777_777;
        }
    }

    #[test]
    fn format_range() {
        let (lo, hi) = supported_range();
        assert_eq!(f(lo), "0000-01-01T00:00:00Z");
        assert_eq!(f(hi - 1), "9999-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339_ms(hi), Err(TimeError::OutOfRange { ms: hi }));
        assert!(format_rfc3339_ms(lo - 1).is_err());
        assert!(format_rfc3339_ms(i64::MAX).is_err());
        assert!(format_rfc3339_ms(i64::MIN).is_err());
    }

    #[test]
    fn invalid_inputs() {
        for s in [
            "",
            "2026-11-27",
            "2026-11-27 10:00:00Z",
            "2026-11-27T10:00:00",
            "2026-11-27T10:00Z",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-01-00T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:60:00Z",
            "2026-01-01T00:00:61Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+0100",
            "2026-01-01T00:00:00+24:00",
            "2026-01-01T00:00:00+01:60",
            "2026-01-01T00:00:00Zjunk",
            "26-01-01T00:00:00Z",
            "+2026-01-01T00:00:00Z",
            "２０２６-01-01T00:00:00Z",
        ] {
            assert!(parse_rfc3339_ms(s).is_err(), "{s:?} should be rejected");
        }
    }

    #[test]
    fn error_message_names_the_text_truncated() {
        let e = parse_rfc3339_ms("2026-13-01T00:00:00Z").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid RFC 3339 timestamp \"2026-13-01T00:00:00Z\": month out of range"
        );
        let long = "x".repeat(200);
        let TimeError::Invalid { text, .. } = parse_rfc3339_ms(&long).unwrap_err() else {
            panic!("expected Invalid");
        };
        assert_eq!(text, format!("{}…", "x".repeat(64)));
    }
}
