//! `/api/auctions`: create (with or without an idempotency key), read one, list.

use serde::Deserialize;

use super::auth::{Caller, Role};
use super::context::{caller, json_response, now, ApiResult, WorkerContext};
use super::error::ApiError;
use super::fields::{self, require_json, Raw};
use super::idempotency;
use super::query;
use super::report::count_keyed;
use super::write;
use super::{DEFAULT_PAGE, MAX_AUCTION_PAGE};
use crate::domain::auction::{Draft, End, Status, MAX_DURATION_SECS, MAX_EXTENSION_SECS};
use crate::domain::idempotency::{KeyClaim, Keyed};
use crate::domain::time::Timestamp;
use crate::http::Request;
use crate::storage::auctions::CreatedAuction;

#[derive(Deserialize)]
pub(super) struct AuctionBody<'a> {
    #[serde(borrow)]
    pub(super) title: Raw<'a>,
    #[serde(borrow)]
    pub(super) seller_id: Raw<'a>,
    #[serde(borrow)]
    pub(super) start_price: Raw<'a>,
    #[serde(borrow)]
    pub(super) min_increment: Raw<'a>,
    #[serde(borrow)]
    pub(super) starts_at: Raw<'a>,
    #[serde(borrow)]
    pub(super) ends_at: Raw<'a>,
    #[serde(borrow)]
    pub(super) duration_seconds: Raw<'a>,
    #[serde(borrow)]
    pub(super) extension_seconds: Raw<'a>,
}

pub(super) fn auction_draft(b: &AuctionBody<'_>) -> Result<Draft, ApiError> {
    let title = fields::string("title", b.title)?;
    let seller_id = fields::id("seller_id", b.seller_id)?;
    let start_price = fields::money("start_price", b.start_price)?;
    let min_increment = fields::opt_money("min_increment", b.min_increment)?;
    let starts_at = fields::opt_time("starts_at", b.starts_at)?;
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
        (Some(_), None) => End::At(
            fields::opt_time("ends_at", b.ends_at)?.unwrap_or(Timestamp::from_unix_micros(0)),
        ),
        (None, Some(_)) => End::AfterSecs(
            fields::opt_int("duration_seconds", b.duration_seconds, 1, MAX_DURATION_SECS)?
                .unwrap_or(0),
        ),
    };
    let extension_seconds = fields::opt_int(
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

pub(super) fn create_auction(ctx: &WorkerContext, req: &Request<'_>) -> ApiResult {
    let caller = caller(ctx, req)?;
    require_json(req)?;
    let key = idempotency::key(req)?;
    let body: AuctionBody<'_> = fields::parse_object(req.body)?;
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
    let mut resp = json_response(201, |out| write::write_auction(out, &auction, now));
    resp.header("Location", format!("/api/auctions/{}", auction.id));
    if replayed {
        idempotency::mark_replayed(&mut resp);
    }
    Ok(resp)
}

pub(super) fn get_auction(ctx: &WorkerContext, _req: &Request<'_>, id: i64) -> ApiResult {
    let auction = ctx.store.auction(id)?.ok_or(ApiError::NotFound)?;
    let now = now();
    Ok(json_response(200, |out| {
        write::write_auction(out, &auction, now)
    }))
}

pub(super) fn list_auctions(ctx: &WorkerContext, req: &Request<'_>) -> ApiResult {
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
        write::write_page(
            out,
            "auctions",
            &page.items,
            "next_after_id",
            cursor,
            |o, a| write::write_auction(o, a, now),
        )
    }))
}
