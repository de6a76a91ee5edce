//! The statements Gavel prepares on every connection, and the typed calls that run them.

use super::pg::{Client, Row, StatementDef, Type};
use super::StoreError;
use crate::domain::auction::{Auction, Bid, BidState, NewAuction, Status};
use crate::domain::money::Money;
use crate::domain::time::Timestamp;

macro_rules! auction_select {
    ($tail:literal) => {
        concat!(
            "SELECT id, title, seller_id, start_price, min_increment, starts_at, ends_at, ",
            "extension_seconds, current_price, leader_id, bid_count, created_at FROM auctions ",
            $tail
        )
    };
}

// Indexes into STATEMENTS; the order of the two must match.
const PING: usize = 0;
const GET_AUCTION: usize = 1;
const INSERT_AUCTION: usize = 2;
const LIST_ALL: usize = 3;
const LIST_SCHEDULED: usize = 4;
const LIST_OPEN: usize = 5;
const LIST_CLOSED: usize = 6;
const PLACE_BIDS: usize = 7;
const LIST_BIDS: usize = 8;
const LIST_BIDS_BEFORE: usize = 9;

/// Lists give `$1` after_id, `$2` row count, `$3` now.
pub static STATEMENTS: &[StatementDef] = &[
    StatementDef {
        name: "ping",
        sql: "SELECT 1::int4",
        param_types: &[],
    },
    StatementDef {
        name: "get_auction",
        sql: auction_select!("WHERE id = $1"),
        param_types: &[Type::INT8],
    },
    StatementDef {
        name: "insert_auction",
        sql: concat!(
            "INSERT INTO auctions (title, seller_id, start_price, min_increment, starts_at, ends_at, ",
            "extension_seconds) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id, title, seller_id, ",
            "start_price, min_increment, starts_at, ends_at, extension_seconds, current_price, ",
            "leader_id, bid_count, created_at"
        ),
        param_types: &[
            Type::TEXT,
            Type::INT8,
            Type::NUMERIC,
            Type::NUMERIC,
            Type::TIMESTAMPTZ,
            Type::TIMESTAMPTZ,
            Type::INT4,
        ],
    },
    StatementDef {
        name: "list_all",
        sql: auction_select!("WHERE id > $1 ORDER BY id LIMIT $2"),
        param_types: &[Type::INT8, Type::INT8, Type::TIMESTAMPTZ],
    },
    StatementDef {
        name: "list_scheduled",
        sql: auction_select!("WHERE id > $1 AND starts_at > $3 ORDER BY id LIMIT $2"),
        param_types: &[Type::INT8, Type::INT8, Type::TIMESTAMPTZ],
    },
    StatementDef {
        name: "list_open",
        sql: auction_select!(
            "WHERE id > $1 AND starts_at <= $3 AND ends_at > $3 ORDER BY id LIMIT $2"
        ),
        param_types: &[Type::INT8, Type::INT8, Type::TIMESTAMPTZ],
    },
    StatementDef {
        name: "list_closed",
        sql: auction_select!("WHERE id > $1 AND ends_at <= $3 ORDER BY id LIMIT $2"),
        param_types: &[Type::INT8, Type::INT8, Type::TIMESTAMPTZ],
    },
    StatementDef {
        name: "place_bids",
        sql: "SELECT ord, outcome, bid_id, accepted_at, not_open_state, current_price, min_next_bid, \
              seller_id, start_price, min_increment, starts_at, ends_at, bid_count \
              FROM gavel_place_bids($1, $2, $3)",
        param_types: &[Type::INT8_ARRAY, Type::INT8_ARRAY, Type::NUMERIC_ARRAY],
    },
    StatementDef {
        name: "list_bids",
        sql: "SELECT a.current_price, b.id, b.amount, b.bidder_id, b.created_at FROM auctions a \
              LEFT JOIN LATERAL (SELECT id, amount, bidder_id, created_at FROM bids \
              WHERE auction_id = a.id ORDER BY id DESC LIMIT $2) b ON true WHERE a.id = $1",
        param_types: &[Type::INT8, Type::INT8],
    },
    StatementDef {
        name: "list_bids_before",
        sql: "SELECT a.current_price, b.id, b.amount, b.bidder_id, b.created_at FROM auctions a \
              LEFT JOIN LATERAL (SELECT id, amount, bidder_id, created_at FROM bids \
              WHERE auction_id = a.id AND id < $3 ORDER BY id DESC LIMIT $2) b ON true WHERE a.id = $1",
        param_types: &[Type::INT8, Type::INT8, Type::INT8],
    },
];

