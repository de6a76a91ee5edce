//! Oracles over the request decoders that read outside input, for the fuzz targets and the
//! property tests: JSON bodies with their money and time fields, and query strings. Each takes
//! arbitrary bytes and panics only when a property is broken.

use super::auctions::{auction_draft, AuctionBody};
use super::bids::{bidder_of, BidBody};
use super::error::ApiError;
use super::fields as json;
use super::query::Params;
use crate::domain::money::{Money, MoneyError, MAX_MONEY_CENTS};
use crate::domain::time::Timestamp;

/// 2026-01-01T00:00:00Z: a fixed "now", so a run does not depend on the clock.
const NOW_MICROS: i64 = 1_767_225_600_000_000;

/// The bid and auction decoders accept only UTF-8 JSON objects; a money field decoded is
/// exactly the value its text spells; a time decoded prints and parses back to itself.
pub fn json_bodies(data: &[u8]) {
    match json::parse_object::<BidBody<'_>>(data) {
        Ok(body) => {
            assert_json_object(data);
            if let (Ok(amount), Some(raw)) = (json::money("amount", body.amount), body.amount) {
                let text = raw.get();
                let digits = match text.strip_prefix('"') {
                    Some(_) => serde_json::from_str::<String>(text).expect("a decoded string"),
                    None => text.to_owned(),
                };
                assert_eq!(Ok(amount), reference_money(&digits), "{digits:?}");
            }
            let _ = json::id("auction_id", body.auction_id);
            let _ = bidder_of(None, body.bidder_id);
        }
        Err(e) => assert!(matches!(e, ApiError::InvalidJson(_)), "{e:?}"),
    }
    if let Ok(body) = json::parse_object::<AuctionBody<'_>>(data) {
        assert_json_object(data);
        if let Ok(draft) = auction_draft(&body) {
            let _ = draft.validate(Timestamp::from_unix_micros(NOW_MICROS));
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        money_text(text);
        time_text(text);
    }
}

/// RFC 8259 leaves number ranges to implementations (`1e3600` is JSON), so the check is the
/// grammar alone, as `IgnoredAny` reads it.
fn assert_json_object(data: &[u8]) {
    let text = std::str::from_utf8(data).expect("accepted text is UTF-8");
    serde_json::from_str::<serde::de::IgnoredAny>(text).expect("accepted text is JSON");
    assert!(
        text.trim_start().starts_with('{'),
        "accepted text is an object"
    );
}

/// API.md's money grammar and range, written plainly: digits, optionally a point and one or
/// two digits; more than 0 and at most 999999999999.99.
fn reference_money(text: &str) -> Result<Money, MoneyError> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let frac_ok = if text.contains('.') {
        (1..=2).contains(&frac.len())
    } else {
        true
    };
    if int.is_empty() || !digits(int) || !digits(frac) || !frac_ok {
        return Err(MoneyError::Malformed);
    }
    let int = int.trim_start_matches('0');
    if int.len() > 15 {
        return Err(MoneyError::OutOfRange);
    }
    let units: i64 = if int.is_empty() {
        0
    } else {
        int.parse().expect("at most 15 digits")
    };
    let frac_cents: i64 = format!("{frac:0<2}").parse().expect("two digits");
    let cents = units * 100 + frac_cents;
    if cents <= 0 || cents > MAX_MONEY_CENTS {
        return Err(MoneyError::OutOfRange);
    }
    Ok(Money::from_cents(cents))
}

/// Money parsing agrees with the reference, and parse → format → parse is the identity.
pub fn money_text(text: &str) {
    let parsed = Money::parse(text);
    assert_eq!(parsed, reference_money(text), "{text:?}");
    if let Ok(m) = parsed {
        let printed = m.to_string();
        assert!(printed.len() >= 4 && printed.as_bytes()[printed.len() - 3] == b'.');
        assert_eq!(Money::parse(&printed), Ok(m));
    }
}

/// A time parsed prints (UTC, microseconds) and parses back to itself, within the years that
/// four digits can print.
pub fn time_text(text: &str) {
    const FIRST_MICROS: i64 = -62_135_596_800_000_000; // 0001-01-01T00:00:00Z
    const LAST_MICROS: i64 = 253_402_300_799_999_999; // 9999-12-31T23:59:59.999999Z
    if let Ok(t) = Timestamp::parse_rfc3339(text) {
        if (FIRST_MICROS..=LAST_MICROS).contains(&t.unix_micros()) {
            let mut printed = String::new();
            t.write_rfc3339(&mut printed);
            assert!(printed.ends_with('Z'), "{printed}");
            assert_eq!(
                Timestamp::parse_rfc3339(&printed),
                Ok(t),
                "{text:?} -> {printed}"
            );
        }
    }
}

/// Money and time texts alone: the field parsers behind the JSON decoders.
pub fn money_and_time(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        money_text(text);
        time_text(text);
    }
}

/// Query strings never fail to parse; any value percent-encoded comes back as itself.
pub fn query(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let params = Params::parse(Some(&text));
    for name in ["limit", "after_id", "before_id", "status"] {
        let _ = params.get(name);
        let _ = params.int(name, 1, 500);
    }
    let mut encoded = String::from("k=");
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    assert_eq!(
        Params::parse(Some(&encoded)).get("k").as_deref(),
        Some(&*text)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bid bodies as clients write them, with money in the forms API.md allows and refuses.
    fn bid_body() -> impl Strategy<Value = String> {
        let amount = prop_oneof![
            "[0-9]{1,14}(\\.[0-9]{0,3})?",
            "\"[0-9 .+eE-]{0,16}\"",
            "-?[0-9]{1,3}e[0-9]",
            Just("null".to_owned()),
        ];
        (amount, "[0-9]{1,20}", "[0-9]{0,3}").prop_map(|(amount, auction, bidder)| {
            format!(
                r#"{{"auction_id":{auction},"amount":{amount},"bidder_id":{bidder}1,"x":"\u00e9"}}"#
            )
        })
    }

    /// Found by fuzzing: a number beyond f64 (`1e3600`) in an ignored member is JSON, and the
    /// body is decoded, not refused.
    #[test]
    fn numbers_beyond_f64_in_ignored_members_are_json() {
        let body = br#"{"title":"Vintage watch","seller_auction_id":1,"amount":"1","bidder_iioid":0,"start_priuction_id":0,"amo(unt":1e3600}"#;
        json_bodies(body);
        assert!(json::parse_object::<BidBody<'_>>(body).is_ok());
    }

    proptest! {
        #[test]
        fn json_oracles_hold(data in prop::collection::vec(any::<u8>(), 0..200)) {
            json_bodies(&data);
        }

        #[test]
        fn json_oracles_hold_on_bid_bodies(body in bid_body()) {
            json_bodies(body.as_bytes());
        }

        #[test]
        fn money_parses_exactly(text in "[0-9.]{0,18}") {
            money_text(&text);
        }

        #[test]
        fn times_round_trip(text in "[0-9]{4}-[01][0-9]-[0-3][0-9][Tt][0-2][0-9]:[0-5][0-9]:[0-6][0-9](\\.[0-9]{1,9})?([Zz]|[+-][0-2][0-9]:[0-5][0-9])") {
            time_text(&text);
        }

        #[test]
        fn query_values_round_trip(data in prop::collection::vec(any::<u8>(), 0..100)) {
            query(&data);
        }
    }
}
