//! The types a [`Service`](super::Service) sees: requests, responses and the layer's error.

use std::fmt;

/// One request header as received: the name as sent (ASCII token), the value without surrounding
/// whitespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a str,
    pub value: &'a [u8],
}

impl Header<'_> {
    pub(crate) const EMPTY: Header<'static> = Header {
        name: "",
        value: b"",
    };
}

/// A complete request: head and body, borrowed from the connection's buffers for the duration of
/// one [`Service::call`](super::Service::call).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// As sent, e.g. `GET`; `HEAD` is passed through (the layer strips the response body).
    pub method: &'a str,
    /// The request target before `?`.
    pub path: &'a str,
    /// The request target after the first `?`, if there is one.
    pub query: Option<&'a str>,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub version_minor: u8,
    pub headers: &'a [Header<'a>],
    /// The body, already de-chunked.
    pub body: &'a [u8],
    /// This request's id, also sent back as `X-Request-Id`: the client's own when sane.
    pub request_id: &'a str,
}

impl<'a> Request<'a> {
    /// The first header called `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Every header called `name` (ASCII case-insensitive), in the order received.
    pub fn headers_named<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + 'n
    where
        'a: 'n,
    {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// What a service answers. The layer adds `Date`, `Content-Length`, `Connection`, CORS and
/// encoding headers itself; `headers` holds the service's own (e.g. `Location`, `Allow`,
/// `Retry-After`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The route template the service answered under, for the observer: one of a small fixed
    /// set, never the path itself (a label per auction would grow without bound).
    /// [`UNROUTED`] until the service says otherwise.
    pub route: &'static str,
    pub content_type: Option<&'static str>,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// The body is the start of a stream that stays open (see [`stream`](super::stream)): sent
    /// chunked and uncompressed, after which the connection is handed to
    /// [`Service::adopt`](super::Service::adopt).
    /// Ignored for HEAD and for bodiless statuses.
    pub stream: bool,
}

impl Response {
    /// A response without a body or content type.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            route: UNROUTED,
            content_type: None,
            headers: Vec::new(),
            body: Vec::new(),
            stream: false,
        }
    }

    /// A JSON response (`Content-Type: application/json`).
    pub fn json(status: u16, body: Vec<u8>) -> Response {
        Response::with_body(status, "application/json", body)
    }

    /// A response with the given content type and body.
    pub fn with_body(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status,
            route: UNROUTED,
            content_type: Some(content_type),
            headers: Vec::new(),
            body,
            stream: false,
        }
    }

    /// Adds a header. CR, LF and NUL in the value are written as spaces so a value built from
    /// client input cannot split the response.
    pub fn header(&mut self, name: &'static str, value: impl Into<String>) {
        self.headers.push((name, value.into()));
    }
}

/// Why the layer could not turn the input into a request. Every one ends the connection after
/// the response [`Service::error`] renders for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Malformed request line or header, invalid byte, bad chunked framing.
    BadRequest(&'static str),
    /// `Content-Length` that is not a plain decimal number, or several that differ.
    InvalidContentLength,
    /// Both `Transfer-Encoding` and `Content-Length`: the body's end is ambiguous.
    ConflictingFraming,
    /// Request line longer than [`MAX_REQUEST_LINE_BYTES`](super::MAX_REQUEST_LINE_BYTES).
    UriTooLong,
    /// Header section over [`MAX_HEADER_BYTES`](super::MAX_HEADER_BYTES) or
    /// [`MAX_HEADER_LINES`](super::MAX_HEADER_LINES) (trailers included).
    HeadersTooLarge,
    /// Body over [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES).
    PayloadTooLarge,
    /// A transfer coding other than a lone `chunked`.
    UnsupportedTransferEncoding,
    /// The head or body did not arrive in time.
    RequestTimeout,
    /// A method longer than [`MAX_METHOD_BYTES`](super::MAX_METHOD_BYTES): none the layer
    /// serves.
    MethodNotImplemented,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::BadRequest(why) => write!(f, "bad request: {why}"),
            HttpError::InvalidContentLength => f.write_str("invalid Content-Length"),
            HttpError::ConflictingFraming => {
                f.write_str("both Transfer-Encoding and Content-Length present")
            }
            HttpError::UriTooLong => f.write_str("request line too long"),
            HttpError::HeadersTooLarge => f.write_str("request header section too large"),
            HttpError::PayloadTooLarge => f.write_str("request body too large"),
            HttpError::UnsupportedTransferEncoding => f.write_str("unsupported transfer coding"),
            HttpError::RequestTimeout => f.write_str("request not received in time"),
            HttpError::MethodNotImplemented => f.write_str("request method not implemented"),
        }
    }
}

impl std::error::Error for HttpError {}

/// The route of a response no route answered: errors the layer found before routing, and paths
/// the service does not serve.
pub const UNROUTED: &str = "other";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lookup_is_case_insensitive_and_first_wins() {
        let headers = [
            Header {
                name: "X-A",
                value: b"1",
            },
            Header {
                name: "x-a",
                value: b"2",
            },
        ];
        let req = Request {
            request_id: "",
            method: "GET",
            path: "/",
            query: None,
            version_minor: 1,
            headers: &headers,
            body: b"",
        };
        assert_eq!(req.header("x-A"), Some(&b"1"[..]));
        assert_eq!(req.header("missing"), None);
        assert_eq!(req.headers_named("X-a").count(), 2);
    }
}
