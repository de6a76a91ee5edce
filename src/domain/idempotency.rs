//! Idempotency keys as the domain sees them: a claim, and what came of a keyed request.

/// An idempotency key as the request claims it: whose key, the key, and a digest of the request
/// that a later use of the key must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyClaim {
    pub caller: i64,
    pub key: String,
    pub request_hash: [u8; 32],
}

/// What came of a request that may carry an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Keyed<T> {
    /// Decided now (with or without a key).
    Fresh(T),
    /// An earlier request with the same key and request was decided so; nothing new happened.
    Replayed(T),
    /// The key was already used with a different request.
    Reused,
}

impl<T> Keyed<T> {
    /// The same kind of answer, carrying `value`.
    pub fn with<U>(self, value: U) -> Keyed<U> {
        match self {
            Keyed::Fresh(_) => Keyed::Fresh(value),
            Keyed::Replayed(_) => Keyed::Replayed(value),
            Keyed::Reused => Keyed::Reused,
        }
    }
}
