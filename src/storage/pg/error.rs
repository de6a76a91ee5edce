//! The one error type of the PostgreSQL layer, and decoding of the server's error fields.

use std::fmt;

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::ErrorFields;

use crate::pipeline::{Failure, LinkError, LinkFailure};

/// Everything that can go wrong talking to PostgreSQL, sorted by what the caller does about it.
#[derive(Debug, Clone)]
pub enum PgError {
    /// The connection is down, being re-established, or could not be made. Callers answer 503 fast.
    Unavailable(String),
    /// The pipeline of this connection already holds `MAX_IN_FLIGHT` requests.
    Busy,
    /// No reply within `query_timeout`.
    Timeout,
    /// The server answered an ErrorResponse.
    Db {
        /// SQLSTATE, e.g. "23505", "57014", "40P01", "P0001".
        code: String,
        /// The server's primary message.
        message: String,
        /// The constraint involved, when the server names one (unique, check, foreign key).
        constraint: Option<String>,
    },
    /// Bytes that do not follow the protocol, an unexpected message, or a value of the wrong type.
    Protocol(String),
    /// Authentication failed, or the server asked for a method this client does not support.
    Auth(String),
}

impl PgError {
    /// The SQLSTATE of a server error, `None` for every other kind.
    pub fn code(&self) -> Option<&str> {
        match self {
            PgError::Db { code, .. } => Some(code),
            _ => None,
        }
    }
}

impl From<LinkError> for PgError {
    fn from(e: LinkError) -> PgError {
        match e {
            LinkError::Unavailable(why) => PgError::Unavailable(why),
            LinkError::Busy => PgError::Busy,
            LinkError::Timeout => PgError::Timeout,
        }
    }
}

impl LinkFailure for PgError {
    fn failure(&self) -> Failure {
        match self {
            PgError::Unavailable(_) => Failure::Unavailable,
            PgError::Busy => Failure::Busy,
            PgError::Timeout => Failure::Timeout,
            PgError::Db { .. } => Failure::Server,
            PgError::Protocol(_) => Failure::Protocol,
            PgError::Auth(_) => Failure::Auth,
        }
    }

    fn unavailable_reason(&self) -> Option<&str> {
        match self {
            PgError::Unavailable(why) => Some(why),
            _ => None,
        }
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgError::Unavailable(why) => write!(f, "database unavailable: {why}"),
            PgError::Busy => f.write_str("database connection busy: too many requests in flight"),
            PgError::Timeout => f.write_str("database did not answer in time"),
            PgError::Db {
                code,
                message,
                constraint,
            } => {
                write!(f, "database error {code}: {message}")?;
                match constraint {
                    Some(c) => write!(f, " (constraint {c})"),
                    None => Ok(()),
                }
            }
            PgError::Protocol(why) => write!(f, "database protocol error: {why}"),
            PgError::Auth(why) => write!(f, "database authentication failed: {why}"),
        }
    }
}

impl std::error::Error for PgError {}

/// An ErrorResponse, decoded: the error plus whether the server is about to close the session.
pub(crate) struct ServerError {
    pub error: PgError,
    /// FATAL or PANIC: the session ends after this message.
    pub fatal: bool,
}

/// Decodes the fields of an ErrorResponse. Class 28 (invalid authorization) becomes `Auth`.
pub(crate) fn server_error(mut fields: ErrorFields<'_>) -> Result<ServerError, PgError> {
    let mut code = String::new();
    let mut message = String::new();
    let mut constraint = None;
    let mut severity = String::new();
    let bad = |e: std::io::Error| PgError::Protocol(format!("malformed error response: {e}"));
    while let Some(field) = fields.next().map_err(bad)? {
        let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
        match field.type_() {
            b'C' => code = value,
            b'M' => message = value,
            b'n' => constraint = Some(value),
            // 'V' is never localized; 'S' may be, so it only fills in when 'V' is absent.
            b'V' => severity = value,
            b'S' if severity.is_empty() => severity = value,
            _ => {}
        }
    }
    let fatal = severity == "FATAL" || severity == "PANIC";
    let error = if code.starts_with("28") {
        PgError::Auth(message)
    } else {
        PgError::Db {
            code,
            message,
            constraint,
        }
    };
    Ok(ServerError { error, fatal })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use postgres_protocol::message::backend::Message;

    fn error_message(fields: &[(u8, &str)]) -> Message {
        let mut body = Vec::new();
        for (t, v) in fields {
            body.push(*t);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"E");
        buf.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        buf.extend_from_slice(&body);
        Message::parse(&mut buf).unwrap().unwrap()
    }

    fn decode(fields: &[(u8, &str)]) -> ServerError {
        match error_message(fields) {
            Message::ErrorResponse(body) => server_error(body.fields()).unwrap(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn unique_violation_keeps_code_message_and_constraint() {
        let e = decode(&[
            (b'S', "ERROR"),
            (b'V', "ERROR"),
            (b'C', "23505"),
            (
                b'M',
                "duplicate key value violates unique constraint \"bids_pkey\"",
            ),
            (b'n', "bids_pkey"),
        ]);
        assert!(!e.fatal);
        match e.error {
            PgError::Db {
                code, constraint, ..
            } => {
                assert_eq!(code, "23505");
                assert_eq!(constraint.as_deref(), Some("bids_pkey"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn fatal_severity_and_auth_class_are_recognised() {
        let e = decode(&[(b'S', "FATAL"), (b'C', "28P01"), (b'M', "password failed")]);
        assert!(e.fatal);
        assert!(matches!(e.error, PgError::Auth(ref m) if m == "password failed"));
        // a localized 'S' must not override the non-localized 'V'
        let e = decode(&[(b'V', "FATAL"), (b'S', "SCHWERWIEGEND"), (b'C', "57P01")]);
        assert!(e.fatal);
    }

    #[test]
    fn display_shows_code_message_and_constraint() {
        let e = PgError::Db {
            code: "23505".into(),
            message: "duplicate".into(),
            constraint: Some("bids_pkey".into()),
        };
        assert_eq!(
            e.to_string(),
            "database error 23505: duplicate (constraint bids_pkey)"
        );
        assert_eq!(e.code(), Some("23505"));
        assert_eq!(PgError::Busy.code(), None);
    }
}
