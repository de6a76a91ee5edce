//! Binary encodings of the domain's types for PostgreSQL parameters and results.

use crate::domain::money::Money;
use crate::domain::time::Timestamp;
use bytes::BytesMut;
use postgres_types::{accepts, to_sql_checked, FromSql, IsNull, ToSql, Type};
use rust_decimal::Decimal;
use std::error::Error;

type BoxError = Box<dyn Error + Sync + Send>;

/// PostgreSQL counts timestamps from 2000-01-01T00:00:00Z; the domain counts from 1970.
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800 * 1_000_000;

impl ToSql for Timestamp {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let micros = self.unix_micros() - PG_EPOCH_OFFSET_MICROS;
        postgres_protocol::types::timestamp_to_sql(micros, out);
        Ok(IsNull::No)
    }

    accepts!(TIMESTAMPTZ);
    to_sql_checked!();
}

impl<'a> FromSql<'a> for Timestamp {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Timestamp, BoxError> {
        let micros = postgres_protocol::types::timestamp_from_sql(raw)?;
        let unix = micros
            .checked_add(PG_EPOCH_OFFSET_MICROS)
            .ok_or("timestamp out of range")?;
        Ok(Timestamp::from_unix_micros(unix))
    }

    accepts!(TIMESTAMPTZ);
}

impl ToSql for Money {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        self.to_decimal().to_sql(ty, out)
    }

    accepts!(NUMERIC);
    to_sql_checked!();
}

impl<'a> FromSql<'a> for Money {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Money, BoxError> {
        let value = Decimal::from_sql(ty, raw)?;
        Ok(Money::from_decimal(value).ok_or("amount is not whole cents")?)
    }

    accepts!(NUMERIC);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_round_trip() {
        let t = Timestamp::parse_rfc3339("2026-11-27T12:30:00.000001Z").unwrap();
        let mut buf = BytesMut::new();
        t.to_sql(&Type::TIMESTAMPTZ, &mut buf).unwrap();
        assert_eq!(Timestamp::from_sql(&Type::TIMESTAMPTZ, &buf).unwrap(), t);
        let mut epoch = BytesMut::new();
        Timestamp::parse_rfc3339("2000-01-01T00:00:00Z")
            .unwrap()
            .to_sql(&Type::TIMESTAMPTZ, &mut epoch)
            .unwrap();
        assert_eq!(&epoch[..], &[0u8; 8]);
    }

    #[test]
    fn money_round_trip() {
        let m = Money::parse("123456789012.34").unwrap();
        let mut buf = BytesMut::new();
        m.to_sql(&Type::NUMERIC, &mut buf).unwrap();
        assert_eq!(Money::from_sql(&Type::NUMERIC, &buf).unwrap(), m);
    }
}
