//! Bid batching: the bids of one worker that arrive while a batch is being decided wait and go
//! together in the next one: one statement, one transaction, one commit (one WAL flush) for all of
//! them. Each bid is still decided alone and in arrival order within its auction; only the commit
//! is shared, and no bid is answered before that commit.

use super::bids;
use super::coalesce::{Coalescer, Spec};
use super::pg::Client;
use super::StoreError;
use crate::domain::bid::{BidDecision, BidInput};
use crate::placement::WorkerId;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// Most bids in one statement. Bigger batches hold their auctions' row locks longer (until the
/// batch commits), so a batch is capped where the commit no longer dominates its cost.
pub const MAX_BATCH_BIDS: usize = 128;

/// Bids waiting per worker; past this a bid gets a fast 503 instead of a place in a queue that the
/// database cannot drain within the request timeout anyway (at ~1 ms a batch, 32 batches).
pub const MAX_QUEUED_BIDS: usize = 4_096;

const SPEC: Spec = Spec {
    name: "bid batcher",
    max_batch: MAX_BATCH_BIDS,
    max_queued: MAX_QUEUED_BIDS,
};

/// One worker's bid queue and the coroutine that drains it.
pub struct BidBatcher(Coalescer<BidInput, BidDecision>);

impl BidBatcher {
    /// Starts the worker's batcher coroutine on `worker`, deciding bids on `client`.
    pub fn start(
        client: Arc<Client>,
        worker: WorkerId,
        db_timeout: Duration,
    ) -> io::Result<BidBatcher> {
        let decide = move |bids: &[BidInput]| bids::place_bids(&client, bids);
        Coalescer::start(&SPEC, worker, db_timeout, decide).map(BidBatcher)
    }

    /// Decides one bid in the next batch; returns once that batch has committed.
    pub fn place(&self, input: BidInput) -> Result<BidDecision, StoreError> {
        self.0.submit(input)
    }
}
