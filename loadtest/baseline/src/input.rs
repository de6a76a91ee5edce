//! Request decoding. Fields are kept as raw JSON text until each is validated, so that money is
//! taken exactly from what the client wrote and never passes through a float.

use std::collections::HashMap;
use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, StatusCode};
use chrono::{DateTime, Timelike, Utc};
use rust_decimal::Decimal;
use serde_json::value::RawValue;

use crate::error::ApiError;

pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Largest accepted amount; NUMERIC(14,2) holds it exactly.
pub fn max_money() -> Decimal {
    Decimal::new(99_999_999_999_999, 2)
}

/// A missing `Content-Type` counts as JSON; `application/json` and `application/*+json` are JSON.
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let value = value.to_str().map_err(|_| ApiError::UnsupportedMediaType)?;
    let mime = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let is_json = mime == "application/json"
        || mime
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json") && !sub.contains(['/', ' ']));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

/// The top-level members of a JSON object body, each as raw JSON text.
pub struct Fields(HashMap<String, Box<RawValue>>);

impl Fields {
    pub fn parse(
        headers: &HeaderMap,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<Fields, ApiError> {
        require_json(headers)?;
        let body = body.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest("the request body could not be read")
            }
        })?;
        match body.iter().find(|b| !b.is_ascii_whitespace()) {
            None => return Err(ApiError::InvalidJson("the request body is empty")),
            Some(b'{') => {}
            Some(_) => {
                return Err(ApiError::InvalidJson(
                    "the request body must be a JSON object",
                ))
            }
        }
        serde_json::from_slice(&body)
            .map(Fields)
            .map_err(|_| ApiError::InvalidJson("the request body is not valid JSON"))
    }

    /// The member's raw text; `null` counts as absent.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(|v| v.get())
            .filter(|text| *text != "null")
    }

    fn required(&self, name: &'static str) -> Result<&str, ApiError> {
        self.raw(name)
            .ok_or_else(|| ApiError::field(name, "is required"))
    }

    pub fn id(&self, name: &'static str) -> Result<i64, ApiError> {
        parse_id(self.required(name)?).ok_or_else(|| {
            ApiError::field(name, "must be an integer from 1 to 9223372036854775807")
        })
    }

    pub fn string(&self, name: &'static str) -> Result<String, ApiError> {
        json_string(self.required(name)?).ok_or_else(|| ApiError::field(name, "must be a string"))
    }

    pub fn money(&self, name: &'static str) -> Result<Decimal, ApiError> {
        let raw = self.required(name)?;
        let text = if raw.starts_with('"') {
            json_string(raw).ok_or_else(|| ApiError::field(name, "must be a string or number"))?
        } else {
            raw.to_owned()
        };
        parse_money(&text).map_err(|e| match e {
            MoneyError::Malformed => ApiError::field(
                name,
                "must be a decimal number with at most two digits after the point",
            ),
            MoneyError::OutOfRange => {
                ApiError::field(name, "must be greater than 0 and at most 999999999999.99")
            }
        })
    }

    pub fn opt_money(&self, name: &'static str) -> Result<Option<Decimal>, ApiError> {
        self.raw(name).map(|_| self.money(name)).transpose()
    }

    pub fn opt_int(&self, name: &'static str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        self.raw(name)
            .map(|raw| int_in_range(raw, min, max).ok_or_else(|| range_error(name, min, max)))
            .transpose()
    }

    pub fn opt_time(&self, name: &'static str) -> Result<Option<DateTime<Utc>>, ApiError> {
        let Some(raw) = self.raw(name) else {
            return Ok(None);
        };
        let text =
            json_string(raw).ok_or_else(|| ApiError::field(name, "must be an RFC 3339 time"))?;
        parse_time(&text)
            .map(Some)
            .ok_or_else(|| ApiError::field(name, "must be an RFC 3339 time with an offset"))
    }
}

fn json_string(raw: &str) -> Option<String> {
    if raw.starts_with('"') {
        serde_json::from_str(raw).ok()
    } else {
        None
    }
}

/// IDs are written in canonical form only, so `/api/auctions/007` and `/1e3` are not IDs.
pub fn parse_id(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let canonical =
        !b.is_empty() && b.iter().all(u8::is_ascii_digit) && (b[0] != b'0' || b.len() == 1);
    if !canonical {
        return None;
    }
    text.parse::<i64>().ok().filter(|id| *id >= 1)
}

/// A plain decimal integer (optional `-`, no fraction or exponent) within `min..=max`.
pub fn int_in_range(text: &str, min: i64, max: i64) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i64>().ok().filter(|n| (min..=max).contains(n))
}

pub fn range_error(name: &'static str, min: i64, max: i64) -> ApiError {
    ApiError::field(name, format!("must be an integer from {min} to {max}"))
}

#[derive(Debug, PartialEq, Eq)]
pub enum MoneyError {
    Malformed,
    OutOfRange,
}

pub fn parse_money(text: &str) -> Result<Decimal, MoneyError> {
    let (int, frac) = match text.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f) || f.len() > 2) {
        return Err(MoneyError::Malformed);
    }
    // Anything with more than 12 integer digits is out of range, and may not fit a Decimal.
    if int.trim_start_matches('0').len() > 12 {
        return Err(MoneyError::OutOfRange);
    }
    let value = Decimal::from_str(text).map_err(|_| MoneyError::Malformed)?;
    if value <= Decimal::ZERO || value > max_money() {
        return Err(MoneyError::OutOfRange);
    }
    Ok(value)
}

/// RFC 3339 with an offset, truncated to the microsecond PostgreSQL stores.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    // chrono also takes a space between date and time, which RFC 3339's grammar does not.
    if !matches!(text.as_bytes().get(10), Some(b'T' | b't')) {
        return None;
    }
    let t = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc);
    Some(truncate_micros(t))
}

pub fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = t.nanosecond();
    t.with_nanosecond(nanos - nanos % 1_000).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_forms() {
        for ok in ["7", "7.5", "7.50", "0.01", "999999999999.99", "000012.30"] {
            assert!(parse_money(ok).is_ok(), "{ok}");
        }
        for bad in [
            "12.", ".5", "1e3", "-1", "+1", " 1", "1 ", "12.500", "", "1.2.3",
        ] {
            assert_eq!(parse_money(bad), Err(MoneyError::Malformed), "{bad}");
        }
        for out in [
            "0",
            "0.00",
            "1000000000000",
            "99999999999999999999999999999999",
        ] {
            assert_eq!(parse_money(out), Err(MoneyError::OutOfRange), "{out}");
        }
        assert_eq!(parse_money("7.5").unwrap().to_string(), "7.5");
    }

    #[test]
    fn ids() {
        assert_eq!(parse_id("1"), Some(1));
        assert_eq!(parse_id("9223372036854775807"), Some(i64::MAX));
        for bad in [
            "",
            "0",
            "01",
            "-1",
            "+1",
            "1e3",
            "abc",
            "9223372036854775808",
        ] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn times() {
        assert!(parse_time("2026-11-27T12:00:00Z").is_some());
        assert!(parse_time("2026-11-27t12:00:00.123456789z").is_some());
        assert!(parse_time("2026-11-27T12:00:00+02:00").is_some());
        assert!(parse_time("2026-11-27 12:00:00Z").is_none());
        assert!(parse_time("2026-11-27T12:00:00").is_none());
        let t = parse_time("2026-11-27T12:00:00.1234567Z").unwrap();
        assert_eq!(t.nanosecond(), 123_456_000);
    }
}
