//! Instants: RFC 3339 parsing and formatting, with microsecond precision like PostgreSQL's timestamptz.
//!
//! The domain never reads the clock; callers pass `now` in.

use crate::calendar::{civil_from_days, days_from_civil};
use std::fmt;

const MICROS_PER_SEC: i64 = 1_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// An instant in UTC, as microseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeError;

impl Timestamp {
    pub const fn from_unix_micros(micros: i64) -> Timestamp {
        Timestamp(micros)
    }

    pub const fn unix_micros(self) -> i64 {
        self.0
    }

    pub fn plus_secs(self, secs: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs.saturating_mul(MICROS_PER_SEC)))
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±hh:mm)`, `t`/`z` in either case.
    /// Fractions finer than a microsecond are truncated, as the database keeps microseconds.
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, TimeError> {
        let b = text.as_bytes();
        if b.len() < 20 {
            return Err(TimeError);
        }
        let year = digits(b, 0, 4)?;
        expect(b, 4, b'-')?;
        let month = digits(b, 5, 2)?;
        expect(b, 7, b'-')?;
        let day = digits(b, 8, 2)?;
        if !matches!(b[10], b'T' | b't') {
            return Err(TimeError);
        }
        let hour = digits(b, 11, 2)?;
        expect(b, 13, b':')?;
        let minute = digits(b, 14, 2)?;
        expect(b, 16, b':')?;
        let second = digits(b, 17, 2)?;
        let (micros, rest) = fraction(&b[19..])?;
        let offset_secs = offset(rest)?;
        if year < 1 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(TimeError);
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(TimeError);
        }
        let days = days_from_civil(year, month, day);
        let secs = days * SECS_PER_DAY + hour * 3600 + minute * 60 + second - offset_secs;
        Ok(Timestamp(secs * MICROS_PER_SEC + micros))
    }

    /// Writes `YYYY-MM-DDTHH:MM:SS.ffffffZ` into `out`.
    pub fn write_rfc3339(self, out: &mut String) {
        use std::fmt::Write;
        let secs = self.0.div_euclid(MICROS_PER_SEC);
        let micros = self.0.rem_euclid(MICROS_PER_SEC);
        let days = secs.div_euclid(SECS_PER_DAY);
        let sod = secs.rem_euclid(SECS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        let _ = write!(
            out,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            sod / 3600,
            sod % 3600 / 60,
            sod % 60
        );
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(27);
        self.write_rfc3339(&mut s);
        f.write_str(&s)
    }
}

fn digits(b: &[u8], at: usize, len: usize) -> Result<i64, TimeError> {
    let mut value = 0i64;
    for &c in b.get(at..at + len).ok_or(TimeError)? {
        if !c.is_ascii_digit() {
            return Err(TimeError);
        }
        value = value * 10 + i64::from(c - b'0');
    }
    Ok(value)
}

fn expect(b: &[u8], at: usize, want: u8) -> Result<(), TimeError> {
    if b.get(at) == Some(&want) {
        Ok(())
    } else {
        Err(TimeError)
    }
}

/// Reads an optional `.digits` and returns microseconds plus what follows it.
fn fraction(b: &[u8]) -> Result<(i64, &[u8]), TimeError> {
    if b.first() != Some(&b'.') {
        return Ok((0, b));
    }
    let count = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
    if count == 0 {
        return Err(TimeError);
    }
    let mut micros = 0i64;
    for i in 0..6 {
        let d = if i < count {
            i64::from(b[1 + i] - b'0')
        } else {
            0
        };
        micros = micros * 10 + d;
    }
    Ok((micros, &b[1 + count..]))
}

fn offset(b: &[u8]) -> Result<i64, TimeError> {
    match b {
        [b'Z' | b'z'] => Ok(0),
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let hours = digits(b, 1, 2)?;
            let minutes = digits(b, 4, 2)?;
            if hours > 23 || minutes > 59 {
                return Err(TimeError);
            }
            let secs = hours * 3600 + minutes * 60;
            Ok(if *sign == b'-' { -secs } else { secs })
        }
        _ => Err(TimeError),
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Timestamp, TimeError> {
        Timestamp::parse_rfc3339(s)
    }

    #[test]
    fn parses_utc_and_offsets() {
        assert_eq!(p("1970-01-01T00:00:00Z"), Ok(Timestamp(0)));
        assert_eq!(p("1970-01-01t00:00:01z"), Ok(Timestamp(1_000_000)));
        assert_eq!(p("1970-01-01T01:00:00+01:00"), Ok(Timestamp(0)));
        assert_eq!(p("1969-12-31T23:00:00-01:00"), Ok(Timestamp(0)));
        assert_eq!(p("1970-01-01T00:00:00.5Z"), Ok(Timestamp(500_000)));
        assert_eq!(p("1970-01-01T00:00:00.1234567Z"), Ok(Timestamp(123_456)));
        assert_eq!(
            p("2026-11-27T12:00:00Z").unwrap().to_string(),
            "2026-11-27T12:00:00.000000Z"
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "2026-11-27",
            "2026-11-27T12:00:00",
            "2026-11-27 12:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-31T00:00:00Z",
            "2026-11-27T24:00:00Z",
            "2026-11-27T12:60:00Z",
            "2026-11-27T12:00:60Z",
            "2026-11-27T12:00:00.Z",
            "2026-11-27T12:00:00+0100",
            "2026-11-27T12:00:00+24:00",
            "0000-01-01T00:00:00Z",
            "2026-11-27T12:00:00Zjunk",
            "+2026-11-27T12:00:00Z",
        ] {
            assert_eq!(p(bad), Err(TimeError), "{bad:?}");
        }
        assert!(p("2024-02-29T00:00:00Z").is_ok());
    }

    #[test]
    fn round_trips_across_eras() {
        for s in [
            "0001-01-01T00:00:00.000000Z",
            "1900-03-01T23:59:59.999999Z",
            "2000-02-29T12:34:56.000001Z",
            "9999-12-31T23:59:59.999999Z",
        ] {
            assert_eq!(p(s).unwrap().to_string(), s);
        }
    }
}