/// What the database decided for one bid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BidOutcome {
    Accepted(Bid),
    NotFound,
    NotOpen(Status),
    Forbidden,
    TooLow {
        current_price: Option<Money>,
        min_next_bid: Money,
    },
}

/// A page of results plus whether more rows followed it.
pub struct Page<T> {
    pub items: Vec<T>,
    pub more: bool,
}

pub fn ping(client: &Client) -> Result<(), StoreError> {
    client.query(PING, &[])?;
    Ok(())
}

pub fn get_auction(client: &Client, id: i64) -> Result<Option<Auction>, StoreError> {
    let rows = client.query(GET_AUCTION, &[&id])?;
    rows.first().map(auction_from_row).transpose()
}

pub fn insert_auction(client: &Client, a: &NewAuction) -> Result<Auction, StoreError> {
    let rows = client.query(
        INSERT_AUCTION,
        &[
            &a.title,
            &a.seller_id,
            &a.start_price,
            &a.min_increment,
            &a.starts_at,
            &a.ends_at,
            &a.extension_seconds,
        ],
    )?;
    let row = rows
        .first()
        .ok_or_else(|| StoreError::internal("insert returned no row"))?;
    auction_from_row(row)
}

/// Auctions with `id > after_id` in id order, filtered on their status at `now`.
pub fn list_auctions(
    client: &Client,
    status: Option<Status>,
    after_id: i64,
    limit: i64,
    now: Timestamp,
) -> Result<Page<Auction>, StoreError> {
    let stmt = match status {
        None => LIST_ALL,
        Some(Status::Scheduled) => LIST_SCHEDULED,
        Some(Status::Open) => LIST_OPEN,
        Some(Status::Closed) => LIST_CLOSED,
    };
    let fetch = limit + 1;
    let rows = client.query(stmt, &[&after_id, &fetch, &now])?;
    let mut items = rows
        .iter()
        .map(auction_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    Ok(Page { items, more })
}

/// One bid to decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BidInput {
    pub auction_id: i64,
    pub bidder_id: i64,
    pub amount: Money,
}

/// What the database decided for one bid, and the auction's state as that decision saw it (none
/// when the auction does not exist).
pub type BidDecision = (BidOutcome, Option<BidState>);

/// Decides a batch of bids in one statement and one transaction; answers in the order given.
pub fn place_bids(client: &Client, bids: &[BidInput]) -> Result<Vec<BidDecision>, StoreError> {
    let auctions: Vec<i64> = bids.iter().map(|b| b.auction_id).collect();
    let bidders: Vec<i64> = bids.iter().map(|b| b.bidder_id).collect();
    let amounts: Vec<Money> = bids.iter().map(|b| b.amount).collect();
    let rows = client.query(PLACE_BIDS, &[&auctions, &bidders, &amounts])?;
    let mut decided: Vec<Option<BidDecision>> = vec![None; bids.len()];
    for row in &rows {
        let ord: i32 = row.get(0)?;
        let slot = usize::try_from(ord - 1)
            .ok()
            .and_then(|i| decided.get_mut(i))
            .ok_or_else(|| StoreError::internal("bid batch answered an unknown position"))?;
        let input = bids[(ord - 1) as usize];
        *slot = Some(bid_decision(row, input)?);
    }
    decided
        .into_iter()
        .map(|d| d.ok_or_else(|| StoreError::internal("bid batch left a bid unanswered")))
        .collect()
}

