//! Domain: money, time, auction rules, and the words for bids, keyed requests and pages. No IO and no clock reads; `now` is always passed in.

pub mod auction;
pub mod bid;
pub mod events;
pub mod idempotency;
pub mod money;
pub mod page;
pub mod time;

/// Parses an ID the way API.md writes them: a JSON-style integer from 1 to i64::MAX, no sign, no
/// leading zero, no exponent.
pub fn parse_id(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let canonical = !bytes.is_empty()
        && bytes.iter().all(u8::is_ascii_digit)
        && (bytes[0] != b'0' || bytes.len() == 1);
    if !canonical {
        return None;
    }
    text.parse::<i64>().ok().filter(|id| *id >= 1)
}

#[cfg(test)]
mod tests {
    use super::parse_id;

    #[test]
    fn ids() {
        assert_eq!(parse_id("1"), Some(1));
        assert_eq!(parse_id("9223372036854775807"), Some(i64::MAX));
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            "01",
            "1e3",
            "1.0",
            "abc",
            "9223372036854775808",
            " 1",
        ] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
    }
}
