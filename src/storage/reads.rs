//! Coalesced reads: a worker's `GET /api/auctions/{id}` reads that arrive while its statement of
//! that kind is in flight go together in the next one (`id = ANY($1)`), and so do its
//! `GET /api/bids/{auction_id}` pages (one `LATERAL` join over the pages asked), each distinct
//! read done once however many requests asked for it. The statement that answers a read is sent
//! after the read arrived, so its answer is exactly as fresh as a lone `SELECT` sent then: a read
//! that starts after a bid's 201 sees that bid.

use super::coalesce::{Coalescer, Spec};
use super::pg::Client;
use super::StoreError;
use super::{auctions, bid_pages};
use crate::domain::auction::{Auction, Bid};
use crate::domain::page::{Page, PageQuery};
use crate::placement::WorkerId;
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// Most reads answered by one statement. One id more costs PostgreSQL a few microseconds of an
/// index probe against tens for a statement; 256 keeps the reply (about 200 bytes a row) well
/// under a read buffer's worth while no realistic queue on one worker exceeds it.
pub const MAX_BATCH_READS: usize = 256;

/// Reads waiting per worker; past this a read gets a fast 503.
pub const MAX_QUEUED_READS: usize = 4_096;

/// Most bids pages answered by one statement. A page is up to 501 rows, so fewer go together
/// than single auctions: 32 default pages of 51 rows make a reply of about 100 KiB.
pub const MAX_BATCH_PAGES: usize = 32;

const PAGES_SPEC: Spec = Spec {
    name: "bids page reader",
    max_batch: MAX_BATCH_PAGES,
    max_queued: MAX_QUEUED_READS,
};

/// One worker's queue of bids pages.
pub struct BidPageReader(Coalescer<PageQuery, Option<Page<Bid>>>);

impl BidPageReader {
    /// Starts the worker's page reader coroutine on `worker`, reading on `client`.
    pub fn start(client: Arc<Client>, worker: WorkerId, db_timeout: Duration) -> io::Result<Self> {
        let decide = move |pages: &[PageQuery]| page_batch(&client, pages);
        Coalescer::start(&PAGES_SPEC, worker, db_timeout, decide).map(BidPageReader)
    }

    /// The page asked for, read in the next statement; `None` when the auction does not exist.
    pub fn get(&self, page: PageQuery) -> Result<Option<Page<Bid>>, StoreError> {
        self.0.submit(page)
    }
}

/// One statement for the batch, each distinct page once; the answers in the batch's order.
fn page_batch(client: &Client, pages: &[PageQuery]) -> Result<Vec<Option<Page<Bid>>>, StoreError> {
    let mut distinct = pages.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let answers = match distinct[..] {
        [p] => vec![bid_pages::list_bids(
            client,
            p.auction_id,
            p.before_id,
            p.limit,
        )?],
        _ => bid_pages::list_bids_many(client, &distinct)?,
    };
    let found: HashMap<PageQuery, Option<Page<Bid>>> = distinct.into_iter().zip(answers).collect();
    Ok(pages
        .iter()
        .map(|p| found.get(p).cloned().flatten())
        .collect())
}

const SPEC: Spec = Spec {
    name: "auction reader",
    max_batch: MAX_BATCH_READS,
    max_queued: MAX_QUEUED_READS,
};

/// One worker's queue of single-auction reads.
pub struct AuctionReader(Coalescer<i64, Option<Auction>>);

impl AuctionReader {
    /// Starts the worker's reader coroutine on `worker`, reading on `client`.
    pub fn start(client: Arc<Client>, worker: WorkerId, db_timeout: Duration) -> io::Result<Self> {
        let decide = move |ids: &[i64]| read_batch(&client, ids);
        Coalescer::start(&SPEC, worker, db_timeout, decide).map(AuctionReader)
    }

    /// The auction `id`, read in the next statement.
    pub fn get(&self, id: i64) -> Result<Option<Auction>, StoreError> {
        self.0.submit(id)
    }
}

/// One statement for the batch, each distinct id once; the answers in the batch's order.
fn read_batch(client: &Client, ids: &[i64]) -> Result<Vec<Option<Auction>>, StoreError> {
    let mut distinct = ids.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let found: HashMap<i64, Auction> = match distinct[..] {
        [id] => auctions::get_auction(client, id)?
            .map(|a| (a.id, a))
            .into_iter()
            .collect(),
        _ => auctions::get_auctions(client, &distinct)?
            .into_iter()
            .map(|a| (a.id, a))
            .collect(),
    };
    debug_assert!(found.len() <= distinct.len());
    Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
}
