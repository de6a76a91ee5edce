//! API: routes, request decoding, handlers and error answers. The only layer that decides status codes.

pub mod auth;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod idempotency;
pub mod json;
mod query;
pub mod routes;

use crate::cache::{BidCache, CacheStatus};
use crate::domain::auction::{Draft, End, Status, MAX_DURATION_SECS, MAX_EXTENSION_SECS};
use crate::domain::bid::{BidInput, BidOutcome};
use crate::domain::idempotency::{KeyClaim, Keyed};
use crate::domain::time::Timestamp;
use crate::http::{HttpError, Request, Response, Service, UNROUTED};
use crate::metrics::{self, WorkerMetrics};
use crate::storage::auctions::CreatedAuction;
use crate::storage::Store;
use auth::{Auth, Caller, Role};
use error::ApiError;
use json::Raw;
pub use routes::{RouteSpec, OPENAPI_JSON, ROUTES};
use serde::Deserialize;
use std::sync::Arc;

/// Page size bounds of API.md: auctions 1–200 (default 50), bids 1–500 (default 50).
pub const MAX_AUCTION_PAGE: i64 = 200;
pub const MAX_BID_PAGE: i64 = 500;
pub const DEFAULT_PAGE: i64 = 50;

/// What one worker's request handlers share: its own database connections and cache client.
pub struct WorkerContext {
    pub worker: usize,
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

type ApiResult = Result<Response, ApiError>;

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

/// Counts a decided bid in the worker's metrics.
fn count_bid(ctx: &WorkerContext, outcome: metrics::BidOutcome) {
    if let Some(m) = ctx.metrics {
        m.bid(outcome);
    }
}

/// Counts what came of a request with an `Idempotency-Key`.
fn count_keyed<T>(ctx: &WorkerContext, answer: &Keyed<T>) {
    if let Some(m) = ctx.metrics {
        m.idempotent(match answer {
            Keyed::Fresh(_) => metrics::KeyResult::Fresh,
            Keyed::Replayed(_) => metrics::KeyResult::Replayed,
            Keyed::Reused => metrics::KeyResult::Mismatch,
        });
    }
}

/// Counts a fast-path lookup; a hit is also a bid decided too low.
fn count_fast_path(ctx: &WorkerContext, hit: bool) {
    if let Some(m) = ctx.metrics {
        m.fast_path(hit);
        if hit {
            m.bid(metrics::BidOutcome::TooLow);
        }
    }
}

/// The metrics outcome of a bid PostgreSQL decided.
fn bid_outcome(outcome: &BidOutcome) -> metrics::BidOutcome {
    match outcome {
        BidOutcome::Accepted(_) => metrics::BidOutcome::Accepted,
        BidOutcome::TooLow { .. } => metrics::BidOutcome::TooLow,
        BidOutcome::NotOpen(_) => metrics::BidOutcome::NotOpen,
        BidOutcome::Forbidden => metrics::BidOutcome::Forbidden,
        BidOutcome::NotFound => metrics::BidOutcome::NotFound,
    }
}

fn now() -> Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    Timestamp::from_unix_micros(micros)
}