/// Reads one row of `gavel_place_bids` (columns shifted by the leading `ord`).
fn bid_decision(row: &Row, input: BidInput) -> Result<BidDecision, StoreError> {
    let outcome = bid_outcome(row, input)?;
    let state = match outcome {
        BidOutcome::NotFound => None,
        _ => Some(BidState {
            seller_id: row.get(7)?,
            start_price: row.get(8)?,
            min_increment: row.get(9)?,
            starts_at: row.get(10)?,
            ends_at: row.get(11)?,
            current_price: row.get(5)?,
            bid_count: row.get(12)?,
        }),
    };
    Ok((outcome, state))
}

fn bid_outcome(row: &Row, input: BidInput) -> Result<BidOutcome, StoreError> {
    let outcome: i16 = row.get(1)?;
    Ok(match outcome {
        0 => BidOutcome::Accepted(Bid {
            id: row.get(2)?,
            auction_id: input.auction_id,
            amount: input.amount,
            bidder_id: input.bidder_id,
            is_winning: true,
            created_at: row.get(3)?,
        }),
        1 => BidOutcome::NotFound,
        2 => {
            let state: &str = row.get(4)?;
            BidOutcome::NotOpen(
                Status::parse(state).ok_or_else(|| StoreError::internal("bad state"))?,
            )
        }
        3 => BidOutcome::Forbidden,
        4 => BidOutcome::TooLow {
            current_price: row.get(5)?,
            min_next_bid: row.get(6)?,
        },
        _ => return Err(StoreError::internal("unknown bid outcome")),
    })
}

/// The auction's bids, newest first; `None` when the auction does not exist.
pub fn list_bids(
    client: &Client,
    auction_id: i64,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Option<Page<Bid>>, StoreError> {
    let fetch = limit + 1;
    let rows = match before_id {
        None => client.query(LIST_BIDS, &[&auction_id, &fetch])?,
        Some(before) => client.query(LIST_BIDS_BEFORE, &[&auction_id, &fetch, &before])?,
    };
    if rows.is_empty() {
        return Ok(None);
    }
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(bid) = bid_from_row(row, auction_id)? {
            items.push(bid);
        }
    }
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    Ok(Some(Page { items, more }))
}

fn bid_from_row(row: &Row, auction_id: i64) -> Result<Option<Bid>, StoreError> {
    let Some(id) = row.get::<Option<i64>>(1)? else {
        return Ok(None);
    };
    let current: Option<Money> = row.get(0)?;
    let amount: Money = row.get(2)?;
    Ok(Some(Bid {
        id,
        auction_id,
        amount,
        bidder_id: row.get(3)?,
        // Accepted amounts strictly increase, so the current price marks exactly one bid.
        is_winning: current == Some(amount),
        created_at: row.get(4)?,
    }))
}

fn auction_from_row(row: &Row) -> Result<Auction, StoreError> {
    Ok(Auction {
        id: row.get(0)?,
        title: row.get(1)?,
        seller_id: row.get(2)?,
        start_price: row.get(3)?,
        min_increment: row.get(4)?,
        starts_at: row.get(5)?,
        ends_at: row.get(6)?,
        extension_seconds: row.get(7)?,
        current_price: row.get(8)?,
        leader_id: row.get(9)?,
        bid_count: row.get(10)?,
        created_at: row.get(11)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_indexes_match_names() {
        let expect = [
            (PING, "ping"),
            (GET_AUCTION, "get_auction"),
            (INSERT_AUCTION, "insert_auction"),
            (LIST_ALL, "list_all"),
            (LIST_SCHEDULED, "list_scheduled"),
            (LIST_OPEN, "list_open"),
            (LIST_CLOSED, "list_closed"),
            (PLACE_BIDS, "place_bids"),
            (LIST_BIDS, "list_bids"),
            (LIST_BIDS_BEFORE, "list_bids_before"),
        ];
        assert_eq!(expect.len(), STATEMENTS.len());
        for (idx, name) in expect {
            assert_eq!(STATEMENTS[idx].name, name);
        }
    }
}
