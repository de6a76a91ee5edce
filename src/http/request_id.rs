//! Request ids: every response carries `X-Request-Id`, the client's own when it sent a sane one,
//! else one made here. Ids are made per worker thread (a random prefix and a counter), so making
//! one touches no state shared across workers.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

/// Longest client id kept. Ids end up in logs and in the response; 128 bytes holds any UUID,
/// ULID or trace id format in use, with room for a prefix.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

pub const HEADER: &str = "X-Request-Id";

/// A client id is kept when it is 1 to `MAX_REQUEST_ID_BYTES` bytes of letters, digits and
/// `-_.:/+=` (what id formats use); anything else could smuggle text into logs, so it is replaced.
pub fn is_sane(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_BYTES
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(b))
}

thread_local! {
    /// (random prefix of this thread, requests numbered so far).
    static NEXT: Cell<(u64, u64)> = Cell::new((random_prefix(), 0));
}

fn random_prefix() -> u64 {
    // RandomState is seeded from the OS once per process and varied per instance.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish()
}

/// A new id: 32 hex digits, unique per thread (prefix) and per request (counter).
pub fn generate() -> String {
    let (prefix, n) = NEXT.with(|c| {
        let (prefix, n) = c.get();
        c.set((prefix, n.wrapping_add(1)));
        (prefix, n)
    });
    format!("{prefix:016x}{n:016x}")
}

/// The id for a request that sent `client` (its `X-Request-Id`, if any).
pub fn for_request(client: Option<&[u8]>) -> String {
    match client {
        Some(id) if is_sane(id) => String::from_utf8_lossy(id).into_owned(),
        _ => generate(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_kept_only_when_sane() {
        assert_eq!(for_request(Some(b"abc-123")), "abc-123");
        let max = vec![b'a'; MAX_REQUEST_ID_BYTES];
        assert_eq!(for_request(Some(&max)).len(), MAX_REQUEST_ID_BYTES);
        let over = vec![b'a'; MAX_REQUEST_ID_BYTES + 1];
        assert_eq!(for_request(Some(&over)).len(), 32);
        for bad in [&b""[..], b"a b", b"a\"b", b"a\nb", b"\xff", b"{}"] {
            let id = for_request(Some(bad));
            assert_eq!(id.len(), 32, "{bad:?}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn generated_ids_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert_eq!(a[..16], b[..16], "one prefix per thread");
    }
}
