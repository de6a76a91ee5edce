//! One worker's request context, and the service that routes each request to its handler.

use std::sync::Arc;

use super::auth::{Auth, Caller};
use super::error::ApiError;
use super::routes::{self, RouteSpec};
use crate::cache::BidCache;
use crate::domain::time::Timestamp;
use crate::http::{HttpError, Request, Response, Service, UNROUTED};
use crate::metrics::WorkerMetrics;
use crate::placement::WorkerId;
use crate::storage::Store;

/// What one worker's request handlers share: its own database connections and cache client.
pub struct WorkerContext {
    pub worker: WorkerId,
    pub store: Store,
    /// `None` when Redis is off.
    pub cache: Option<BidCache>,
    /// `None` when no secret is configured: the server runs open.
    pub auth: Option<Arc<Auth>>,
    /// The worker's metrics slot; `None` when metrics are off.
    pub metrics: Option<&'static WorkerMetrics>,
}

/// The service behind every connection of one worker.
pub struct Api {
    ctx: Arc<WorkerContext>,
}

impl Api {
    pub fn new(ctx: Arc<WorkerContext>) -> Api {
        Api { ctx }
    }
}

pub(super) type ApiResult = Result<Response, ApiError>;

impl Service for Api {
    /// Finds the route once; the answer, an error included, carries its template as its route
    /// label (a path no route serves, an ID that is not one included, is `UNROUTED`).
    fn call(&mut self, req: &Request<'_>) -> Response {
        let found = routes::find(req.path);
        let mut resp = route(&self.ctx, req, found).unwrap_or_else(|e| {
            e.log(req.request_id);
            e.into_response()
        });
        resp.route = route_label(found);
        resp
    }

    fn error(&mut self, err: &HttpError) -> Response {
        ApiError::from(err).into_response()
    }
}

pub(super) fn now() -> Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    Timestamp::from_unix_micros(micros)
}

/// The route template of a found route, `UNROUTED` for a path no route serves.
pub(super) fn route_label(found: Option<(&'static RouteSpec, i64)>) -> &'static str {
    found.map_or(UNROUTED, |(spec, _)| spec.path)
}

pub(super) fn route(
    ctx: &WorkerContext,
    req: &Request<'_>,
    found: Option<(&'static RouteSpec, i64)>,
) -> ApiResult {
    let (spec, id) = found.ok_or(ApiError::NotFound)?;
    let handler = spec
        .handler(req.method)
        .ok_or(ApiError::MethodNotAllowed { allow: spec.allow })?;
    handler(ctx, req, id)
}

pub(super) fn json_response(status: u16, write: impl FnOnce(&mut Vec<u8>)) -> Response {
    let mut body = Vec::with_capacity(512);
    write(&mut body);
    Response::json(status, body)
}

/// The verified caller of a POST, or `None` when the server runs open.
pub(super) fn caller(ctx: &WorkerContext, req: &Request<'_>) -> Result<Option<Caller>, ApiError> {
    ctx.auth
        .as_ref()
        .map(|auth| auth.verify(req.header("authorization")))
        .transpose()
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
