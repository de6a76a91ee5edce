//! The API's one error type, and the only place that turns errors into status codes and bodies.

use super::write::{write_json_str, write_money_or_null};
use crate::domain::auction::Status;
use crate::domain::money::Money;
use crate::http::{HttpError, Response};
use crate::storage::StoreError;
use std::sync::atomic::{AtomicU64, Ordering};

/// Seconds a client should wait before retrying a 503 (sent as `Retry-After`).
pub const RETRY_AFTER_SECS: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    BadRequest(&'static str),
    InvalidJson(&'static str),
    InvalidField {
        field: &'static str,
        message: String,
    },
    Unauthorized(&'static str),
    Forbidden(&'static str),
    NotFound,
    MethodNotAllowed {
        allow: &'static str,
    },
    RequestTimeout,
    BidTooLow {
        current_price: Option<Money>,
        min_next_bid: Money,
    },
    AuctionNotOpen(Status),
    /// An `Idempotency-Key` already used by the same caller for a different request.
    IdempotencyMismatch,
    PayloadTooLarge,
    UriTooLong,
    UnsupportedMediaType,
    HeadersTooLarge,
    NotImplemented(&'static str),
    /// The server holds as many live-update streams as it is configured for.
    StreamsFull,
    /// A storage failure: 503 when a retry may succeed, else 500. Its detail goes to the log,
    /// never to the client.
    Store(StoreError),
}

impl ApiError {
    pub fn field(field: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::InvalidField {
            field,
            message: message.into(),
        }
    }

    fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) | ApiError::InvalidJson(_) | ApiError::InvalidField { .. } => {
                400
            }
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::RequestTimeout => 408,
            ApiError::BidTooLow { .. } | ApiError::AuctionNotOpen(_) => 409,
            ApiError::PayloadTooLarge => 413,
            ApiError::IdempotencyMismatch => 422,
            ApiError::UriTooLong => 414,
            ApiError::UnsupportedMediaType => 415,
            ApiError::HeadersTooLarge => 431,
            ApiError::Store(StoreError::Internal(_)) => 500,
            ApiError::NotImplemented(_) => 501,
            ApiError::Store(StoreError::Unavailable(_)) | ApiError::StreamsFull => 503,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::BidTooLow { .. } => "bid_too_low",
            ApiError::AuctionNotOpen(_) => "auction_not_open",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::IdempotencyMismatch => "idempotency_mismatch",
            ApiError::UriTooLong => "uri_too_long",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::HeadersTooLarge => "headers_too_large",
            ApiError::NotImplemented(_) => "not_implemented",
            ApiError::Store(StoreError::Unavailable(_)) | ApiError::StreamsFull => "unavailable",
            ApiError::Store(StoreError::Internal(_)) => "internal",
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::BadRequest(m)
            | ApiError::InvalidJson(m)
            | ApiError::Forbidden(m)
            | ApiError::Unauthorized(m) => (*m).to_owned(),
            ApiError::NotImplemented(m) => (*m).to_owned(),
            ApiError::InvalidField { field, message } => format!("{field} {message}"),
            ApiError::NotFound => "no such resource".into(),
            ApiError::MethodNotAllowed { allow } => format!("method not allowed; allowed: {allow}"),
            ApiError::RequestTimeout => "the request was not received in time".into(),
            ApiError::BidTooLow { min_next_bid, .. } => {
                format!("the bid must be at least {min_next_bid}")
            }
            ApiError::AuctionNotOpen(s) => format!("the auction is {}", s.as_str()),
            ApiError::PayloadTooLarge => "the request body is over 64 KiB".into(),
            ApiError::IdempotencyMismatch => {
                "this Idempotency-Key was already used with a different request".into()
            }
            ApiError::UriTooLong => "the request line is too long".into(),
            ApiError::UnsupportedMediaType => "the request body must be JSON".into(),
            ApiError::HeadersTooLarge => "the header section is over 16 KiB or 64 lines".into(),
            ApiError::Store(StoreError::Unavailable(_)) => {
                "the service is temporarily unavailable; retry shortly".into()
            }
            ApiError::Store(StoreError::Internal(_)) => "internal error".into(),
            ApiError::StreamsFull => {
                "the server holds as many live-update streams as it may; retry shortly".into()
            }
        }
    }

    /// Members beyond `code` and `message`, already as JSON text after a leading comma.
    fn extra_members(&self, out: &mut Vec<u8>) {
        match self {
            ApiError::InvalidField { field, .. } => {
                out.extend_from_slice(b",\"field\":");
                write_json_str(out, field);
            }
            ApiError::BidTooLow {
                current_price,
                min_next_bid,
            } => {
                out.extend_from_slice(b",\"current_price\":");
                write_money_or_null(out, *current_price);
                out.extend_from_slice(b",\"min_next_bid\":");
                write_money_or_null(out, Some(*min_next_bid));
            }
            ApiError::AuctionNotOpen(s) => {
                out.extend_from_slice(b",\"status\":");
                write_json_str(out, s.as_str());
            }
            _ => {}
        }
    }

    pub fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(128);
        body.extend_from_slice(b"{\"error\":{\"code\":");
        write_json_str(&mut body, self.code());
        body.extend_from_slice(b",\"message\":");
        write_json_str(&mut body, &self.message());
        self.extra_members(&mut body);
        body.extend_from_slice(b"}}");
        let mut resp = Response::json(self.status(), body);
        match self {
            ApiError::MethodNotAllowed { allow } => resp.header("Allow", allow),
            ApiError::Unauthorized(_) => resp.header("WWW-Authenticate", "Bearer"),
            ApiError::Store(StoreError::Unavailable(_)) | ApiError::StreamsFull => {
                resp.header("Retry-After", RETRY_AFTER_SECS.to_string())
            }
            _ => {}
        }
        resp
    }
}

