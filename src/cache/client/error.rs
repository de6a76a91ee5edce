//! The one error type of the Redis client.

use std::fmt;

use crate::pipeline::{Failure, LinkError, LinkFailure};

/// Everything that can go wrong talking to Redis, sorted by what the caller does about it. For
/// a cache every kind means the same on the request path (use PostgreSQL instead); the kinds
/// matter for logs, metrics and the few callers that react to a specific error reply.
#[derive(Debug, Clone)]
pub enum CacheError {
    /// The connection is down, being re-established, could not be made, or the URL is invalid.
    Unavailable(String),
    /// The pipeline of this connection already holds `MAX_IN_FLIGHT` commands.
    Busy,
    /// No reply within the command timeout.
    Timeout,
    /// An error reply, e.g. "NOSCRIPT ..." or "WRONGTYPE ...": it fails only its own command.
    Server(String),
    /// Bytes that do not follow RESP, a reply nobody asked for, a push or an oversized reply.
    /// The connection it arrived on is dropped.
    Protocol(String),
}

impl CacheError {
    /// The error code of an error reply ("NOSCRIPT", "WRONGTYPE", "ERR"), `None` for every
    /// other kind.
    pub fn server_code(&self) -> Option<&str> {
        match self {
            CacheError::Server(text) => text.split(' ').next(),
            _ => None,
        }
    }
}

impl From<LinkError> for CacheError {
    fn from(e: LinkError) -> CacheError {
        match e {
            LinkError::Unavailable(why) => CacheError::Unavailable(why),
            LinkError::Busy => CacheError::Busy,
            LinkError::Timeout => CacheError::Timeout,
        }
    }
}

impl LinkFailure for CacheError {
    fn failure(&self) -> Failure {
        match self {
            CacheError::Unavailable(_) => Failure::Unavailable,
            CacheError::Busy => Failure::Busy,
            CacheError::Timeout => Failure::Timeout,
            CacheError::Server(_) => Failure::Server,
            CacheError::Protocol(_) => Failure::Protocol,
        }
    }

    fn unavailable_reason(&self) -> Option<&str> {
        match self {
            CacheError::Unavailable(why) => Some(why),
            _ => None,
        }
    }
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::Unavailable(why) => write!(f, "redis unavailable: {why}"),
            CacheError::Busy => f.write_str("redis connection busy: too many commands in flight"),
            CacheError::Timeout => f.write_str("redis did not answer in time"),
            CacheError::Server(text) => write!(f, "redis error reply: {text}"),
            CacheError::Protocol(why) => write!(f, "redis protocol error: {why}"),
        }
    }
}

impl std::error::Error for CacheError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_code() {
        let e = CacheError::Server("NOSCRIPT No matching script.".into());
        assert_eq!(e.server_code(), Some("NOSCRIPT"));
        assert_eq!(
            e.to_string(),
            "redis error reply: NOSCRIPT No matching script."
        );
        assert_eq!(CacheError::Timeout.server_code(), None);
        assert_eq!(
            CacheError::Unavailable("refused".into()).to_string(),
            "redis unavailable: refused"
        );
    }
}
