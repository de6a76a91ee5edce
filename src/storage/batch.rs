//! Bid batching: the bids of one worker that arrive while a batch is being decided wait and go
//! together in the next one: one statement, one transaction, one commit (one WAL flush) for all of
//! them. Each bid is still decided alone and in arrival order within its auction; only the commit
//! is shared, and no bid is answered before that commit.

use super::pg::Client;
use super::queries::{self, BidDecision, BidInput};
use super::StoreError;
use may::sync::mpsc::{channel, Receiver, Sender};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Most bids in one statement. Bigger batches hold their auctions' row locks longer (until the
/// batch commits), so a batch is capped where the commit no longer dominates its cost.
pub const MAX_BATCH_BIDS: usize = 128;

/// Bids waiting per worker; past this a bid gets a fast 503 instead of a place in a queue that the
/// database cannot drain within the request timeout anyway (at ~1 ms a batch, 32 batches).
pub const MAX_QUEUED_BIDS: usize = 4_096;

/// How long past the database timeout a bid waits for its batch: the batch's own query times out
/// first, so this only matters if the batcher itself is stuck.
const REPLY_MARGIN_MILLIS: u64 = 100;

/// The batcher's stack, in words: it only encodes parameters and decodes rows.
const BATCHER_STACK_WORDS: usize = 16 * 1024;

struct Job {
    input: BidInput,
    reply: Sender<Result<BidDecision, StoreError>>,
}

/// One worker's bid queue and the coroutine that drains it.
pub struct BidBatcher {
    jobs: Sender<Job>,
    queued: Arc<AtomicUsize>,
    wait: Duration,
    worker: usize,
}

impl BidBatcher {
    /// Starts the worker's batcher coroutine on `worker`, deciding bids on `client`.
    pub fn start(
        client: Arc<Client>,
        worker: usize,
        db_timeout: Duration,
    ) -> io::Result<BidBatcher> {
        let (jobs, rx) = channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let counter = queued.clone();
        crate::placement::spawn_on(worker, "bid-batcher", BATCHER_STACK_WORDS, move || {
            run(&client, &rx, &counter)
        })?;
        Ok(BidBatcher {
            jobs,
            queued,
            wait: db_timeout + Duration::from_millis(REPLY_MARGIN_MILLIS),
            worker,
        })
    }

    /// Decides one bid in the next batch; returns once that batch has committed.
    pub fn place(&self, input: BidInput) -> Result<BidDecision, StoreError> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= MAX_QUEUED_BIDS {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(StoreError::Unavailable("the bid queue is full".into()));
        }
        let (reply, answer) = channel();
        if self.jobs.send(Job { input, reply }).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(StoreError::Unavailable("the bid batcher stopped".into()));
        }
        match answer.recv_timeout(self.wait) {
            Ok(decision) => decision,
            Err(_) => {
                // A timed-out wait resumes on may's timer thread; go home before going on.
                crate::placement::return_to(self.worker);
                Err(StoreError::Unavailable(
                    "no decision for the bid in time".into(),
                ))
            }
        }
    }
}

fn run(client: &Client, jobs: &Receiver<Job>, queued: &AtomicUsize) {
    let mut batch = Vec::with_capacity(MAX_BATCH_BIDS);
    while let Ok(first) = jobs.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH_BIDS {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        queued.fetch_sub(batch.len(), Ordering::AcqRel);
        decide(client, &mut batch);
    }
}

/// Runs one batch and answers each of its bids; a failed batch committed nothing, so every bid in
/// it gets the error (and may be retried).
fn decide(client: &Client, batch: &mut Vec<Job>) {
    let (inputs, replies): (Vec<BidInput>, Vec<_>) =
        batch.drain(..).map(|j| (j.input, j.reply)).unzip();
    match queries::place_bids(client, &inputs) {
        Ok(decisions) => {
            for (reply, decision) in replies.into_iter().zip(decisions) {
                let _ = reply.send(Ok(decision));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
