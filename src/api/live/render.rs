//! The events of an auction's stream as the bytes a client reads (API.md, "Live updates").

use super::super::write::{write_auction, write_bid};
use crate::domain::auction::Auction;
use crate::domain::events::{Accepted, History};
use crate::domain::time::Timestamp;
use crate::http::sse;

/// The comment that keeps a quiet stream alive.
pub fn ping() -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    sse::write_comment(&mut out, "ping");
    out
}

/// `event: auction`: the auction's state at `now`, under its current count.
pub fn auction_event(out: &mut Vec<u8>, auction: &Auction, now: Timestamp) {
    event(out, "auction", auction.bid_count, |data| {
        write_auction(data, auction, now)
    });
}

/// `event: bid`: the bid, and the auction as it stood right after it (`current` is any later
/// state of the same auction). Its status is the one at the bid's own time: open.
pub fn bid_event(out: &mut Vec<u8>, accepted: &Accepted, current: &Auction) {
    let after = accepted.auction_after(current);
    event(out, "bid", accepted.count, |data| {
        data.extend_from_slice(b"{\"bid\":");
        write_bid(data, &accepted.bid);
        data.extend_from_slice(b",\"auction\":");
        write_auction(data, &after, accepted.bid.created_at);
        data.push(b'}');
    });
}

/// Every bid of `history` as its event: its count and its bytes.
pub fn bid_events(history: &History) -> Vec<(i64, Box<[u8]>)> {
    history
        .bids
        .iter()
        .map(|accepted| {
            let mut frame = Vec::with_capacity(768);
            bid_event(&mut frame, accepted, &history.auction);
            (accepted.count, frame.into_boxed_slice())
        })
        .collect()
}

/// `event: closed`: the final state (`now` is past its end, so its status is `closed`).
pub fn closed_event(out: &mut Vec<u8>, auction: &Auction, now: Timestamp) {
    debug_assert!(now >= auction.ends_at, "closed before its end");
    event(out, "closed", auction.bid_count, |data| {
        write_auction(data, auction, now)
    });
}

fn event(out: &mut Vec<u8>, name: &str, count: i64, write: impl FnOnce(&mut Vec<u8>)) {
    let mut data = Vec::with_capacity(512);
    write(&mut data);
    sse::write_event(out, name, Some(itoa::Buffer::new().format(count)), &data);
}
