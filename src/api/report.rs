//! What the handlers report into the worker's metrics slot, and the label sets they report
//! under, each beside the enum that indexes it (registered at start-up by
//! `service::metric_labels`).

use super::context::WorkerContext;
use crate::domain::bid::BidOutcome;
use crate::domain::idempotency::Keyed;

/// How a bid was decided: the `outcome` label of `gavel_bids_total`, in [`BID_OUTCOMES`]' order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decided {
    Accepted = 0,
    TooLow = 1,
    NotOpen = 2,
    Forbidden = 3,
    NotFound = 4,
}

pub const BID_OUTCOMES: [&str; 5] = ["accepted", "too_low", "not_open", "forbidden", "not_found"];

/// What came of a request with an `Idempotency-Key`: the `result` label of
/// `gavel_idempotent_requests_total`, in [`KEY_RESULTS`]' order: decided now (its answer is
/// stored with the key), the stored answer sent again, or the key already used with another
/// request (422).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyResult {
    Fresh = 0,
    Replayed = 1,
    Mismatch = 2,
}

pub const KEY_RESULTS: [&str; 3] = ["fresh", "replayed", "mismatch"];

/// `gavel_bid_fast_path_total`'s `result`: answered from Redis, or sent on to PostgreSQL.
const HIT: usize = 0;
const MISS: usize = 1;
pub const FAST_PATH_RESULTS: [&str; 2] = ["hit", "miss"];

/// Counts a decided bid in the worker's metrics.
pub(super) fn count_bid(ctx: &WorkerContext, outcome: Decided) {
    if let Some(m) = ctx.metrics {
        m.bid(outcome as usize);
    }
}

/// Counts what came of a request with an `Idempotency-Key`.
pub(super) fn count_keyed<T>(ctx: &WorkerContext, answer: &Keyed<T>) {
    if let Some(m) = ctx.metrics {
        let result = match answer {
            Keyed::Fresh(_) => KeyResult::Fresh,
            Keyed::Replayed(_) => KeyResult::Replayed,
            Keyed::Reused => KeyResult::Mismatch,
        };
        m.idempotent(result as usize);
    }
}

/// Counts a fast-path lookup; a hit is also a bid decided too low.
pub(super) fn count_fast_path(ctx: &WorkerContext, hit: bool) {
    if let Some(m) = ctx.metrics {
        m.fast_path(if hit { HIT } else { MISS });
        if hit {
            m.bid(Decided::TooLow as usize);
        }
    }
}

/// How the metrics count a bid PostgreSQL decided.
pub(super) fn bid_outcome(outcome: &BidOutcome) -> Decided {
    match outcome {
        BidOutcome::Accepted(_) => Decided::Accepted,
        BidOutcome::TooLow { .. } => Decided::TooLow,
        BidOutcome::NotOpen(_) => Decided::NotOpen,
        BidOutcome::Forbidden => Decided::Forbidden,
        BidOutcome::NotFound => Decided::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_their_enums() {
        assert_eq!(BID_OUTCOMES[Decided::NotFound as usize], "not_found");
        assert_eq!(BID_OUTCOMES[Decided::TooLow as usize], "too_low");
        assert_eq!(KEY_RESULTS[KeyResult::Mismatch as usize], "mismatch");
        assert_eq!(FAST_PATH_RESULTS[HIT], "hit");
        assert_eq!(FAST_PATH_RESULTS[MISS], "miss");
    }
}
