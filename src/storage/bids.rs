//! Placing bids: a batch decided by `gavel_place_bids` in one statement and one transaction.

use super::keys::keyed_from_code;
use super::pg::{Client, PgError, Row, StatementDef, ToSql, Type};
use super::StoreError;
use crate::domain::auction::{Bid, BidState, Status};
use crate::domain::bid::{BidDecision, BidInput, BidOutcome};
use crate::domain::idempotency::Keyed;
use crate::domain::money::Money;

pub(crate) static PLACE_BIDS: StatementDef = StatementDef {
    name: "place_bids",
    sql: "SELECT ord, replay, outcome, bid_id, accepted_at, not_open_state, current_price, \
          min_next_bid, seller_id, start_price, min_increment, starts_at, ends_at, bid_count \
          FROM gavel_place_bids($1, $2, $3, $4, $5, $6)",
    param_types: &[
        Type::INT8_ARRAY,
        Type::INT8_ARRAY,
        Type::NUMERIC_ARRAY,
        Type::INT8_ARRAY,
        Type::TEXT_ARRAY,
        Type::BYTEA_ARRAY,
    ],
};

/// Decides a batch of bids in one statement and one transaction; answers in the order given.
pub fn place_bids(client: &Client, bids: &[BidInput]) -> Result<Vec<BidDecision>, StoreError> {
    let auctions: Vec<i64> = bids.iter().map(|b| b.auction_id).collect();
    let bidders: Vec<i64> = bids.iter().map(|b| b.bidder_id).collect();
    let amounts: Vec<Money> = bids.iter().map(|b| b.amount).collect();
    let claims = || bids.iter().map(|b| b.key.as_ref());
    let callers: Vec<Option<i64>> = claims().map(|k| k.map(|k| k.caller)).collect();
    let keys: Vec<Option<&str>> = claims().map(|k| k.map(|k| k.key.as_str())).collect();
    let hashes: Vec<Option<&[u8]>> = claims().map(|k| k.map(|k| &k.request_hash[..])).collect();
    let params: [&(dyn ToSql + Sync); 6] =
        [&auctions, &bidders, &amounts, &callers, &keys, &hashes];
    let rows = query_retrying_key_races(client, &PLACE_BIDS, &params)?;
    let mut decided: Vec<Option<BidDecision>> = vec![None; bids.len()];
    for row in &rows {
        let ord: i32 = row.get(0)?;
        let i = usize::try_from(ord - 1)
            .ok()
            .filter(|&i| i < bids.len())
            .ok_or_else(|| StoreError::internal("bid batch answered an unknown position"))?;
        debug_assert!(decided[i].is_none(), "a bid answered twice");
        decided[i] = Some(bid_decision(row, &bids[i])?);
    }
    decided
        .into_iter()
        .map(|d| d.ok_or_else(|| StoreError::internal("bid batch left a bid unanswered")))
        .collect()
}

/// How many times a batch runs again after a concurrent request wrote one of its new idempotency
/// keys first. Each run after the first finds that key written and replays it, so a second run
/// fails again only if yet another request raced it on another of the batch's keys; a few runs
/// cover every realistic client, and past them the batch gets 503 (nothing was decided).
const MAX_KEY_RACE_RUNS: usize = 4;

/// How `gavel_place_bids` fails when a key it decided was written meanwhile by another
/// transaction: a unique violation of the keys' primary key; the whole batch was rolled back.
fn is_key_race(e: &PgError) -> bool {
    matches!(e, PgError::Db { code, constraint: Some(c), .. }
        if code == UNIQUE_VIOLATION && c == "idempotency_keys_pkey")
}

const UNIQUE_VIOLATION: &str = "23505";

fn query_retrying_key_races(
    client: &Client,
    statement: &StatementDef,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, StoreError> {
    let mut run = 1;
    loop {
        match client.query(statement, params) {
            Err(e) if is_key_race(&e) && run < MAX_KEY_RACE_RUNS => run += 1,
            Err(e) if is_key_race(&e) => {
                return Err(StoreError::Unavailable(format!(
                    "idempotency keys raced {run} times in a row"
                )))
            }
            other => return Ok(other?),
        }
    }
}

/// Where the decision's columns start in a `gavel_place_bids` row (after `ord` and `replay`).
const DECISION_COLUMN: usize = 2;

fn bid_decision(row: &Row, input: &BidInput) -> Result<BidDecision, StoreError> {
    let replay = keyed_from_code(row.get(1)?)?;
    if replay == Keyed::Reused {
        return Ok(BidDecision {
            answer: Keyed::Reused,
            state: None,
        });
    }
    let col = |i: usize| DECISION_COLUMN + i;
    let outcome = bid_outcome(row, input)?;
    let state = match (&replay, &outcome) {
        (Keyed::Fresh(()), BidOutcome::NotFound) | (Keyed::Replayed(()), _) => None,
        _ => Some(BidState {
            seller_id: row.get(col(6))?,
            start_price: row.get(col(7))?,
            min_increment: row.get(col(8))?,
            starts_at: row.get(col(9))?,
            ends_at: row.get(col(10))?,
            current_price: row.get(col(4))?,
            bid_count: row.get(col(11))?,
        }),
    };
    Ok(BidDecision {
        answer: replay.with(outcome),
        state,
    })
}

fn bid_outcome(row: &Row, input: &BidInput) -> Result<BidOutcome, StoreError> {
    let col = |i: usize| DECISION_COLUMN + i;
    let outcome: i16 = row.get(col(0))?;
    Ok(match outcome {
        0 => BidOutcome::Accepted(Bid {
            id: row.get(col(1))?,
            auction_id: input.auction_id,
            amount: input.amount,
            bidder_id: input.bidder_id,
            is_winning: true,
            created_at: row.get(col(2))?,
        }),
        1 => BidOutcome::NotFound,
        2 => {
            let state: &str = row.get(col(3))?;
            BidOutcome::NotOpen(
                Status::parse(state).ok_or_else(|| StoreError::internal("bad state"))?,
            )
        }
        3 => BidOutcome::Forbidden,
        4 => BidOutcome::TooLow {
            current_price: row.get(col(4))?,
            min_next_bid: row.get(col(5))?,
        },
        _ => return Err(StoreError::internal("unknown bid outcome")),
    })
}
