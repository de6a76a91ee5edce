//! The service behind every connection of a worker: each request routed once, to its handler,
//! and the answer labelled with its route; and the label sets the API reports its metrics under.

use std::sync::Arc;

use super::context::{ApiResult, WorkerContext};
use super::error::ApiError;
use super::events::Opening;
use super::report::{BID_OUTCOMES, FAST_PATH_RESULTS, KEY_RESULTS};
use super::routes::{self, Answer, RouteSpec};
use crate::http::{HttpError, OpenStream, Request, Response, Service, UNROUTED};
use crate::metrics::Labels;

/// The service behind every connection of one worker.
pub struct Api {
    ctx: Arc<WorkerContext>,
    /// The stream the last answer opened, until the connection is handed over.
    opening: Option<Opening>,
}

impl Api {
    pub fn new(ctx: Arc<WorkerContext>) -> Api {
        Api { ctx, opening: None }
    }
}

impl Service for Api {
    /// Finds the route once; the answer, an error included, carries its template as its route
    /// label (a path no route serves, an ID that is not one included, is `UNROUTED`).
    fn call(&mut self, req: &Request<'_>) -> Response {
        let found = routes::find(req.path);
        self.opening = None;
        let mut resp = route(&self.ctx, req, found, &mut self.opening).unwrap_or_else(|e| {
            e.log(req.request_id);
            e.into_response()
        });
        resp.route = route_label(found);
        resp
    }

    fn error(&mut self, err: &HttpError) -> Response {
        ApiError::from(err).into_response()
    }

    fn adopt(&mut self, stream: OpenStream) {
        match self.opening.take() {
            Some(opening) if !opening.closed => self.ctx.live.attach(
                opening.reservation,
                stream,
                opening.position,
                opening.ends_at,
            ),
            _ => stream.end(b""),
        }
    }
}

/// The route template of a found route, `UNROUTED` for a path no route serves.
fn route_label(found: Option<(&'static RouteSpec, i64)>) -> &'static str {
    found.map_or(UNROUTED, |(spec, _)| spec.path)
}

fn route(
    ctx: &WorkerContext,
    req: &Request<'_>,
    found: Option<(&'static RouteSpec, i64)>,
    opening: &mut Option<Opening>,
) -> ApiResult {
    let (spec, id) = found.ok_or(ApiError::NotFound)?;
    let answer = spec
        .handler(req.method)
        .ok_or(ApiError::MethodNotAllowed { allow: spec.allow })?;
    match answer {
        Answer::Plain(handler) => handler(ctx, req, id),
        Answer::Stream(handler) => {
            let (resp, opened) = handler(ctx, req, id)?;
            *opening = opened;
            Ok(resp)
        }
    }
}

/// Every label set the API reports under, registered with the metrics at start-up.
pub fn metric_labels() -> Labels {
    Labels {
        routes: routes::route_labels(),
        bid_outcomes: &BID_OUTCOMES,
        key_results: &KEY_RESULTS,
        fast_path: &FAST_PATH_RESULTS,
    }
}

#[cfg(test)]
mod tests {
    use super::{route_label, routes};

    fn route_template(path: &str) -> &'static str {
        route_label(routes::find(path))
    }

    #[test]
    fn every_path_falls_under_a_known_template() {
        for (path, template) in [
            ("/health", "/health"),
            ("/ready", "/ready"),
            ("/api/auctions", "/api/auctions"),
            ("/api/auctions/17", "/api/auctions/{id}"),
            ("/api/auctions/abc", "other"),
            ("/api/auctions/", "other"),
            ("/api/auctions/1/bids", "other"),
            ("/api/bids", "/api/bids"),
            ("/api/bids/9", "/api/bids/{auction_id}"),
            ("/openapi.json", "/openapi.json"),
            ("/metrics", "other"),
            ("/", "other"),
        ] {
            assert_eq!(route_template(path), template, "{path}");
            assert!(routes::route_labels().contains(&route_template(path)));
        }
    }
}
