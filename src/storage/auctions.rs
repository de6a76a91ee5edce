//! Auctions: created (with or without an idempotency key), read one or many at a time, listed.

use super::keys::keyed_from_code;
use super::pg::{Client, Row, StatementDef, ToSql, Type};
use super::{only_row, StoreError};
use crate::domain::auction::{Auction, NewAuction, Status};
use crate::domain::idempotency::{KeyClaim, Keyed};
use crate::domain::page::Page;
use crate::domain::time::Timestamp;

macro_rules! auction_select {
    ($tail:expr) => {
        concat!(
            "SELECT id, title, seller_id, start_price, min_increment, starts_at, ends_at, ",
            "extension_seconds, current_price, leader_id, bid_count, created_at FROM auctions ",
            $tail
        )
    };
}

pub(crate) static GET_AUCTION: StatementDef = StatementDef {
    name: "get_auction",
    sql: auction_select!("WHERE id = $1"),
    param_types: &[Type::INT8],
};

pub(crate) static GET_AUCTIONS: StatementDef = StatementDef {
    name: "get_auctions",
    sql: auction_select!("WHERE id = ANY($1)"),
    param_types: &[Type::INT8_ARRAY],
};

pub(crate) static INSERT_AUCTION: StatementDef = StatementDef {
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
};

/// Lists give `$1` after_id, `$2` row count, `$3` now.
const LIST_PARAMS: &[Type] = &[Type::INT8, Type::INT8, Type::TIMESTAMPTZ];

/// A list of auctions after `$1`, at most `$2`, whose status at `$3` the filter selects.
macro_rules! list_statement {
    ($name:literal, $filter:literal) => {
        StatementDef {
            name: $name,
            sql: auction_select!(concat!("WHERE id > $1", $filter, " ORDER BY id LIMIT $2")),
            param_types: LIST_PARAMS,
        }
    };
}

pub(crate) static LIST_ALL: StatementDef = list_statement!("list_all", "");
pub(crate) static LIST_SCHEDULED: StatementDef =
    list_statement!("list_scheduled", " AND starts_at > $3");
pub(crate) static LIST_OPEN: StatementDef =
    list_statement!("list_open", " AND starts_at <= $3 AND ends_at > $3");
pub(crate) static LIST_CLOSED: StatementDef = list_statement!("list_closed", " AND ends_at <= $3");

pub(crate) static CREATE_AUCTION_KEYED: StatementDef = StatementDef {
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
};

pub(crate) static STORED_AUCTION: StatementDef = StatementDef {
    name: "stored_auction",
    sql: "SELECT s.* FROM idempotency_keys k, gavel_stored_auction( \
          CASE WHEN k.request_hash = $3 THEN k.answer END, \
          (CASE WHEN k.request_hash = $3 THEN 1 ELSE 2 END)::smallint) s \
          WHERE k.caller_id = $1 AND k.key = $2 AND k.answer IS NOT NULL \
          AND k.created_at > now() - interval '24 hours'",
    param_types: &[Type::INT8, Type::TEXT, Type::BYTEA],
};

pub fn get_auction(client: &Client, id: i64) -> Result<Option<Auction>, StoreError> {
    let rows = client.query(&GET_AUCTION, &[&id])?;
    rows.first().map(auction_from_row).transpose()
}

/// The auctions among `ids` that exist, in no particular order.
pub fn get_auctions(client: &Client, ids: &[i64]) -> Result<Vec<Auction>, StoreError> {
    let rows = client.query(&GET_AUCTIONS, &[&ids])?;
    rows.iter().map(auction_from_row).collect()
}

/// A new auction's columns, in the order both creating statements take them.
fn new_auction_params(a: &NewAuction) -> [&(dyn ToSql + Sync); 7] {
    [
        &a.title,
        &a.seller_id,
        &a.start_price,
        &a.min_increment,
        &a.starts_at,
        &a.ends_at,
        &a.extension_seconds,
    ]
}

pub fn insert_auction(client: &Client, a: &NewAuction) -> Result<Auction, StoreError> {
    let rows = client.query(&INSERT_AUCTION, &new_auction_params(a))?;
    auction_from_row(only_row(&rows, &INSERT_AUCTION)?)
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
        None => &LIST_ALL,
        Some(Status::Scheduled) => &LIST_SCHEDULED,
        Some(Status::Open) => &LIST_OPEN,
        Some(Status::Closed) => &LIST_CLOSED,
    };
    let fetch = limit + 1;
    let rows = client.query(stmt, &[&after_id, &fetch, &now])?;
    let items = rows
        .iter()
        .map(auction_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_fetched(items, limit))
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
    let hash = &claim.request_hash[..];
    let key: [&(dyn ToSql + Sync); 4] = [&claim.caller, &claim.key, &hash, &now];
    let params: Vec<&(dyn ToSql + Sync)> = key.into_iter().chain(new_auction_params(a)).collect();
    let rows = client.query(&CREATE_AUCTION_KEYED, &params)?;
    keyed_auction(only_row(&rows, &CREATE_AUCTION_KEYED)?)
}

/// The stored answer of a key's auction creation, if the key was used in the last 24 hours: for a
/// retry that could no longer be validated afresh (its end time has passed since).
pub fn stored_auction(
    client: &Client,
    claim: &KeyClaim,
) -> Result<Option<Keyed<CreatedAuction>>, StoreError> {
    let rows = client.query(
        &STORED_AUCTION,
        &[&claim.caller, &claim.key, &&claim.request_hash[..]],
    )?;
    rows.first().map(keyed_auction).transpose()
}

fn keyed_auction(row: &Row) -> Result<Keyed<CreatedAuction>, StoreError> {
    let replay = keyed_from_code(row.get(0)?)?;
    if replay == Keyed::Reused {
        return Ok(Keyed::Reused);
    }
    let answered_at: Timestamp = row.get(1)?;
    Ok(replay.with((auction_at(row, 2)?, answered_at)))
}

fn auction_from_row(row: &Row) -> Result<Auction, StoreError> {
    auction_at(row, 0)
}

/// Reads an auction whose columns start at `first`, in `auction_select!`'s order.
pub(super) fn auction_at(row: &Row, first: usize) -> Result<Auction, StoreError> {
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
