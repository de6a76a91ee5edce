//! Where a live-update stream of an auction starts (API.md, "Live updates"): a stream's event ids
//! are the auction's `bid_count`, and a client that reconnects says with `Last-Event-ID` how far
//! it got.

use super::auction::{Auction, Bid};
use super::time::Timestamp;

/// Most missed bids a resuming stream is sent one by one (API.md); a client further behind gets
/// the auction's current state instead, which costs one event rather than a backlog it would
/// only skim.
pub const MAX_REPLAYED_BIDS: i64 = 1_000;

/// Most digits a `Last-Event-ID` may have: `i64::MAX` has 19, so a longer one cannot be a count.
const MAX_EVENT_ID_DIGITS: usize = 19;

/// How a stream begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// With an `auction` event carrying the current state (a new stream, or one too far behind).
    Snapshot,
    /// With one `bid` event for every accepted bid after the `after`-th.
    Replay { after: i64 },
}

/// A `Last-Event-ID` that is not a decimal number from 0 to the auction's `bid_count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidEventId;

/// Where the stream of an auction with `bid_count` accepted bids starts, given the request's
/// `Last-Event-ID` header, if any.
pub fn start(last_event_id: Option<&[u8]>, bid_count: i64) -> Result<Start, InvalidEventId> {
    debug_assert!(bid_count >= 0);
    let Some(text) = last_event_id else {
        return Ok(Start::Snapshot);
    };
    let seen = parse_count(text).ok_or(InvalidEventId)?;
    if seen > bid_count {
        return Err(InvalidEventId);
    }
    Ok(if bid_count - seen > MAX_REPLAYED_BIDS {
        Start::Snapshot
    } else {
        Start::Replay { after: seen }
    })
}

/// A decimal count: ASCII digits only (no sign, no space), at most 19 of them.
pub fn parse_count(text: &[u8]) -> Option<i64> {
    if text.is_empty() || text.len() > MAX_EVENT_ID_DIGITS || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// One accepted bid as a stream tells it: its place in the auction's count, and the auction's
/// `ends_at` right after it (a soft-close extension included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The auction's `bid_count` after this bid: the event's id.
    pub count: i64,
    pub bid: Bid,
    pub ends_at: Timestamp,
}

impl Accepted {
    /// The auction as it stood right after this bid, from its current state: the later bids'
    /// price, leader, count and end are this bid's own. Every field but those is fixed at
    /// creation.
    pub fn auction_after(&self, current: &Auction) -> Auction {
        debug_assert!(self.count <= current.bid_count);
        debug_assert_eq!(self.bid.auction_id, current.id);
        Auction {
            current_price: Some(self.bid.amount),
            leader_id: Some(self.bid.bidder_id),
            bid_count: self.count,
            ends_at: self.ends_at,
            ..current.clone()
        }
    }
}

/// An auction's state and its latest accepted bids, read together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    pub auction: Auction,
    /// The database's clock had reached the auction's `ends_at` when it was read: no bid can be
    /// accepted any more, this is the final state.
    pub ended: bool,
    /// Oldest first; their counts run without a gap up to the auction's `bid_count`.
    pub bids: Vec<Accepted>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_stream_starts_with_the_state() {
        assert_eq!(start(None, 0), Ok(Start::Snapshot));
        assert_eq!(start(None, 42), Ok(Start::Snapshot));
    }

    #[test]
    fn a_resumed_stream_replays_what_it_missed() {
        assert_eq!(start(Some(b"0"), 0), Ok(Start::Replay { after: 0 }));
        assert_eq!(start(Some(b"3"), 10), Ok(Start::Replay { after: 3 }));
        assert_eq!(start(Some(b"10"), 10), Ok(Start::Replay { after: 10 }));
        assert_eq!(start(Some(b"007"), 10), Ok(Start::Replay { after: 7 }));
    }

    #[test]
    fn at_most_the_replay_bound_is_replayed() {
        let count = 5_000;
        let at = (count - MAX_REPLAYED_BIDS).to_string();
        let past = (count - MAX_REPLAYED_BIDS - 1).to_string();
        assert_eq!(
            start(Some(at.as_bytes()), count),
            Ok(Start::Replay {
                after: count - MAX_REPLAYED_BIDS
            })
        );
        assert_eq!(start(Some(past.as_bytes()), count), Ok(Start::Snapshot));
    }

    #[test]
    fn anything_but_a_count_up_to_the_current_one_is_refused() {
        for bad in [
            &b"11"[..],
            b"-1",
            b"+1",
            b"",
            b" 1",
            b"1 ",
            b"abc",
            b"1.0",
            b"99999999999999999999",
            b"9223372036854775808",
        ] {
            assert_eq!(start(Some(bad), 10), Err(InvalidEventId), "{bad:?}");
        }
        let max = i64::MAX.to_string();
        assert_eq!(
            start(Some(max.as_bytes()), i64::MAX),
            Ok(Start::Replay { after: i64::MAX })
        );
    }
}
