use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::model::format_money;

#[derive(Serialize)]
struct Envelope {
    error: ErrorBody,
}

#[derive(Serialize)]
struct ErrorBody {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'static str>,
    /// `Some(None)` is written as `null`: bid_too_low always carries the member.
    #[serde(skip_serializing_if = "Option::is_none")]
    current_price: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_next_bid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
}

#[derive(Debug)]
pub enum ApiError {
    BadRequest(&'static str),
    InvalidJson(&'static str),
    InvalidField {
        field: &'static str,
        message: String,
    },
    Forbidden(&'static str),
    NotFound,
    MethodNotAllowed,
    BidTooLow {
        current_price: Option<Decimal>,
        min_next_bid: Decimal,
    },
    AuctionNotOpen(&'static str),
    PayloadTooLarge,
    UnsupportedMediaType,
    Unavailable,
    Internal,
}

impl ApiError {
    pub fn field(field: &'static str, message: impl Into<String>) -> Self {
        ApiError::InvalidField {
            field,
            message: message.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::InvalidJson(_) | ApiError::InvalidField { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BidTooLow { .. } | ApiError::AuctionNotOpen(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::BidTooLow { .. } => "bid_too_low",
            ApiError::AuctionNotOpen(_) => "auction_not_open",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal => "internal",
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::BadRequest(m) | ApiError::InvalidJson(m) | ApiError::Forbidden(m) => {
                (*m).to_owned()
            }
            ApiError::InvalidField { field, message } => format!("{field} {message}"),
            ApiError::NotFound => "no such resource".into(),
            ApiError::MethodNotAllowed => "method not allowed".into(),
            ApiError::BidTooLow { min_next_bid, .. } => {
                format!("the bid must be at least {}", format_money(*min_next_bid))
            }
            ApiError::AuctionNotOpen(status) => format!("the auction is {status}"),
            ApiError::PayloadTooLarge => "the request body is over 64 KiB".into(),
            ApiError::UnsupportedMediaType => "the request body must be JSON".into(),
            ApiError::Unavailable => "the service is temporarily unavailable; retry shortly".into(),
            ApiError::Internal => "internal error".into(),
        }
    }

    fn body(&self) -> ErrorBody {
        let mut body = ErrorBody {
            code: self.code(),
            message: self.message(),
            field: None,
            current_price: None,
            min_next_bid: None,
            status: None,
        };
        match self {
            ApiError::InvalidField { field, .. } => body.field = Some(field),
            ApiError::BidTooLow {
                current_price,
                min_next_bid,
            } => {
                body.current_price = Some(current_price.map(format_money));
                body.min_next_bid = Some(format_money(*min_next_bid));
            }
            ApiError::AuctionNotOpen(status) => body.status = Some(status),
            _ => {}
        }
        body
    }

    /// Maps a bare error status produced outside the handlers (router, timeout layer) to its error.
    pub fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => ApiError::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT => ApiError::Unavailable,
            s if s.is_client_error() => ApiError::BadRequest("the request is malformed"),
            _ => ApiError::Internal,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&Envelope { error: self.body() }).unwrap_or_default();
        let mut res = Response::new(Body::from(body));
        *res.status_mut() = self.status();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if matches!(self, ApiError::Unavailable) {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        res
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if is_unavailable(&err) {
            tracing::warn!(error = %err, "database unavailable");
            ApiError::Unavailable
        } else {
            tracing::error!(error = %err, "database error");
            ApiError::Internal
        }
    }
}

/// Errors that mean "the database cannot be reached right now" rather than a bug, so clients retry.
fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Class 08 is connection failures; 57P0x is the server shutting down or starting up.
            code.starts_with("08") || code.starts_with("57P")
        }),
        _ => false,
    }
}
