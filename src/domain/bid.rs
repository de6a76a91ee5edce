//! A bid to decide, and what was decided: the words the API and the storage share.

use super::auction::{Bid, BidState, Status};
use super::idempotency::{KeyClaim, Keyed};
use super::money::Money;

/// What was decided for one bid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BidOutcome {
    Accepted(Bid),
    NotFound,
    NotOpen(Status),
    Forbidden,
    TooLow {
        current_price: Option<Money>,
        min_next_bid: Money,
    },
}

/// One bid to decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BidInput {
    pub auction_id: i64,
    pub bidder_id: i64,
    pub amount: Money,
    pub key: Option<KeyClaim>,
}

/// What was decided for one bid, and, for a bid decided now, the auction's state as that
/// decision saw it (none when the auction does not exist).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BidDecision {
    pub answer: Keyed<BidOutcome>,
    pub state: Option<BidState>,
}