/// The route template of a found route, `UNROUTED` for a path no route serves.
fn route_label(found: Option<(&'static RouteSpec, i64)>) -> &'static str {
    found.map_or(UNROUTED, |(spec, _)| spec.path)
}

fn route(
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

fn json_response(status: u16, write: impl FnOnce(&mut Vec<u8>)) -> Response {
    let mut body = Vec::with_capacity(512);
    write(&mut body);
    Response::json(status, body)
}

fn ready(ctx: &WorkerContext) -> ApiResult {
    let postgres_up = ctx.store.answers();
    let redis = match ctx.cache.as_ref().map(BidCache::status) {
        None => "disabled",
        Some(CacheStatus::Up) => "up",
        Some(CacheStatus::Down) => "down",
    };
    let (code, status) = match (postgres_up, redis) {
        (false, _) => (503, "unavailable"),
        (true, "up") => (200, "ready"),
        (true, _) => (200, "degraded"),
    };
    let postgres = if postgres_up { "up" } else { "down" };
    let body = format!(r#"{{"status":"{status}","postgres":"{postgres}","redis":"{redis}"}}"#);
    let mut resp = Response::json(code, body.into_bytes());
    if code == 503 {
        resp.header("Retry-After", error::RETRY_AFTER_SECS.to_string());
    }
    Ok(resp)
}

/// Refuses a body whose declared type is not JSON (a missing `Content-Type` counts as JSON).
fn require_json(req: &Request<'_>) -> Result<(), ApiError> {
    let Some(value) = req.header("content-type") else {
        return Ok(());
    };
    let value = std::str::from_utf8(value).map_err(|_| ApiError::UnsupportedMediaType)?;
    let mime = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json = mime == "application/json"
        || (mime.starts_with("application/") && mime.ends_with("+json") && !mime.contains(' '));
    if json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

#[derive(Deserialize)]
struct AuctionBody<'a> {
    #[serde(borrow)]
    title: Raw<'a>,
    #[serde(borrow)]
    seller_id: Raw<'a>,
    #[serde(borrow)]
    start_price: Raw<'a>,
    #[serde(borrow)]
    min_increment: Raw<'a>,
    #[serde(borrow)]
    starts_at: Raw<'a>,
    #[serde(borrow)]
    ends_at: Raw<'a>,
    #[serde(borrow)]
    duration_seconds: Raw<'a>,
    #[serde(borrow)]
    extension_seconds: Raw<'a>,
}

fn auction_draft(b: &AuctionBody<'_>) -> Result<Draft, ApiError> {
    let title = json::string("title", b.title)?;
    let seller_id = json::id("seller_id", b.seller_id)?;
    let start_price = json::money("start_price", b.start_price)?;
    let min_increment = json::opt_money("min_increment", b.min_increment)?;
    let starts_at = json::opt_time("starts_at", b.starts_at)?;
    let end = match (b.ends_at, b.duration_seconds) {
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                "duration_seconds",
                "may not be given together with ends_at",
            ))
        }
        (None, None) => {
            return Err(ApiError::field(
                "ends_at",
                "or duration_seconds is required",
            ))
        }
        (Some(_), None) => {
            End::At(json::opt_time("ends_at", b.ends_at)?.unwrap_or(Timestamp::from_unix_micros(0)))
        }
        (None, Some(_)) => End::AfterSecs(
            json::opt_int("duration_seconds", b.duration_seconds, 1, MAX_DURATION_SECS)?
                .unwrap_or(0),
        ),
    };
    let extension_seconds = json::opt_int(
        "extension_seconds",
        b.extension_seconds,
        0,
        MAX_EXTENSION_SECS,
    )?;
    Ok(Draft {
        title,
        seller_id,
        start_price,
        min_increment,
        starts_at,
        end,
        extension_seconds,
    })
}

/// The verified caller of a POST, or `None` when the server runs open.
fn caller(ctx: &WorkerContext, req: &Request<'_>) -> Result<Option<Caller>, ApiError> {
    ctx.auth
        .as_ref()
        .map(|auth| auth.verify(req.header("authorization")))
        .transpose()
}

fn create_auction(ctx: &WorkerContext, req: &Request<'_>) -> ApiResult {
    let caller = caller(ctx, req)?;
    require_json(req)?;
    let key = idempotency::key(req)?;
    let body: AuctionBody<'_> = json::parse_object(req.body)?;
    let now = now();
    let draft = auction_draft(&body)?;
    match caller {
        Some(Caller {
            role: Role::Bidder, ..
        }) => return Err(ApiError::Forbidden("a bidder may not create auctions")),
        Some(Caller {
            role: Role::Seller,
            id,
        }) if id != draft.seller_id => {
            return Err(ApiError::Forbidden("the token is for another seller"))
        }
        _ => {}
    }
    let claim = key.map(|k| {
        let who = caller.map_or(draft.seller_id, |c| c.id);
        idempotency::claim(k, who, req.path, req.body)
    });
    let new = match draft.validate(now) {
        Ok(new) => new,
        Err(v) => {
            return stored_auction_or(ctx, claim.as_ref(), ApiError::field(v.field, v.reason))
        }
    };
    let created = match &claim {
        None => Keyed::Fresh((ctx.store.insert_auction(&new)?, now)),
        Some(claim) => {
            let created = ctx.store.create_auction_keyed(&new, claim, now)?;
            count_keyed(ctx, &created);
            created
        }
    };
    auction_created(created)
}

/// A retry whose checks depend on the clock (an end time that has passed since) must still get
/// its first answer: the stored one when there is one, else `invalid`.
fn stored_auction_or(
    ctx: &WorkerContext,
    claim: Option<&KeyClaim>,
    invalid: ApiError,
) -> ApiResult {
    match claim {
        Some(claim) => match ctx.store.stored_auction(claim)? {
            Some(stored) => {
                count_keyed(ctx, &stored);
                auction_created(stored)
            }
            None => Err(invalid),
        },
        None => Err(invalid),
    }
}

fn auction_created(created: Keyed<CreatedAuction>) -> ApiResult {
    let ((auction, now), replayed) = match created {
        Keyed::Fresh(a) => (a, false),
        Keyed::Replayed(a) => (a, true),
        Keyed::Reused => return Err(ApiError::IdempotencyMismatch),
    };
    let mut resp = json_response(201, |out| json::write_auction(out, &auction, now));
    resp.header("Location", format!("/api/auctions/{}", auction.id));
    if replayed {
        idempotency::mark_replayed(&mut resp);
    }
    Ok(resp)
}

fn get_auction(ctx: &WorkerContext, _req: &Request<'_>, id: i64) -> ApiResult {
    let auction = ctx.store.auction(id)?.ok_or(ApiError::NotFound)?;
    let now = now();
    Ok(json_response(200, |out| {
        json::write_auction(out, &auction, now)
    }))
}

fn list_auctions(ctx: &WorkerContext, req: &Request<'_>) -> ApiResult {
    let params = query::Params::parse(req.query);
    let status =
        match params.get("status") {
            None => None,
            Some(s) => Some(Status::parse(&s).ok_or_else(|| {
                ApiError::field("status", "must be one of scheduled, open, closed")
            })?),
        };
    let limit = params
        .int("limit", 1, MAX_AUCTION_PAGE)?
        .unwrap_or(DEFAULT_PAGE);
    let after_id = params.int("after_id", 0, i64::MAX)?.unwrap_or(0);
    let now = now();
    let page = ctx.store.list_auctions(status, after_id, limit, now)?;
    let cursor = page.more.then(|| page.items.last().map(|a| a.id)).flatten();
    Ok(json_response(200, |out| {
        json::write_page(
            out,
            "auctions",
            &page.items,
            "next_after_id",
            cursor,
            |o, a| json::write_auction(o, a, now),
        )
    }))
}

#[derive(Deserialize)]
struct BidBody<'a> {
    #[serde(borrow)]
    auction_id: Raw<'a>,
    #[serde(borrow)]
    amount: Raw<'a>,
    #[serde(borrow)]
    bidder_id: Raw<'a>,
}

