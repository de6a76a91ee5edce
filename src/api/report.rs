//! What the handlers report into the worker's metrics slot.

use super::context::WorkerContext;
use crate::domain::bid::BidOutcome;
use crate::domain::idempotency::Keyed;
use crate::metrics;

/// Counts a decided bid in the worker's metrics.
pub(super) fn count_bid(ctx: &WorkerContext, outcome: metrics::BidOutcome) {
    if let Some(m) = ctx.metrics {
        m.bid(outcome);
    }
}

/// Counts what came of a request with an `Idempotency-Key`.
pub(super) fn count_keyed<T>(ctx: &WorkerContext, answer: &Keyed<T>) {
    if let Some(m) = ctx.metrics {
        m.idempotent(match answer {
            Keyed::Fresh(_) => metrics::KeyResult::Fresh,
            Keyed::Replayed(_) => metrics::KeyResult::Replayed,
            Keyed::Reused => metrics::KeyResult::Mismatch,
        });
    }
}

/// Counts a fast-path lookup; a hit is also a bid decided too low.
pub(super) fn count_fast_path(ctx: &WorkerContext, hit: bool) {
    if let Some(m) = ctx.metrics {
        m.fast_path(hit);
        if hit {
            m.bid(metrics::BidOutcome::TooLow);
        }
    }
}

/// The metrics outcome of a bid PostgreSQL decided.
pub(super) fn bid_outcome(outcome: &BidOutcome) -> metrics::BidOutcome {
    match outcome {
        BidOutcome::Accepted(_) => metrics::BidOutcome::Accepted,
        BidOutcome::TooLow { .. } => metrics::BidOutcome::TooLow,
        BidOutcome::NotOpen(_) => metrics::BidOutcome::NotOpen,
        BidOutcome::Forbidden => metrics::BidOutcome::Forbidden,
        BidOutcome::NotFound => metrics::BidOutcome::NotFound,
    }
}
