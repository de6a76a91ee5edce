//! The statements Gavel prepares on every connection, and the typed calls that run them.

use super::pg::{Client, PgError, Row, StatementDef, ToSql, Type};
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
const CREATE_AUCTION_KEYED: usize = 10;
const STORED_AUCTION: usize = 11;
const SWEEP_KEYS: usize = 12;
const GET_AUCTIONS: usize = 13;
const LIST_BIDS_MANY: usize = 14;

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
    StatementDef {
        name: "create_auction_keyed",
        sql: "SELECT * FROM gavel_create_auction($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        param_types: &[
            Type::INT8,
            Type::TEXT,
            Type::BYTEA,
            Type::TIMESTAMPTZ,
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
        name: "stored_auction",
        sql: "SELECT s.* FROM idempotency_keys k, gavel_stored_auction( \
              CASE WHEN k.request_hash = $3 THEN k.answer END, \
              (CASE WHEN k.request_hash = $3 THEN 1 ELSE 2 END)::smallint) s \
              WHERE k.caller_id = $1 AND k.key = $2 AND k.answer IS NOT NULL \
              AND k.created_at > now() - interval '24 hours'",
        param_types: &[Type::INT8, Type::TEXT, Type::BYTEA],
    },
    StatementDef {
        name: "sweep_keys",
        sql: "SELECT gavel_sweep_keys($1)",
        param_types: &[Type::INT4],
    },
    StatementDef {
        name: "get_auctions",
        sql: auction_select!("WHERE id = ANY($1)"),
        param_types: &[Type::INT8_ARRAY],
    },
    // Several pages at once: `$1` auction ids, `$2` row counts, `$3` exclusive upper bids ids;
    // each page's rows carry its position (`ord`, from 1), a missing auction has none.
    StatementDef {
        name: "list_bids_many",
        sql: "SELECT r.ord::int4, a.current_price, b.id, b.amount, b.bidder_id, b.created_at \
              FROM unnest($1::int8[], $2::int8[], $3::int8[]) WITH ORDINALITY \
              AS r(auction_id, n, before_id, ord) \
              JOIN auctions a ON a.id = r.auction_id \
              LEFT JOIN LATERAL (SELECT id, amount, bidder_id, created_at FROM bids \
              WHERE auction_id = r.auction_id AND id < r.before_id ORDER BY id DESC \
              LIMIT r.n) b ON true ORDER BY r.ord, b.id DESC",
        param_types: &[Type::INT8_ARRAY, Type::INT8_ARRAY, Type::INT8_ARRAY],
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
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// The auctions among `ids` that exist, in no particular order.
pub fn get_auctions(client: &Client, ids: &[i64]) -> Result<Vec<Auction>, StoreError> {
    let rows = client.query(GET_AUCTIONS, &[&ids])?;
    rows.iter().map(auction_from_row).collect()
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

/// An idempotency key as the request claims it: whose key, the key, and a digest of the request
/// that a later use of the key must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyClaim {
    pub caller: i64,
    pub key: String,
    pub request_hash: [u8; 32],
}

/// What came of a request that may carry an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Keyed<T> {
    /// Decided now (with or without a key).
    Fresh(T),
    /// An earlier request with the same key and request was decided so; nothing new happened.
    Replayed(T),
    /// The key was already used with a different request.
    Reused,
}

impl Keyed<()> {
    fn from_code(code: i16) -> Result<Keyed<()>, StoreError> {
        match code {
            0 => Ok(Keyed::Fresh(())),
            1 => Ok(Keyed::Replayed(())),
            2 => Ok(Keyed::Reused),
            _ => Err(StoreError::internal("unknown replay code")),
        }
    }
}

impl<T> Keyed<T> {
    fn with<U>(self, value: U) -> Keyed<U> {
        match self {
            Keyed::Fresh(_) => Keyed::Fresh(value),
            Keyed::Replayed(_) => Keyed::Replayed(value),
            Keyed::Reused => Keyed::Reused,
        }
    }
}

/// One bid to decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BidInput {
    pub auction_id: i64,
    pub bidder_id: i64,
    pub amount: Money,
    pub key: Option<KeyClaim>,
}