fn place_bid(ctx: &WorkerContext, req: &Request<'_>) -> ApiResult {
    let caller = caller(ctx, req)?;
    require_json(req)?;
    let key = idempotency::key(req)?;
    let body: BidBody<'_> = json::parse_object(req.body)?;
    let auction_id = json::id("auction_id", body.auction_id)?;
    let amount = json::money("amount", body.amount)?;
    let bidder_id = bidder_of(caller, body.bidder_id)?;
    let claim = key.map(|k| {
        let who = caller.map_or(bidder_id, |c| c.id);
        idempotency::claim(k, who, req.path, req.body)
    });
    // A keyed bid's answer must be stored with the key, so only PostgreSQL may give it.
    if let (Some(cache), None) = (&ctx.cache, &claim) {
        let cached = cache.lookup(auction_id);
        if let Some((current_price, min_next_bid)) =
            cached.and_then(|s| s.certainly_too_low(bidder_id, amount, now()))
        {
            count_fast_path(ctx, true);
            return Err(ApiError::BidTooLow {
                current_price,
                min_next_bid,
            });
        }
        count_fast_path(ctx, false);
    }
    let has_key = claim.is_some();
    let decision = ctx.store.place_bid(BidInput {
        auction_id,
        bidder_id,
        amount,
        key: claim,
    })?;
    if has_key {
        count_keyed(ctx, &decision.answer);
    }
    // Replays decided nothing now, so only fresh decisions are counted.
    if let Keyed::Fresh(outcome) = &decision.answer {
        count_bid(ctx, bid_outcome(outcome));
    }
    if let (Some(cache), Some(state)) = (&ctx.cache, &decision.state) {
        let accepted = matches!(decision.answer, Keyed::Fresh(BidOutcome::Accepted(_)));
        cache.remember(auction_id, state, accepted);
    }
    match decision.answer {
        Keyed::Fresh(outcome) => bid_answer(outcome),
        Keyed::Replayed(outcome) => {
            let mut resp = bid_answer(outcome).unwrap_or_else(ApiError::into_response);
            idempotency::mark_replayed(&mut resp);
            Ok(resp)
        }
        Keyed::Reused => Err(ApiError::IdempotencyMismatch),
    }
}

