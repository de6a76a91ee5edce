//! The route table: every path the API serves and its methods. The router dispatches from it, and
//! the OpenAPI document (`openapi.json`, served at `/openapi.json`) is tested against it, so the
//! document cannot drift from the routes the server really has.

use super::context::{ApiResult, WorkerContext};
use super::error::ApiError;
use super::events::Opening;
use super::{auctions, bids, events, health};
use crate::domain::parse_id;
use crate::http::{Request, Response};

/// A handler gets the ID in the path (0 for paths without one).
pub(super) type Handler = fn(&WorkerContext, &Request<'_>, i64) -> ApiResult;

/// A handler whose answer opens a stream: it also says what to follow once the connection is
/// handed over.
pub(super) type StreamHandler =
    fn(&WorkerContext, &Request<'_>, i64) -> Result<(Response, Option<Opening>), ApiError>;

/// What answers one method of a route.
pub(super) enum Answer {
    Plain(Handler),
    Stream(StreamHandler),
}

pub struct RouteSpec {
    /// The path as the OpenAPI document writes it. At most one `{name}` segment: an ID
    /// (canonical decimal, 1 to `i64::MAX`); a path whose ID is not one matches no route (404).
    pub path: &'static str,
    /// The `Allow` header: the methods served, `HEAD` wherever `GET` is.
    pub allow: &'static str,
    /// Answers `GET` and `HEAD` (the HTTP layer drops a HEAD answer's body).
    pub(super) get: Option<Handler>,
    pub(super) post: Option<Handler>,
    /// Answers `GET` and `HEAD` with a stream instead of `get`.
    pub(super) stream: Option<StreamHandler>,
}

impl RouteSpec {
    /// The methods served, as `Allow` lists them.
    pub fn methods(&self) -> impl Iterator<Item = &'static str> {
        self.allow.split(", ")
    }

    /// The handler for `method`, or `None` when this path does not serve it (405).
    pub(super) fn handler(&self, method: &str) -> Option<Answer> {
        match method {
            "GET" | "HEAD" => match self.stream {
                Some(stream) => Some(Answer::Stream(stream)),
                None => self.get.map(Answer::Plain),
            },
            "POST" => self.post.map(Answer::Plain),
            _ => None,
        }
    }

    /// The path's ID (0 when the template has none) when `path` matches this template.
    fn matches(&self, path: &str) -> Option<i64> {
        match self.path.split_once('{') {
            None => (self.path == path).then_some(0),
            Some((prefix, rest)) => {
                let suffix = rest.split_once('}').map_or("", |(_, s)| s);
                path.strip_prefix(prefix)?
                    .strip_suffix(suffix)
                    .and_then(parse_id)
            }
        }
    }
}

/// The OpenAPI 3.1 document of the whole API, kept beside this file.
pub const OPENAPI_JSON: &[u8] = include_bytes!("openapi.json");

pub const ROUTES: &[RouteSpec] = &[
    RouteSpec {
        path: "/health",
        allow: "GET, HEAD",
        get: Some(|_, _, _| Ok(Response::json(200, br#"{"status":"ok"}"#.to_vec()))),
        post: None,
        stream: None,
    },
    RouteSpec {
        path: "/ready",
        allow: "GET, HEAD",
        get: Some(|ctx, _, _| health::ready(ctx)),
        post: None,
        stream: None,
    },
    RouteSpec {
        path: "/api/auctions",
        allow: "GET, HEAD, POST",
        get: Some(|ctx, req, _| auctions::list_auctions(ctx, req)),
        post: Some(|ctx, req, _| auctions::create_auction(ctx, req)),
        stream: None,
    },
    RouteSpec {
        path: "/api/auctions/{id}",
        allow: "GET, HEAD",
        get: Some(auctions::get_auction),
        post: None,
        stream: None,
    },
    RouteSpec {
        path: "/api/auctions/{id}/events",
        allow: "GET, HEAD",
        get: None,
        post: None,
        stream: Some(events::open),
    },
    RouteSpec {
        path: "/api/bids",
        allow: "POST",
        get: None,
        post: Some(|ctx, req, _| bids::place_bid(ctx, req)),
        stream: None,
    },
    RouteSpec {
        path: "/api/bids/{auction_id}",
        allow: "GET, HEAD",
        get: Some(bids::list_bids),
        post: None,
        stream: None,
    },
    RouteSpec {
        path: "/openapi.json",
        allow: "GET, HEAD",
        get: Some(|_, _, _| Ok(Response::json(200, OPENAPI_JSON.to_vec()))),
        post: None,
        stream: None,
    },
];

/// The route serving `path` and the path's ID (0 when it has none); `None` is a 404.
/// Every route label an answer can carry: each route's template, then `UNROUTED` (errors before
/// routing, paths no route serves). Registered with the metrics at start-up.
pub fn route_labels() -> Vec<&'static str> {
    ROUTES
        .iter()
        .map(|r| r.path)
        .chain([crate::http::UNROUTED])
        .collect()
}

pub fn find(path: &str) -> Option<(&'static RouteSpec, i64)> {
    ROUTES
        .iter()
        .find_map(|r| r.matches(path).map(|id| (r, id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    // That the OpenAPI document lists exactly these routes is tested in tests/openapi.rs.

    #[test]
    fn allow_lists_exactly_the_methods_with_handlers() {
        for r in ROUTES {
            let mut served = Vec::new();
            if r.get.is_some() || r.stream.is_some() {
                served.extend(["GET", "HEAD"]);
            }
            if r.post.is_some() {
                served.push("POST");
            }
            assert_eq!(r.methods().collect::<Vec<_>>(), served, "{}", r.path);
            for m in ["PUT", "PATCH", "DELETE", "OPTIONS", "get", "TRACE"] {
                assert!(r.handler(m).is_none(), "{} {m}", r.path);
            }
        }
    }

    #[test]
    fn every_path_finds_its_own_route_and_only_ids_fill_templates() {
        for r in ROUTES {
            let concrete = match r.path.split_once('{') {
                None => r.path.to_owned(),
                Some((prefix, rest)) => {
                    let (_, suffix) = rest.split_once('}').unwrap();
                    format!("{prefix}9223372036854775807{suffix}")
                }
            };
            let (found, _) = find(&concrete).unwrap();
            assert_eq!(found.path, r.path);
        }
        assert_eq!(
            find("/api/auctions/42").map(|(r, id)| (r.path, id)),
            Some(("/api/auctions/{id}", 42))
        );
        assert_eq!(
            find("/api/auctions/42/events").map(|(r, id)| (r.path, id)),
            Some(("/api/auctions/{id}/events", 42))
        );
        for unknown in [
            "/",
            "/api",
            "/api/auctions/",
            "/api/auctions/0",
            "/api/auctions/01",
            "/api/auctions/1e3",
            "/api/auctions/abc",
            "/api/auctions/1/",
            "/api/auctions/1/bids",
            "/api/auctions/1/events/",
            "/api/auctions/0/events",
            "/api/auctions//events",
            "/api/auctions/x/events",
            "/api/bids/-1",
            "/api/auctions/9223372036854775808",
            "/health/",
            "/HEALTH",
            "/openapi",
        ] {
            assert!(find(unknown).is_none(), "{unknown}");
        }
    }
}
