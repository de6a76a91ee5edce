//! Coalesced reads of single auctions: a worker's `GET /api/auctions/{id}` reads that arrive while
//! its read statement is in flight go together in the next one (`id = ANY($1)`), each id fetched
//! once however many requests asked for it. The statement that answers a read is sent after the
//! read arrived, so its answer is exactly as fresh as a lone `SELECT` sent then: a read that
//! starts after a bid's 201 sees that bid.

use super::coalesce::{Coalescer, Spec};
use super::pg::Client;
use super::queries;
use super::StoreError;
use crate::domain::auction::Auction;
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

const SPEC: Spec = Spec {
    name: "auction reader",
    max_batch: MAX_BATCH_READS,
    max_queued: MAX_QUEUED_READS,
};

/// One worker's queue of single-auction reads.
pub struct AuctionReader(Coalescer<i64, Option<Auction>>);

impl AuctionReader {
    /// Starts the worker's reader coroutine on `worker`, reading on `client`.
    pub fn start(client: Arc<Client>, worker: usize, db_timeout: Duration) -> io::Result<Self> {
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
        [id] => queries::get_auction(client, id)?
            .map(|a| (a.id, a))
            .into_iter()
            .collect(),
        _ => queries::get_auctions(client, &distinct)?
            .into_iter()
            .map(|a| (a.id, a))
            .collect(),
    };
    debug_assert!(found.len() <= distinct.len());
    Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
}