fn bid_answer(outcome: BidOutcome) -> ApiResult {
    match outcome {
        BidOutcome::Accepted(bid) => Ok(json_response(201, |out| json::write_bid(out, &bid))),
        BidOutcome::NotFound => Err(ApiError::NotFound),
        BidOutcome::NotOpen(status) => Err(ApiError::AuctionNotOpen(status)),
        BidOutcome::Forbidden => Err(ApiError::Forbidden(
            "a seller may not bid on their own auction",
        )),
        BidOutcome::TooLow {
            current_price,
            min_next_bid,
        } => Err(ApiError::BidTooLow {
            current_price,
            min_next_bid,
        }),
    }
}

/// The bidder a bid is for: the body's `bidder_id`, which a bidder's token must match (and may
/// supply when it is left out); a seller's token may not bid.
fn bidder_of(caller: Option<Caller>, raw: Raw<'_>) -> Result<i64, ApiError> {
    match caller {
        Some(Caller {
            role: Role::Bidder,
            id,
        }) => match json::opt_id("bidder_id", raw)? {
            None => Ok(id),
            Some(given) if given == id => Ok(id),
            Some(_) => Err(ApiError::Forbidden("the token is for another bidder")),
        },
        Some(Caller {
            role: Role::Seller, ..
        }) => Err(ApiError::Forbidden("a seller's token may not bid")),
        _ => json::id("bidder_id", raw),
    }
}

fn list_bids(ctx: &WorkerContext, req: &Request<'_>, auction_id: i64) -> ApiResult {
    let params = query::Params::parse(req.query);
    let limit = params
        .int("limit", 1, MAX_BID_PAGE)?
        .unwrap_or(DEFAULT_PAGE);
    let before_id = params.int("before_id", 1, i64::MAX)?;
    let asked = crate::domain::page::PageQuery {
        auction_id,
        before_id,
        limit,
    };
    let page = ctx.store.bids_page(asked)?.ok_or(ApiError::NotFound)?;
    let cursor = page.more.then(|| page.items.last().map(|b| b.id)).flatten();
    Ok(json_response(200, |out| {
        json::write_page(
            out,
            "bids",
            &page.items,
            "next_before_id",
            cursor,
            json::write_bid,
        )
    }))
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
