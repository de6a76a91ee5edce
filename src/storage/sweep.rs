//! Expired idempotency keys are deleted in small batches by one background coroutine per server,
//! on a connection of its own: each batch is a short transaction that skips locked rows, so the
//! sweep never holds up a request, and a bid or a read never waits behind it in a pipeline.

use super::pg::{Client, Config};
use super::{keys, STATEMENTS};
use crate::metrics::WorkerMetrics;
use crate::placement::WorkerId;
use std::io;
use std::time::{Duration, Instant};

/// Time between sweeps. A key lives 24 hours, so a minute's delay in deleting it costs nothing,
/// while a busy server deletes its expired keys about as fast as it creates them.
pub const SWEEP_INTERVAL_SECS: u64 = 60;

/// Keys deleted per transaction: a few milliseconds of work, short enough that the locks and WAL of
/// one batch are never noticed by requests, large enough to keep up with thousands of keys a second.
pub const SWEEP_BATCH_ROWS: i32 = 1_000;

/// Least pause between two full batches. The pause is at least as long as the batch took, too, so
/// a large backlog (a busy day's keys) is worked off in at most half of one backend's time.
const SWEEP_PAUSE_MILLIS: u64 = 10;

/// The sweeper's stack, in words: it only encodes one parameter and decodes one row.
const SWEEPER_STACK_WORDS: usize = 16 * 1024;

/// Starts the sweeper on `worker`; its first sweep runs at once.
pub fn start(cfg: &Config, worker: WorkerId) -> io::Result<()> {
    let cfg = cfg.clone();
    worker.spawn("key-sweeper", SWEEPER_STACK_WORDS, move || {
        let client = Client::connect_now(cfg.clone(), STATEMENTS, worker)
            .unwrap_or_else(|_| Client::new(cfg, STATEMENTS, worker));
        let metrics = worker.metrics();
        loop {
            sweep(&client, worker, metrics);
            worker.sleep(Duration::from_secs(SWEEP_INTERVAL_SECS));
        }
    })
}

/// Deletes expired keys batch by batch until a batch comes back short.
fn sweep(client: &Client, worker: WorkerId, metrics: Option<&WorkerMetrics>) {
    loop {
        let started = Instant::now();
        let swept = keys::sweep_keys(client, SWEEP_BATCH_ROWS);
        if let (Ok(n), Some(m)) = (&swept, metrics) {
            m.keys_swept(u64::try_from(*n).unwrap_or(0));
        }
        match swept {
            Ok(deleted) if deleted < SWEEP_BATCH_ROWS => return,
            Ok(_) => {
                let pause = started
                    .elapsed()
                    .max(Duration::from_millis(SWEEP_PAUSE_MILLIS));
                worker.sleep(pause);
            }
            Err(e) => {
                crate::logging::warn(
                    "expired idempotency keys not swept",
                    &[("error", &e.to_string())],
                );
                return;
            }
        }
    }
}
