//! `/api/auctions/{id}/events`: an auction's live-update stream (API.md, "Live updates").

use super::context::{now, WorkerContext};
use super::error::ApiError;
use super::live::{render, Reservation};
use crate::domain::events::{self, History, Start, MAX_REPLAYED_BIDS};
use crate::domain::time::Timestamp;
use crate::http::{sse, Request, Response};

/// A stream answered and not yet handed over: what its worker needs to follow it.
pub struct Opening {
    pub(super) reservation: Reservation,
    /// The count of the last event in the answer.
    pub(super) position: i64,
    pub(super) ends_at: Timestamp,
    /// The answer already holds `closed`: end the stream once it is written.
    pub(super) closed: bool,
}

/// Answers a stream request: the first events in the body, and (for GET) what the worker needs
/// once the connection is handed over. HEAD gets the same head and nothing is followed.
pub(super) fn open(
    ctx: &WorkerContext,
    req: &Request<'_>,
    id: i64,
) -> Result<(Response, Option<Opening>), ApiError> {
    let last_event_id = req.header("last-event-id");
    // Followed from before the state is read: a bid accepted after the read reaches this worker.
    let reservation = match req.method {
        "HEAD" => None,
        _ => Some(
            ctx.live
                .reserve(id)
                .map_err(|_full| ApiError::StreamsFull)?,
        ),
    };
    let after = last_event_id
        .and_then(events::parse_count)
        .unwrap_or(i64::MAX);
    let history = ctx
        .store
        .history(id, after, MAX_REPLAYED_BIDS)?
        .ok_or(ApiError::NotFound)?;
    let start = events::start(last_event_id, history.auction.bid_count).map_err(|_| {
        ApiError::field(
            "Last-Event-ID",
            "must be a decimal number from 0 to the auction's bid_count",
        )
    })?;
    let body = first_events(&history, start, now());
    let mut resp = Response::with_body(200, sse::CONTENT_TYPE, body);
    resp.header("Cache-Control", "no-store");
    resp.stream = true;
    let opening = reservation.map(|reservation| Opening {
        reservation,
        position: history.auction.bid_count,
        ends_at: history.auction.ends_at,
        closed: history.ended,
    });
    Ok((resp, opening))
}

/// The events a stream starts with: the state or the missed bids, then `closed` if the auction
/// has ended.
fn first_events(history: &History, start: Start, now: Timestamp) -> Vec<u8> {
    let mut body = Vec::with_capacity(1024);
    match start {
        Start::Snapshot => render::auction_event(&mut body, &history.auction, now),
        Start::Replay { after } => {
            for accepted in history.bids.iter().filter(|b| b.count > after) {
                render::bid_event(&mut body, accepted, &history.auction);
            }
        }
    }
    if history.ended {
        render::closed_event(
            &mut body,
            &history.auction,
            now.max(history.auction.ends_at),
        );
    }
    body
}
