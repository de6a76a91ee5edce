//! Bids pages: one page, or several in one statement.

use super::pg::{Client, Row, StatementDef, Type};
use super::StoreError;
use crate::domain::auction::Bid;
use crate::domain::money::Money;
use crate::domain::page::{Page, PageQuery};

pub(crate) static LIST_BIDS: StatementDef = StatementDef {
    name: "list_bids",
    sql: "SELECT a.current_price, b.id, b.amount, b.bidder_id, b.created_at FROM auctions a \
          LEFT JOIN LATERAL (SELECT id, amount, bidder_id, created_at FROM bids \
          WHERE auction_id = a.id ORDER BY id DESC LIMIT $2) b ON true WHERE a.id = $1",
    param_types: &[Type::INT8, Type::INT8],
};

pub(crate) static LIST_BIDS_BEFORE: StatementDef = StatementDef {
    name: "list_bids_before",
    sql: "SELECT a.current_price, b.id, b.amount, b.bidder_id, b.created_at FROM auctions a \
          LEFT JOIN LATERAL (SELECT id, amount, bidder_id, created_at FROM bids \
          WHERE auction_id = a.id AND id < $3 ORDER BY id DESC LIMIT $2) b ON true WHERE a.id = $1",
    param_types: &[Type::INT8, Type::INT8, Type::INT8],
};

/// Several pages at once: `$1` auction ids, `$2` row counts, `$3` exclusive upper bids ids;
/// each page's rows carry its position (`ord`, from 1), a missing auction has none.
pub(crate) static LIST_BIDS_MANY: StatementDef = StatementDef {
    name: "list_bids_many",
    sql: "SELECT r.ord::int4, a.current_price, b.id, b.amount, b.bidder_id, b.created_at \
          FROM unnest($1::int8[], $2::int8[], $3::int8[]) WITH ORDINALITY \
          AS r(auction_id, n, before_id, ord) \
          JOIN auctions a ON a.id = r.auction_id \
          LEFT JOIN LATERAL (SELECT id, amount, bidder_id, created_at FROM bids \
          WHERE auction_id = r.auction_id AND id < r.before_id ORDER BY id DESC \
          LIMIT r.n) b ON true ORDER BY r.ord, b.id DESC",
    param_types: &[Type::INT8_ARRAY, Type::INT8_ARRAY, Type::INT8_ARRAY],
};

/// The auction's bids, newest first; `None` when the auction does not exist.
pub fn list_bids(
    client: &Client,
    auction_id: i64,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Option<Page<Bid>>, StoreError> {
    let fetch = limit + 1;
    let rows = match before_id {
        None => client.query(&LIST_BIDS, &[&auction_id, &fetch])?,
        Some(before) => client.query(&LIST_BIDS_BEFORE, &[&auction_id, &fetch, &before])?,
    };
    if rows.is_empty() {
        return Ok(None);
    }
    let bids = rows
        .iter()
        .filter_map(|row| bid_from_row(row, 0, auction_id).transpose())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Page::from_fetched(bids, limit)))
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
    let rows = client.query(&LIST_BIDS_MANY, &[&auctions, &fetch, &before])?;
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
        .map(|(bids, p)| bids.map(|bids| Page::from_fetched(bids, p.limit)))
        .collect())
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
