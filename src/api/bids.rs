//! `/api/bids`: place a bid (fast path first, then the worker's batch), list an auction's bids.

use serde::Deserialize;

use super::auth::{Caller, Role};
use super::context::{caller, json_response, now, ApiResult, WorkerContext};
use super::error::ApiError;
use super::fields::{self, require_json, Raw};
use super::idempotency;
use super::query;
use super::report::{bid_outcome, count_bid, count_fast_path, count_keyed};
use super::write;
use super::{DEFAULT_PAGE, MAX_BID_PAGE};
use crate::domain::bid::{BidInput, BidOutcome};
use crate::domain::idempotency::Keyed;
use crate::domain::page::PageQuery;
use crate::http::Request;

#[derive(Deserialize)]
pub(super) struct BidBody<'a> {
    #[serde(borrow)]
    pub(super) auction_id: Raw<'a>,
    #[serde(borrow)]
    pub(super) amount: Raw<'a>,
    #[serde(borrow)]
    pub(super) bidder_id: Raw<'a>,
}

pub(super) fn place_bid(ctx: &WorkerContext, req: &Request<'_>) -> ApiResult {
    let caller = caller(ctx, req)?;
    require_json(req)?;
    let key = idempotency::key(req)?;
    let body: BidBody<'_> = fields::parse_object(req.body)?;
    let auction_id = fields::id("auction_id", body.auction_id)?;
    let amount = fields::money("amount", body.amount)?;
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
        BidOutcome::Accepted(bid) => Ok(json_response(201, |out| write::write_bid(out, &bid))),
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
pub(super) fn bidder_of(caller: Option<Caller>, raw: Raw<'_>) -> Result<i64, ApiError> {
    match caller {
        Some(Caller {
            role: Role::Bidder,
            id,
        }) => match fields::opt_id("bidder_id", raw)? {
            None => Ok(id),
            Some(given) if given == id => Ok(id),
            Some(_) => Err(ApiError::Forbidden("the token is for another bidder")),
        },
        Some(Caller {
            role: Role::Seller, ..
        }) => Err(ApiError::Forbidden("a seller's token may not bid")),
        _ => fields::id("bidder_id", raw),
    }
}

pub(super) fn list_bids(ctx: &WorkerContext, req: &Request<'_>, auction_id: i64) -> ApiResult {
    let params = query::Params::parse(req.query);
    let limit = params
        .int("limit", 1, MAX_BID_PAGE)?
        .unwrap_or(DEFAULT_PAGE);
    let before_id = params.int("before_id", 1, i64::MAX)?;
    let asked = PageQuery {
        auction_id,
        before_id,
        limit,
    };
    let page = ctx.store.bids_page(asked)?.ok_or(ApiError::NotFound)?;
    let cursor = page.more.then(|| page.items.last().map(|b| b.id)).flatten();
    Ok(json_response(200, |out| {
        write::write_page(
            out,
            "bids",
            &page.items,
            "next_before_id",
            cursor,
            write::write_bid,
        )
    }))
}