/// What the database decided for one bid, and, for a bid decided now, the auction's state as that
/// decision saw it (none when the auction does not exist).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BidDecision {
    pub answer: Keyed<BidOutcome>,
    pub state: Option<BidState>,
}

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
    let rows = query_retrying_key_races(client, PLACE_BIDS, &params)?;
    let mut decided: Vec<Option<BidDecision>> = vec![None; bids.len()];
    for row in &rows {
        let ord: i32 = row.get(0)?;
        let i = usize::try_from(ord - 1)
            .ok()
            .filter(|&i| i < bids.len())
            .ok_or_else(|| StoreError::internal("bid batch answered an unknown position"))?;
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
    statement: usize,
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
    let replay = Keyed::from_code(row.get(1)?)?;
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

/// An auction as created, and the clock its answer derived the status from.
pub type CreatedAuction = (Auction, Timestamp);

/// Creates an auction under an idempotency key, or finds what the key's first request created;
/// `now` is the clock the answer's status is derived from, stored for replays.
pub fn create_auction_keyed(
    client: &Client,
    a: &NewAuction,
    claim: &KeyClaim,
    now: Timestamp,
) -> Result<Keyed<CreatedAuction>, StoreError> {
    let rows = client.query(
        CREATE_AUCTION_KEYED,
        &[
            &claim.caller,
            &claim.key,
            &&claim.request_hash[..],
            &now,
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
        .ok_or_else(|| StoreError::internal("auction creation returned no row"))?;
    keyed_auction(row)
}

/// The stored answer of a key's auction creation, if the key was used in the last 24 hours: for a
/// retry that could no longer be validated afresh (its end time has passed since).
pub fn stored_auction(
    client: &Client,
    claim: &KeyClaim,
) -> Result<Option<Keyed<CreatedAuction>>, StoreError> {
    let rows = client.query(
        STORED_AUCTION,
        &[&claim.caller, &claim.key, &&claim.request_hash[..]],
    )?;
    rows.first().map(keyed_auction).transpose()
}

fn keyed_auction(row: &Row) -> Result<Keyed<CreatedAuction>, StoreError> {
    let replay = Keyed::from_code(row.get(0)?)?;
    if replay == Keyed::Reused {
        return Ok(Keyed::Reused);
    }
    let answered_at: Timestamp = row.get(1)?;
    Ok(replay.with((auction_at(row, 2)?, answered_at)))
}

/// Deletes up to `limit` expired idempotency keys; returns how many went.
pub fn sweep_keys(client: &Client, limit: i32) -> Result<i32, StoreError> {
    let rows = client.query(SWEEP_KEYS, &[&limit])?;
    let row = rows
        .first()
        .ok_or_else(|| StoreError::internal("sweep returned no row"))?;
    Ok(row.get(0)?)
}

/// The auction's bids, newest first; `None` when the auction does not exist.
/// What a bids page asks for: the auction, how many bids and below which id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PageQuery {
    pub auction_id: i64,
    pub before_id: Option<i64>,
    pub limit: i64,
}

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
    let bids = rows
        .iter()
        .filter_map(|row| bid_from_row(row, 0, auction_id).transpose())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(page(bids, limit)))
}

/// Several bids pages in one statement, in the order asked; `None` for a missing auction.
pub fn list_bids_many(
    client: &Client,
    pages: &[PageQuery],
) -> Result<Vec<Option<Page<Bid>>>, StoreError> {
    let auctions: Vec<i64> = pages.iter().map(|p| p.auction_id).collect();
    let fetch: Vec<i64> = pages.iter().map(|p| p.limit + 1).collect();
    let before: Vec<i64> = pages
        .iter()
        .map(|p| p.before_id.unwrap_or(i64::MAX))
        .collect();
    let rows = client.query(LIST_BIDS_MANY, &[&auctions, &fetch, &before])?;
    let mut found: Vec<Option<Vec<Bid>>> = vec![None; pages.len()];
    for row in &rows {
        let ord: i32 = row.get(0)?;
        let i = usize::try_from(ord - 1)
            .ok()
            .filter(|&i| i < pages.len())
            .ok_or_else(|| StoreError::internal("bids pages answered an unknown position"))?;
        let bids = found[i].get_or_insert_with(Vec::new);
        if let Some(bid) = bid_from_row(row, 1, pages[i].auction_id)? {
            bids.push(bid);
        }
    }
    Ok(found
        .into_iter()
        .zip(pages)
        .map(|(bids, p)| bids.map(|bids| page(bids, p.limit)))
        .collect())
}

/// A page of at most `limit` bids from `limit + 1` fetched: the extra one says more follow.
fn page(mut items: Vec<Bid>, limit: i64) -> Page<Bid> {
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    Page { items, more }
}

/// The bid in a page row whose columns start at `at` (current price, id, amount, bidder,
/// time); `None` for the row of an auction without bids.
fn bid_from_row(row: &Row, at: usize, auction_id: i64) -> Result<Option<Bid>, StoreError> {
    let Some(id) = row.get::<Option<i64>>(at + 1)? else {
        return Ok(None);
    };
    let current: Option<Money> = row.get(at)?;
    let amount: Money = row.get(at + 2)?;
    Ok(Some(Bid {
        id,
        auction_id,
        amount,
        bidder_id: row.get(at + 3)?,
        // Accepted amounts strictly increase, so the current price marks exactly one bid.
        is_winning: current == Some(amount),
        created_at: row.get(at + 4)?,
    }))
}

fn auction_from_row(row: &Row) -> Result<Auction, StoreError> {
    auction_at(row, 0)
}

/// Reads an auction whose columns start at `first`, in `auction_select!`'s order.
fn auction_at(row: &Row, first: usize) -> Result<Auction, StoreError> {
    Ok(Auction {
        id: row.get(first)?,
        title: row.get(first + 1)?,
        seller_id: row.get(first + 2)?,
        start_price: row.get(first + 3)?,
        min_increment: row.get(first + 4)?,
        starts_at: row.get(first + 5)?,
        ends_at: row.get(first + 6)?,
        extension_seconds: row.get(first + 7)?,
        current_price: row.get(first + 8)?,
        leader_id: row.get(first + 9)?,
        bid_count: row.get(first + 10)?,
        created_at: row.get(first + 11)?,
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
            (CREATE_AUCTION_KEYED, "create_auction_keyed"),
            (STORED_AUCTION, "stored_auction"),
            (SWEEP_KEYS, "sweep_keys"),
            (GET_AUCTIONS, "get_auctions"),
            (LIST_BIDS_MANY, "list_bids_many"),
        ];
        assert_eq!(expect.len(), STATEMENTS.len());
        for (idx, name) in expect {
            assert_eq!(STATEMENTS[idx].name, name);
        }
    }
}
