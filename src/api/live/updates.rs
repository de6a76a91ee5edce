//! The two coroutines that serve one worker's streams.
//!
//! - *updates* takes the feed's events from the worker's inbox and sends each to the streams that
//!   need it next; it catches streams up from the stored bids (on the worker's own connection),
//!   sends pings, and closes auctions when their time comes.
//! - *watch* waits on the worker's stream watch: it drops streams whose client left and sends
//!   pending bytes to streams that can take them.

use std::io;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use may::io::WaitIo;

use super::shared::Update;
use super::subscribers::{CATCH_UP_RETRY_MILLIS, CLOSE_RECHECK_MILLIS, PING_INTERVAL_SECS};
use crate::api::context::{now, WorkerContext};
use crate::domain::events::{History, MAX_REPLAYED_BIDS};
use crate::domain::time::Timestamp;
use crate::fanout::Inbox;
use crate::logging;

/// Longest the updates coroutine waits for an event before looking at its timers.
const UPDATES_POLL_MILLIS: u64 = 1000;

/// Stack of the updates and watch coroutines: they read from PostgreSQL and render JSON, like a
/// request handler, but never recurse.
const LIVE_STACK_WORDS: usize = 64 * 1024 / std::mem::size_of::<usize>();

/// Starts the worker's updates and watch coroutines.
pub fn start(ctx: Arc<WorkerContext>, inbox: Inbox<Update>) -> io::Result<()> {
    let worker = ctx.worker;
    let waiter = ctx.live.waiter()?;
    let watched = ctx.clone();
    worker.spawn("stream-watch", LIVE_STACK_WORDS, move || loop {
        waiter.wait_io();
        while watched.live.on_ready() {
            may::coroutine::yield_now();
        }
    })?;
    worker.spawn("stream-updates", LIVE_STACK_WORDS, move || {
        run_updates(&ctx, &inbox);
    })
}

fn run_updates(ctx: &WorkerContext, inbox: &Inbox<Update>) {
    let live = &ctx.live;
    let mut next_ping = Instant::now() + Duration::from_secs(PING_INTERVAL_SECS);
    loop {
        let wait = wait_until(live.next_deadline(), next_ping);
        match inbox.recv_timeout(ctx.worker, wait) {
            Ok(update) => handle(ctx, &update),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if inbox.take_dropped() {
            handle(ctx, &Update::Resync);
        }
        for auction in live.due(now()) {
            close_or_recheck(ctx, auction);
        }
        if Instant::now() >= next_ping {
            live.ping();
            next_ping = Instant::now() + Duration::from_secs(PING_INTERVAL_SECS);
        }
    }
}

/// How long to wait for the next event: until the next ping or close, at most the poll interval.
fn wait_until(close: Option<Timestamp>, ping: Instant) -> Duration {
    let mut wait = ping
        .saturating_duration_since(Instant::now())
        .min(Duration::from_millis(UPDATES_POLL_MILLIS));
    if let Some(at) = close {
        let micros = at.unix_micros().saturating_sub(now().unix_micros());
        wait = wait.min(Duration::from_micros(u64::try_from(micros).unwrap_or(0)));
    }
    wait.max(Duration::from_millis(1))
}

fn handle(ctx: &WorkerContext, update: &Update) {
    match update {
        Update::Bids {
            auction,
            ends_at,
            events,
        } => {
            if ctx.live.deliver(*auction, *ends_at, events) {
                catch_up(ctx, *auction);
            }
        }
        Update::CatchUp(auction) => {
            catch_up(ctx, *auction);
        }
        Update::Resync => {
            for auction in ctx.live.followed() {
                catch_up(ctx, auction);
            }
        }
    }
}

/// Catches `auction`'s streams up from the stored bids.
fn catch_up(ctx: &WorkerContext, auction: i64) -> Option<History> {
    let after = ctx.live.lowest_position(auction)?;
    match ctx.store.history(auction, after, MAX_REPLAYED_BIDS) {
        Ok(Some(history)) => {
            ctx.live.catch_up_from(&history, now());
            Some(history)
        }
        Ok(None) => None,
        Err(e) => {
            let retry = now().unix_micros() + (CATCH_UP_RETRY_MILLIS * 1000) as i64;
            ctx.live
                .look_again(auction, Timestamp::from_unix_micros(retry));
            logging::warn(
                "live updates: cannot catch streams up",
                &[("auction", &auction), ("error", &e.to_string())],
            );
            None
        }
    }
}

/// The auction's end has come by this server's clock: close it if the database agrees, or look
/// again shortly (at its new end, if a bid extended it).
fn close_or_recheck(ctx: &WorkerContext, auction: i64) {
    // None: nothing follows it any more, or the catch-up failed and is already retried.
    let Some(history) = catch_up(ctx, auction) else {
        return;
    };
    if !history.ended {
        let soon = now().unix_micros() + (CLOSE_RECHECK_MILLIS * 1000) as i64;
        let at = history
            .auction
            .ends_at
            .max(Timestamp::from_unix_micros(soon));
        ctx.live.look_again(auction, at);
    }
}
