//! An auction's recent history for live updates: its state and the bids after a given count,
//! read by one statement (one snapshot, so the two agree).

use super::auctions::auction_at;
use super::pg::{Client, Row, StatementDef, Type};
use super::StoreError;
use crate::domain::auction::Bid;
use crate::domain::events::{Accepted, History};

/// `$1` auction id, `$2` the count after which bids are wanted, `$3` most bids. Bids by
/// descending id are the auction's bids in reverse acceptance order: ids are drawn from one
/// sequence while the auction's row is locked. The bid's `ends_at` is NULL for bids stored before
/// migration 0006; the auction's current one stands in.
pub(crate) static AUCTION_HISTORY: StatementDef = StatementDef {
    name: "auction_history",
    sql: "SELECT a.id, a.title, a.seller_id, a.start_price, a.min_increment, a.starts_at, \
          a.ends_at, a.extension_seconds, a.current_price, a.leader_id, a.bid_count, \
          a.created_at, clock_timestamp() >= a.ends_at, \
          b.id, b.amount, b.bidder_id, b.created_at, coalesce(b.ends_at, a.ends_at) \
          FROM auctions a LEFT JOIN LATERAL (SELECT id, amount, bidder_id, created_at, ends_at \
          FROM bids WHERE auction_id = a.id ORDER BY id DESC \
          LIMIT greatest(least(a.bid_count - $2, $3), 0)) b ON true \
          WHERE a.id = $1 ORDER BY b.id",
    param_types: &[Type::INT8, Type::INT8, Type::INT8],
};

/// Several auctions' histories at once: `$1` auction ids, `$2` the count after which each one's
/// bids are wanted, `$3` most bids per auction; each row leads with its auction's position in
/// `$1` (from 1), then the columns of [`AUCTION_HISTORY`].
pub(crate) static AUCTION_HISTORIES: StatementDef = StatementDef {
    name: "auction_histories",
    sql: "SELECT r.ord::int4, a.id, a.title, a.seller_id, a.start_price, a.min_increment, \
          a.starts_at, a.ends_at, a.extension_seconds, a.current_price, a.leader_id, \
          a.bid_count, a.created_at, clock_timestamp() >= a.ends_at, \
          b.id, b.amount, b.bidder_id, b.created_at, coalesce(b.ends_at, a.ends_at) \
          FROM unnest($1::int8[], $2::int8[]) WITH ORDINALITY AS r(auction_id, after, ord) \
          JOIN auctions a ON a.id = r.auction_id \
          LEFT JOIN LATERAL (SELECT id, amount, bidder_id, created_at, ends_at \
          FROM bids WHERE auction_id = a.id ORDER BY id DESC \
          LIMIT greatest(least(a.bid_count - r.after, $3), 0)) b ON true \
          ORDER BY r.ord, b.id",
    param_types: &[Type::INT8_ARRAY, Type::INT8_ARRAY, Type::INT8],
};

/// The auction `id` with its bids after the `after`-th, at most `limit` of them (the latest);
/// `None` when the auction does not exist.
pub fn auction_history(
    client: &Client,
    id: i64,
    after: i64,
    limit: i64,
) -> Result<Option<History>, StoreError> {
    let rows = client.query(&AUCTION_HISTORY, &[&id, &after, &limit])?;
    if rows.is_empty() {
        return Ok(None);
    }
    history_from_rows(&rows.iter().collect::<Vec<_>>(), 0).map(Some)
}

/// The histories of the auctions among `wanted` (auction id, count after which bids are wanted)
/// that exist, in `wanted`'s order, at most `limit` bids each.
pub fn auction_histories(
    client: &Client,
    wanted: &[(i64, i64)],
    limit: i64,
) -> Result<Vec<History>, StoreError> {
    let ids: Vec<i64> = wanted.iter().map(|w| w.0).collect();
    let after: Vec<i64> = wanted.iter().map(|w| w.1).collect();
    let rows = client.query(&AUCTION_HISTORIES, &[&ids, &after, &limit])?;
    let mut histories = Vec::new();
    let mut group: Vec<&Row> = Vec::new();
    let mut ord: Option<i32> = None;
    for row in &rows {
        let this: i32 = row.get(0)?;
        if ord.is_some_and(|o| o != this) {
            histories.push(history_from_rows(&group, 1)?);
            group.clear();
        }
        ord = Some(this);
        group.push(row);
    }
    if !group.is_empty() {
        histories.push(history_from_rows(&group, 1)?);
    }
    Ok(histories)
}

/// One auction's history from its rows (oldest bid first), whose columns start at `first` in
/// [`AUCTION_HISTORY`]'s order.
fn history_from_rows(rows: &[&Row], first: usize) -> Result<History, StoreError> {
    let Some(head) = rows.first() else {
        return Err(StoreError::internal("auction history: no row"));
    };
    let auction = auction_at(head, first)?;
    let ended: bool = head.get(first + 12)?;
    let mut bids = Vec::with_capacity(rows.len());
    let mut count = auction.bid_count - rows.len() as i64;
    for row in rows {
        let Some(bid_id) = row.get::<Option<i64>>(first + 13)? else {
            continue;
        };
        count += 1;
        bids.push(Accepted {
            count,
            bid: Bid {
                id: bid_id,
                auction_id: auction.id,
                amount: row.get(first + 14)?,
                bidder_id: row.get(first + 15)?,
                // As the bid stood when it was accepted: the auction's highest.
                is_winning: true,
                created_at: row.get(first + 16)?,
            },
            ends_at: row.get(first + 17)?,
        });
    }
    if !bids.is_empty() && count != auction.bid_count {
        return Err(StoreError::internal(
            "auction history: counts do not add up",
        ));
    }
    Ok(History {
        auction,
        ended,
        bids,
    })
}
