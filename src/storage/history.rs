//! An auction's recent history for live updates: its state and the bids after a given count,
//! read by one statement (one snapshot, so the two agree).

use super::auctions::auction_at;
use super::pg::{Client, StatementDef, Type};
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

/// The auction `id` with its bids after the `after`-th, at most `limit` of them (the latest);
/// `None` when the auction does not exist.
pub fn auction_history(
    client: &Client,
    id: i64,
    after: i64,
    limit: i64,
) -> Result<Option<History>, StoreError> {
    let rows = client.query(&AUCTION_HISTORY, &[&id, &after, &limit])?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let auction = auction_at(first, 0)?;
    let ended: bool = first.get(12)?;
    let mut bids = Vec::with_capacity(rows.len());
    let mut count = auction.bid_count - rows.len() as i64;
    for row in &rows {
        let Some(bid_id) = row.get::<Option<i64>>(13)? else {
            continue;
        };
        count += 1;
        bids.push(Accepted {
            count,
            bid: Bid {
                id: bid_id,
                auction_id: id,
                amount: row.get(14)?,
                bidder_id: row.get(15)?,
                // As the bid stood when it was accepted: the auction's highest.
                is_winning: true,
                created_at: row.get(16)?,
            },
            ends_at: row.get(17)?,
        });
    }
    if !bids.is_empty() && count != auction.bid_count {
        return Err(StoreError::internal(
            "auction history: counts do not add up",
        ));
    }
    Ok(Some(History {
        auction,
        ended,
        bids,
    }))
}
