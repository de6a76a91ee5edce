//! Cross-origin resource sharing: which origins may read responses, and preflight answers.

use super::message::{Request, Response};

/// Which browser origins may call the API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Cors {
    /// Any origin (`Access-Control-Allow-Origin: *`).
    #[default]
    Any,
    /// Only these exact origins (e.g. `https://app.example.com`), echoed back when they match.
    List(Vec<String>),
}

const ALLOW_METHODS: &str = "GET, POST, OPTIONS";
const DEFAULT_ALLOW_HEADERS: &str = "authorization, content-type, idempotency-key";
/// Response headers browsers hide from scripts unless exposed; clients need these three.
pub(crate) const EXPOSE_HEADERS: &str = "location, retry-after, x-request-id";
/// Browsers may cache a preflight this long (a day), saving a round trip per request.
const MAX_AGE_SECS: &str = "86400";

/// The CORS part of a response, borrowed from the request and the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CorsHeaders<'a> {
    /// Value of `Access-Control-Allow-Origin`, when the origin is allowed.
    pub(crate) allow_origin: Option<&'a [u8]>,
    /// The answer depends on `Origin`, so caches must key on it.
    pub(crate) vary_origin: bool,
}

impl Cors {
    /// CORS headers for a response to a request that carried `origin` (or none).
    pub(crate) fn headers_for<'a>(&'a self, origin: Option<&'a [u8]>) -> CorsHeaders<'a> {
        match self {
            Cors::Any => CorsHeaders {
                allow_origin: origin.map(|_| &b"*"[..]),
                vary_origin: false,
            },
            Cors::List(allowed) => CorsHeaders {
                allow_origin: origin.filter(|o| allowed.iter().any(|a| a.as_bytes() == *o)),
                vary_origin: true,
            },
        }
    }
}

/// A preflight is an `OPTIONS` request with `Origin` and `Access-Control-Request-Method`; the
/// layer answers it without the service.
pub(crate) fn is_preflight(req: &Request<'_>) -> bool {
    req.method == "OPTIONS"
        && req.header("origin").is_some()
        && req.header("access-control-request-method").is_some()
}

/// The 204 answering a preflight. Allow-Origin and Vary are added with the other CORS headers
/// when the response is written; an origin that is not allowed gets none of them, so the browser
/// refuses the actual request.
pub(crate) fn preflight_response(cors: &CorsHeaders<'_>, req: &Request<'_>) -> Response {
    let mut resp = Response::new(204);
    if cors.allow_origin.is_none() {
        return resp;
    }
    resp.header("Access-Control-Allow-Methods", ALLOW_METHODS);
    let allow_headers = req
        .header("access-control-request-headers")
        .map(|h| String::from_utf8_lossy(h).into_owned())
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ALLOW_HEADERS.to_owned());
    resp.header("Access-Control-Allow-Headers", allow_headers);
    resp.header("Access-Control-Max-Age", MAX_AGE_SECS);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::message::Header;

    fn request<'a>(method: &'a str, headers: &'a [Header<'a>]) -> Request<'a> {
        Request {
            request_id: "",
            method,
            path: "/v1/auctions",
            query: None,
            version_minor: 1,
            headers,
            body: b"",
        }
    }

    #[test]
    fn any_allows_every_origin_with_a_star() {
        let h = Cors::Any.headers_for(Some(b"https://a.example"));
        assert_eq!(h.allow_origin, Some(&b"*"[..]));
        assert!(!h.vary_origin);
        assert_eq!(Cors::Any.headers_for(None).allow_origin, None);
    }

    #[test]
    fn list_echoes_exact_matches_only() {
        let cors = Cors::List(vec!["https://a.example".into()]);
        let ok = cors.headers_for(Some(b"https://a.example"));
        assert_eq!(ok.allow_origin, Some(&b"https://a.example"[..]));
        assert!(ok.vary_origin);
        let other = cors.headers_for(Some(b"https://a.example.evil"));
        assert_eq!(other.allow_origin, None);
        assert!(other.vary_origin);
    }

    #[test]
    fn preflight_detection_needs_origin_and_request_method() {
        let full = [
            Header {
                name: "Origin",
                value: b"https://a.example",
            },
            Header {
                name: "Access-Control-Request-Method",
                value: b"POST",
            },
        ];
        assert!(is_preflight(&request("OPTIONS", &full)));
        assert!(!is_preflight(&request("OPTIONS", &full[..1])));
        assert!(!is_preflight(&request("POST", &full)));
    }

    #[test]
    fn preflight_echoes_requested_headers_or_defaults() {
        let with = [Header {
            name: "Access-Control-Request-Headers",
            value: b"x-custom",
        }];
        let allowed = CorsHeaders {
            allow_origin: Some(b"*"),
            vary_origin: false,
        };
        let resp = preflight_response(&allowed, &request("OPTIONS", &with));
        assert_eq!(resp.status, 204);
        assert!(resp
            .headers
            .contains(&("Access-Control-Allow-Headers", "x-custom".into())));
        let resp = preflight_response(&allowed, &request("OPTIONS", &[]));
        assert!(resp
            .headers
            .contains(&("Access-Control-Allow-Headers", DEFAULT_ALLOW_HEADERS.into())));
        assert!(resp
            .headers
            .contains(&("Access-Control-Max-Age", "86400".into())));
        let refused = preflight_response(&CorsHeaders::default(), &request("OPTIONS", &[]));
        assert!(refused.headers.is_empty());
    }
}
