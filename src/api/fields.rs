//! Request fields decoded from their raw JSON text: money never passes through a float, and
//! every field that does not fit is an `invalid` answer naming it.

use super::error::ApiError;
use crate::domain::money::{Money, MoneyError};
use crate::domain::parse_id;
use crate::domain::time::Timestamp;
use crate::http::Request;
use serde::Deserialize;
use serde_json::value::RawValue;

/// A request field as sent: absent and `null` are both `None`.
pub type Raw<'a> = Option<&'a RawValue>;

/// Parses a request body that must be one JSON object into `T` (a struct of `Raw` fields).
pub fn parse_object<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    let first = body.iter().find(|b| !b" \t\r\n".contains(b));
    match first {
        None => return Err(ApiError::InvalidJson("the request body is empty")),
        Some(b'{') => {}
        Some(_) => {
            return Err(ApiError::InvalidJson(
                "the request body must be a JSON object",
            ))
        }
    }
    // RFC 8259 §8.1: JSON text is UTF-8. serde_json checks only the strings it decodes, so
    // invalid bytes in a member Gavel ignores would otherwise pass.
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(ApiError::InvalidJson("the request body is not valid UTF-8"));
    };
    serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            ApiError::InvalidJson("the request body has a duplicate or malformed member")
        } else {
            ApiError::InvalidJson("the request body is not valid JSON")
        }
    })
}

fn required<'a>(field: &'static str, raw: Raw<'a>) -> Result<&'a str, ApiError> {
    raw.map(RawValue::get)
        .ok_or_else(|| ApiError::field(field, "is required"))
}

/// A JSON string's value, escapes decoded; `None` when the raw value is not a string.
fn as_string(raw: &str) -> Option<String> {
    if raw.starts_with('"') {
        serde_json::from_str(raw).ok()
    } else {
        None
    }
}

pub fn id(field: &'static str, raw: Raw<'_>) -> Result<i64, ApiError> {
    let text = required(field, raw)?;
    parse_id(text)
        .ok_or_else(|| ApiError::field(field, "must be an integer from 1 to 9223372036854775807"))
}

pub fn opt_id(field: &'static str, raw: Raw<'_>) -> Result<Option<i64>, ApiError> {
    raw.map(|_| id(field, raw)).transpose()
}

pub fn money(field: &'static str, raw: Raw<'_>) -> Result<Money, ApiError> {
    let text = required(field, raw)?;
    let owned;
    let digits = if text.starts_with('"') {
        owned = as_string(text).ok_or_else(|| ApiError::field(field, "is not a valid string"))?;
        owned.as_str()
    } else {
        text
    };
    Money::parse(digits).map_err(|e| match e {
        MoneyError::Malformed => ApiError::field(
            field,
            "must be a decimal number with at most two digits after the point",
        ),
        MoneyError::OutOfRange => {
            ApiError::field(field, "must be greater than 0 and at most 999999999999.99")
        }
    })
}

pub fn opt_money(field: &'static str, raw: Raw<'_>) -> Result<Option<Money>, ApiError> {
    raw.map(|_| money(field, raw)).transpose()
}

/// A plain decimal integer (no fraction, no exponent, no `+`) within `min..=max`.
pub fn int_in_range(text: &str, min: i64, max: i64) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i64>().ok().filter(|n| (min..=max).contains(n))
}

pub fn range_error(field: &'static str, min: i64, max: i64) -> ApiError {
    ApiError::field(field, format!("must be an integer from {min} to {max}"))
}

/// An integer field within `min..=max`; JSON integers only.
pub fn opt_int(
    field: &'static str,
    raw: Raw<'_>,
    min: i64,
    max: i64,
) -> Result<Option<i64>, ApiError> {
    raw.map(|raw| int_in_range(raw.get(), min, max).ok_or_else(|| range_error(field, min, max)))
        .transpose()
}

