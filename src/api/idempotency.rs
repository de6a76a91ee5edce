//! The `Idempotency-Key` header: its syntax, and the request digest a reused key must match.
//!
//! The decision itself lives in PostgreSQL, claimed and answered in the transaction that has the
//! effect (see `migrations/0004_idempotency.sql`); this module only turns a request into a claim.

use super::error::ApiError;
use crate::domain::idempotency::KeyClaim;
use crate::http::{Request, Response};
use sha2::{Digest, Sha256};

/// The header's name, as API.md spells it.
pub const HEADER: &str = "Idempotency-Key";

/// Longest key API.md allows: long enough for a UUID, a ULID or a client's own composite key,
/// short enough to keep the primary key index small.
pub const MAX_KEY_BYTES: usize = 255;

/// The header a replayed answer carries, so a client can tell a replay from a fresh decision.
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";

/// The request's key, if it sent one: 1–255 visible ASCII characters, and only one such header.
pub fn key<'a>(req: &Request<'a>) -> Result<Option<&'a str>, ApiError> {
    let mut values = req.headers_named(HEADER);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::field(HEADER, "may be sent only once"));
    }
    if value.is_empty() || value.len() > MAX_KEY_BYTES {
        return Err(ApiError::field(
            HEADER,
            "must be 1 to 255 visible ASCII characters",
        ));
    }
    if !value.iter().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::field(
            HEADER,
            "must be 1 to 255 visible ASCII characters",
        ));
    }
    // Visible ASCII is valid UTF-8.
    std::str::from_utf8(value)
        .map(Some)
        .map_err(|_| ApiError::field(HEADER, "must be visible ASCII"))
}

/// The claim `caller` makes with `key` for a request to `route` with `body`. The digest covers the
/// route and the body exactly as sent, so any other request under the same key is a mismatch.
pub fn claim(key: &str, caller: i64, route: &str, body: &[u8]) -> KeyClaim {
    let mut digest = Sha256::new();
    digest.update(route.as_bytes());
    digest.update(b"\n");
    digest.update(body);
    KeyClaim {
        caller,
        key: key.to_owned(),
        request_hash: digest.finalize().into(),
    }
}

/// Marks `resp` as the replay of an earlier answer.
pub fn mark_replayed(resp: &mut Response) {
    resp.header(REPLAYED_HEADER, "true");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Header;

    fn request<'a>(headers: &'a [Header<'a>]) -> Request<'a> {
        Request {
            method: "POST",
            path: "/api/bids",
            query: None,
            version_minor: 1,
            headers,
            body: b"{}",
            request_id: "r",
        }
    }

    fn key_of(values: &[&[u8]]) -> Result<Option<String>, ApiError> {
        let headers: Vec<Header<'_>> = values
            .iter()
            .map(|v| Header {
                name: "idempotency-key",
                value: v,
            })
            .collect();
        key(&request(&headers)).map(|k| k.map(str::to_owned))
    }

    #[test]
    fn accepts_one_to_255_visible_characters() {
        assert_eq!(key_of(&[]).unwrap(), None);
        assert_eq!(key_of(&[b"k"]).unwrap().as_deref(), Some("k"));
        let longest = vec![b'~'; MAX_KEY_BYTES];
        assert_eq!(key_of(&[&longest]).unwrap().unwrap().len(), MAX_KEY_BYTES);
    }

    #[test]
    fn refuses_empty_long_invisible_or_repeated_keys() {
        let too_long = vec![b'a'; MAX_KEY_BYTES + 1];
        for bad in [
            &b""[..],
            &too_long,
            b"a b",
            b"a\tb",
            b"caf\xc3\xa9",
            b"\x7f",
        ] {
            let err = key_of(&[bad]).unwrap_err();
            assert!(
                matches!(err, ApiError::InvalidField { field: HEADER, .. }),
                "{bad:?}"
            );
        }
        assert!(key_of(&[b"a", b"a"]).is_err());
    }

    #[test]
    fn the_digest_covers_route_and_exact_body() {
        let a = claim("k", 1, "/api/bids", br#"{"amount":"1"}"#);
        assert_eq!(a, claim("k", 1, "/api/bids", br#"{"amount":"1"}"#));
        assert_ne!(
            a.request_hash,
            claim("k", 1, "/api/bids", br#"{"amount":"2"}"#).request_hash
        );
        assert_ne!(
            a.request_hash,
            claim("k", 1, "/api/auctions", br#"{"amount":"1"}"#).request_hash
        );
    }
}
