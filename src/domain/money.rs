//! Money: exact decimal amounts with two fractional digits, parsed from their text, never through a float.

use rust_decimal::Decimal;
use std::fmt;

/// The largest amount API.md allows: it fits NUMERIC(14,2) with room for nothing more.
pub const MAX_MONEY_CENTS: i64 = 99_999_999_999_999;

/// Integer digits allowed before the point once leading zeros are gone: 999999999999 has twelve.
const MAX_INTEGER_DIGITS: usize = 12;

/// A positive amount of money, held as whole cents so comparisons and sums are exact.
///
/// Sums (`min_next_bid`) may pass `MAX_MONEY_CENTS`; only parsed input is bounded by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoneyError {
    /// Not of the form `digits[.d[d]]`.
    Malformed,
    /// Zero, or above `MAX_MONEY_CENTS`.
    OutOfRange,
}

impl Money {
    pub const fn from_cents(cents: i64) -> Money {
        Money(cents)
    }

    pub const fn cents(self) -> i64 {
        self.0
    }

    /// Parses the accepted text forms of API.md: `7`, `7.5`, `7.50`; the value must be in (0, max].
    pub fn parse(text: &str) -> Result<Money, MoneyError> {
        let (int_part, frac_part) = match text.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (text, None),
        };
        if int_part.is_empty() || !int_part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MoneyError::Malformed);
        }
        let frac_cents = match frac_part {
            None => 0,
            Some(f) => parse_fraction(f)?,
        };
        let significant = int_part.trim_start_matches('0');
        if significant.len() > MAX_INTEGER_DIGITS {
            return Err(MoneyError::OutOfRange);
        }
        let units: i64 = if significant.is_empty() {
            0
        } else {
            significant.parse().map_err(|_| MoneyError::Malformed)?
        };
        let cents = units * 100 + frac_cents;
        if cents <= 0 || cents > MAX_MONEY_CENTS {
            return Err(MoneyError::OutOfRange);
        }
        Ok(Money(cents))
    }

    /// The sum used for `min_next_bid`; saturates instead of wrapping (it cannot reach i64 bounds anyway).
    pub fn saturating_add(self, other: Money) -> Money {
        Money(self.0.saturating_add(other.0))
    }

    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.0, 2)
    }

    /// Converts a value read from a NUMERIC(14,2) column; `None` when it has more than two decimals or
    /// does not fit, which the schema rules out.
    pub fn from_decimal(value: Decimal) -> Option<Money> {
        let scaled = value.checked_mul(Decimal::ONE_HUNDRED)?;
        if !scaled.fract().is_zero() {
            return None;
        }
        i64::try_from(scaled.trunc()).ok().map(Money)
    }
}

fn parse_fraction(frac: &str) -> Result<i64, MoneyError> {
    let bytes = frac.as_bytes();
    if bytes.is_empty() || bytes.len() > 2 || !bytes.iter().all(|b| b.is_ascii_digit()) {
        return Err(MoneyError::Malformed);
    }
    let first = i64::from(bytes[0] - b'0') * 10;
    let second = bytes.get(1).map_or(0, |b| i64::from(b - b'0'));
    Ok(first + second)
}

impl fmt::Display for Money {
    /// Always two fractional digits, as responses require.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(Money::parse("7"), Ok(Money(700)));
        assert_eq!(Money::parse("7.5"), Ok(Money(750)));
        assert_eq!(Money::parse("7.50"), Ok(Money(750)));
        assert_eq!(Money::parse("0.01"), Ok(Money(1)));
        assert_eq!(Money::parse("007.05"), Ok(Money(705)));
        assert_eq!(Money::parse("12.50").unwrap().to_string(), "12.50");
    }

    #[test]
    fn rejects_other_forms() {
        for bad in [
            "", "12.", ".5", "1e3", "1E3", "-1", "+1", " 1", "1 ", "12.500", "1,5", "1.2.3",
            "0x10", "١", "1.-5", "NaN", "Infinity",
        ] {
            assert_eq!(Money::parse(bad), Err(MoneyError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn bounds_at_and_past_the_limits() {
        assert_eq!(Money::parse("0"), Err(MoneyError::OutOfRange));
        assert_eq!(Money::parse("0.00"), Err(MoneyError::OutOfRange));
        assert_eq!(Money::parse("999999999999.99"), Ok(Money(MAX_MONEY_CENTS)));
        assert_eq!(Money::parse("1000000000000"), Err(MoneyError::OutOfRange));
        assert_eq!(Money::parse("999999999999.991"), Err(MoneyError::Malformed));
        assert_eq!(
            Money::parse("00000000000000000000000000000000000001.00"),
            Ok(Money(100))
        );
        assert_eq!(
            Money::parse("99999999999999999999999999999999999999"),
            Err(MoneyError::OutOfRange)
        );
    }

    #[test]
    fn formats_with_two_decimals() {
        assert_eq!(Money(1).to_string(), "0.01");
        assert_eq!(Money(100).to_string(), "1.00");
        assert_eq!(Money(MAX_MONEY_CENTS).to_string(), "999999999999.99");
        let above = Money(MAX_MONEY_CENTS).saturating_add(Money(500));
        assert_eq!(above.to_string(), "1000000000004.99");
    }

    #[test]
    fn decimal_round_trip() {
        let m = Money(12345);
        assert_eq!(m.to_decimal().to_string(), "123.45");
        assert_eq!(Money::from_decimal(m.to_decimal()), Some(m));
        assert_eq!(Money::from_decimal(Decimal::new(1, 3)), None);
        assert_eq!(Money::from_decimal(Decimal::new(5, 0)), Some(Money(500)));
    }
}