pub fn opt_time(field: &'static str, raw: Raw<'_>) -> Result<Option<Timestamp>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let text = as_string(raw.get())
        .ok_or_else(|| ApiError::field(field, "must be an RFC 3339 time string"))?;
    Timestamp::parse_rfc3339(&text)
        .map(Some)
        .map_err(|_| ApiError::field(field, "must be an RFC 3339 time with an offset"))
}

pub fn string(field: &'static str, raw: Raw<'_>) -> Result<String, ApiError> {
    let text = required(field, raw)?;
    as_string(text).ok_or_else(|| ApiError::field(field, "must be a string"))
}

/// Refuses a body whose declared type is not JSON (a missing `Content-Type` counts as JSON).
pub fn require_json(req: &Request<'_>) -> Result<(), ApiError> {
    let Some(value) = req.header("content-type") else {
        return Ok(());
    };
    let value = std::str::from_utf8(value).map_err(|_| ApiError::UnsupportedMediaType)?;
    let mime = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json = mime == "application/json"
        || (mime.starts_with("application/") && mime.ends_with("+json") && !mime.contains(' '));
    if json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        amount: Raw<'a>,
        #[serde(borrow)]
        id: Raw<'a>,
    }

    fn body(json: &str) -> Body<'_> {
        parse_object(json.as_bytes()).unwrap()
    }

    #[test]
    fn money_from_string_or_number_text() {
        assert_eq!(
            money("amount", body(r#"{"amount":"12.50"}"#).amount)
                .unwrap()
                .cents(),
            1250
        );
        assert_eq!(
            money("amount", body(r#"{"amount":12.5}"#).amount)
                .unwrap()
                .cents(),
            1250
        );
        assert_eq!(
            money("amount", body(r#"{"amount":0.07}"#).amount)
                .unwrap()
                .cents(),
            7,
            "no float rounding"
        );
        for bad in [
            r#"{"amount":1e3}"#,
            r#"{"amount":"12."}"#,
            r#"{"amount":12.500}"#,
            r#"{"amount":-1}"#,
            r#"{"amount":true}"#,
            r#"{"amount":[1]}"#,
            r#"{"amount":" 1"}"#,
            r#"{"amount":0}"#,
            r#"{}"#,
            r#"{"amount":null}"#,
        ] {
            let err = money("amount", body(bad).amount).unwrap_err();
            assert!(
                matches!(
                    err,
                    ApiError::InvalidField {
                        field: "amount",
                        ..
                    }
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn ids_are_json_integers() {
        assert_eq!(id("id", body(r#"{"id":42}"#).id), Ok(42));
        for bad in [
            r#"{"id":"42"}"#,
            r#"{"id":4.2}"#,
            r#"{"id":0}"#,
            r#"{"id":-3}"#,
            r#"{"id":1e2}"#,
        ] {
            assert!(id("id", body(bad).id).is_err(), "{bad}");
        }
        assert_eq!(opt_id("id", body("{}").id), Ok(None));
    }

    #[test]
    fn body_must_be_an_object() {
        for bad in [
            "", "[]", "[1,2]", "1", "\"x\"", "{", "{\"a\":}", "nul", "\u{0}",
        ] {
            let r: Result<Body<'_>, _> = parse_object(bad.as_bytes());
            assert!(matches!(r, Err(ApiError::InvalidJson(_))), "{bad:?}");
        }
        let deep = "[".repeat(10_000);
        let nested = format!("{{\"amount\":{deep}");
        let r: Result<Body<'_>, _> = parse_object(nested.as_bytes());
        assert!(matches!(r, Err(ApiError::InvalidJson(_))));
    }

    #[test]
    fn int_bounds() {
        let raw = |t: &str| serde_json::from_str::<Box<RawValue>>(t).unwrap();
        let v = raw("3600");
        assert_eq!(opt_int("x", Some(&v), 0, 3600), Ok(Some(3600)));
        for bad in ["3601", "-1", "1.0", "1e2", "\"5\"", "99999999999999999999"] {
            let v = raw(bad);
            assert!(opt_int("x", Some(&v), 0, 3600).is_err(), "{bad}");
        }
    }
}