impl From<&HttpError> for ApiError {
    fn from(e: &HttpError) -> Self {
        match e {
            HttpError::BadRequest(m) => ApiError::BadRequest(m),
            HttpError::InvalidContentLength => {
                ApiError::BadRequest("Content-Length must be one plain decimal number")
            }
            HttpError::ConflictingFraming => ApiError::BadRequest(
                "a request may not carry both Transfer-Encoding and Content-Length",
            ),
            HttpError::UriTooLong => ApiError::UriTooLong,
            HttpError::HeadersTooLarge => ApiError::HeadersTooLarge,
            HttpError::PayloadTooLarge => ApiError::PayloadTooLarge,
            HttpError::UnsupportedTransferEncoding => {
                ApiError::NotImplemented("only the chunked transfer coding is supported")
            }
            HttpError::RequestTimeout => ApiError::RequestTimeout,
            HttpError::MethodNotImplemented => {
                ApiError::NotImplemented("the request method is not implemented")
            }
        }
    }
}

/// Second (since the epoch) of the last "database unavailable" line: during an outage every request
/// fails the same way, and one line a second says so without flooding the log.
static LAST_UNAVAILABLE_LOG_SECS: AtomicU64 = AtomicU64::new(0);

fn first_this_second(last: &AtomicU64) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let before = last.swap(now, Ordering::Relaxed);
    before != now
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Store(e)
    }
}

impl ApiError {
    /// Logs what the client is not told: storage failures, with the request's id. During an
    /// outage, one "database unavailable" line a second.
    pub fn log(&self, request_id: &str) {
        match self {
            ApiError::Store(StoreError::Unavailable(why))
                if first_this_second(&LAST_UNAVAILABLE_LOG_SECS) =>
            {
                crate::logging::warn(
                    "database unavailable",
                    &[("error", why), ("request_id", &request_id)],
                );
            }
            ApiError::Store(StoreError::Internal(why)) => crate::logging::error(
                "database error",
                &[("error", why), ("request_id", &request_id)],
            ),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(e: ApiError) -> (u16, String) {
        let r = e.into_response();
        (r.status, String::from_utf8(r.body).unwrap())
    }

    #[test]
    fn bid_too_low_body() {
        let (status, b) = body(ApiError::BidTooLow {
            current_price: None,
            min_next_bid: Money::from_cents(10_000),
        });
        assert_eq!(status, 409);
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["error"]["code"], "bid_too_low");
        assert!(v["error"]["current_price"].is_null());
        assert_eq!(v["error"]["min_next_bid"], "100.00");
    }

    #[test]
    fn invalid_field_names_the_field() {
        let (status, b) = body(ApiError::field("amount", "is required"));
        assert_eq!(status, 400);
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["error"]["field"], "amount");
        assert_eq!(v["error"]["message"], "amount is required");
    }

    #[test]
    fn outage_lines_are_throttled_to_one_a_second() {
        let last = AtomicU64::new(0);
        assert!(first_this_second(&last));
        assert!(!first_this_second(&last));
        last.store(1, Ordering::Relaxed);
        assert!(first_this_second(&last));
    }

    #[test]
    fn storage_details_never_reach_the_client() {
        let secret = "relation \"auctions\" does not exist at /var/lib";
        let (status, b) = body(ApiError::Store(StoreError::Internal(secret.into())));
        assert_eq!(status, 500);
        assert!(!b.contains("relation") && !b.contains("/var/lib"), "{b}");
        let (status, b) = body(ApiError::Store(StoreError::Unavailable(secret.into())));
        assert_eq!(status, 503);
        assert!(!b.contains("relation"), "{b}");
    }

    #[test]
    fn unavailable_has_retry_after() {
        let r = ApiError::Store(StoreError::Unavailable("down".into())).into_response();
        assert_eq!(r.status, 503);
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| *k == "Retry-After" && v == "1"));
    }
}
