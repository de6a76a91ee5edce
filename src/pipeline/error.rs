//! The pipeline's own errors, and what it needs to know of a protocol's errors.

use std::fmt;

/// What the pipeline itself can fail with. Each protocol's error type converts from it at the
/// boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// The link is down, closing, being re-established, or could not be made.
    Unavailable(String),
    /// The link already holds `Limits::max_in_flight` requests.
    Busy,
    /// No reply within the caller's timeout.
    Timeout,
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Unavailable(why) => write!(f, "unavailable: {why}"),
            LinkError::Busy => f.write_str("busy: too many requests in flight"),
            LinkError::Timeout => f.write_str("no reply in time"),
        }
    }
}

/// What kind of failure a call met: the words an [`crate::pipeline::Observer`] is told, and the
/// `kind` label values of the clients' error counters, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection, or it broke before the reply.
    Unavailable = 0,
    /// The link's pipeline was full.
    Busy = 1,
    /// No reply in time.
    Timeout = 2,
    /// The server answered with an error: a round trip all the same.
    Server = 3,
    /// Bytes the client could not follow.
    Protocol = 4,
    /// Authentication refused.
    Auth = 5,
}

impl Failure {
    /// Label values, in the order of the variants.
    pub const LABELS: [&'static str; 6] = [
        "unavailable",
        "busy",
        "timeout",
        "server",
        "protocol",
        "auth",
    ];
}

/// What the pipeline needs to know of a protocol's error type.
pub trait LinkFailure: From<LinkError> + fmt::Display + Send + 'static {
    /// Its kind.
    fn failure(&self) -> Failure;
    /// The bare reason, when it says the link is unavailable (so that a reason is not wrapped
    /// twice when it is passed on).
    fn unavailable_reason(&self) -> Option<&str>;
}

#[cfg(test)]
mod tests {
    use super::Failure;

    #[test]
    fn labels_follow_the_variants() {
        assert_eq!(
            Failure::LABELS[Failure::Unavailable as usize],
            "unavailable"
        );
        assert_eq!(Failure::LABELS[Failure::Server as usize], "server");
        assert_eq!(Failure::LABELS[Failure::Auth as usize], "auth");
    }
}
