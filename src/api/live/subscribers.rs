//! One worker's streams: which auction each follows and how far it got, and when each auction
//! is next looked at (its end, one timer list per worker rather than a sleeping coroutine per
//! stream). The coroutines that drive it are in [`updates`](super::updates).
//!
//! Everything here runs on the worker (its handlers, its updates and watch coroutines), so the
//! lock on the state is never contended across workers, and it is never held across a wait:
//! sends never wait ([`OpenStream::send`]), and reads from PostgreSQL happen outside it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use super::render;
use super::shared::{Shared, StreamCount, Update};
use crate::domain::events::History;
use crate::domain::time::Timestamp;
use crate::fanout::Hub;
use crate::http::stream::READY_BATCH_EVENTS;
use crate::http::{Cut, OpenStream, Ready, Sent, StreamWatch};
use crate::placement::WorkerId;

/// How often a stream gets a comment line when quiet. API.md asks for one at least every 15 s;
/// 10 s leaves room for a busy worker or a slow network.
pub const PING_INTERVAL_SECS: u64 = 10;

/// How soon an auction whose end has come by this server's clock, but not by the database's, is
/// looked at again: the two clocks may differ by a few milliseconds.
pub const CLOSE_RECHECK_MILLIS: u64 = 50;

/// How soon streams that could not be caught up (PostgreSQL unreachable) are tried again.
pub const CATCH_UP_RETRY_MILLIS: u64 = 500;

/// Batches of watch reports handled before the watch coroutine lets the worker's other
/// coroutines run: 16 batches are a thousand streams, a millisecond or so of work.
const MAX_READY_BATCHES_PER_TURN: usize = 16;

/// The stream cap is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// A stream about to open on an auction: the auction is followed (so its events reach this
/// worker) from before its state is read, and the stream is counted against the cap.
pub struct Reservation {
    subscribers: Arc<Subscribers>,
    auction: i64,
    count: Option<StreamCount>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut state = self.subscribers.lock();
        if let Some(topic) = state.topics.get_mut(&self.auction) {
            topic.reserved -= 1;
        }
        self.subscribers.forget_if_unused(&mut state, self.auction);
    }
}

struct Sub {
    stream: OpenStream,
    token: u64,
    auction: i64,
    /// The id (count) of the last event this stream was sent.
    position: i64,
    _count: StreamCount,
}

/// An auction followed on this worker.
struct Topic {
    subs: Vec<u64>,
    reserved: u32,
    /// The highest count this worker has seen for the auction.
    latest: i64,
    /// When to look at the auction next: its end as last seen, or sooner to retry a catch-up.
    ends_at: Timestamp,
}

#[derive(Default)]
struct State {
    slots: Vec<Option<Sub>>,
    free: Vec<u32>,
    /// Tags tokens, so a stale watch report never reaches a later stream in the same slot.
    generation: u32,
    topics: HashMap<i64, Topic>,
    /// (end, auction), soonest first; stale entries (the end moved) are skipped.
    closing: BinaryHeap<Reverse<(Timestamp, i64)>>,
}

/// One worker's streams.
pub struct Subscribers {
    worker: WorkerId,
    shared: Arc<Shared>,
    hub: Hub<Update>,
    watch: StreamWatch,
    state: Mutex<State>,
}

impl Subscribers {
    pub fn new(worker: WorkerId, shared: Arc<Shared>, hub: Hub<Update>) -> io::Result<Self> {
        Ok(Subscribers {
            worker,
            shared,
            hub,
            watch: StreamWatch::new()?,
            state: Mutex::new(State::default()),
        })
    }

    /// Streams open (or being opened) in the whole process.
    pub fn open_streams(&self) -> usize {
        self.shared.open_streams()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent, so a panic elsewhere cannot corrupt it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows `auction` for a stream about to open; `Full` at the stream cap.
    pub fn reserve(self: &Arc<Self>, auction: i64) -> Result<Reservation, Full> {
        let count = self.shared.try_open().ok_or(Full)?;
        let mut state = self.lock();
        let topic = state.topics.entry(auction).or_insert_with(|| {
            self.shared.follow(auction);
            Topic {
                subs: Vec::new(),
                reserved: 0,
                latest: 0,
                ends_at: Timestamp::from_unix_micros(i64::MAX),
            }
        });
        topic.reserved += 1;
        Ok(Reservation {
            subscribers: self.clone(),
            auction,
            count: Some(count),
        })
    }

    /// Adds a stream that has been sent every event up to `position`, on an auction ending at
    /// `ends_at` as far as its opening read saw.
    pub fn attach(
        &self,
        mut reservation: Reservation,
        stream: OpenStream,
        position: i64,
        ends_at: Timestamp,
    ) {
        let auction = reservation.auction;
        let Some(count) = reservation.count.take() else {
            return;
        };
        if stream.draining() {
            stream.end(b"");
            return;
        }
        let mut state = self.lock();
        let index = state.free.pop().unwrap_or_else(|| {
            state.slots.push(None);
            (state.slots.len() - 1) as u32
        });
        state.generation = state.generation.wrapping_add(1);
        let token = u64::from(state.generation) << 32 | u64::from(index);
        if self.watch.add(&stream, token).is_err() {
            state.free.push(index);
            return;
        }
        state.slots[index as usize] = Some(Sub {
            stream,
            token,
            auction,
            position,
            _count: count,
        });
        let Some(topic) = state.topics.get_mut(&auction) else {
            debug_assert!(false, "a reserved auction is followed");
            return;
        };
        topic.subs.push(token);
        let behind = topic.latest > position;
        if ends_at > topic.ends_at || topic.ends_at.unix_micros() == i64::MAX {
            topic.ends_at = ends_at;
            state.closing.push(Reverse((ends_at, auction)));
        }
        drop(state);
        drop(reservation);
        if behind {
            // Events this stream missed passed through while it opened: the updates coroutine
            // catches it up in order with everything else it sends.
            self.hub
                .offer_to(self.worker.index(), Update::CatchUp(auction));
        }
    }

    /// Sends each of `events` to the streams of `auction` that need it next; true if a stream was
    /// found behind (it needs catching up).
    pub(super) fn deliver(
        &self,
        auction: i64,
        ends_at: Timestamp,
        events: &[(i64, Box<[u8]>)],
    ) -> bool {
        let mut state = self.lock();
        let Some(topic) = state.topics.get_mut(&auction) else {
            return false;
        };
        if let Some((last, _)) = events.last() {
            topic.latest = topic.latest.max(*last);
        }
        if ends_at > topic.ends_at {
            topic.ends_at = ends_at;
            state.closing.push(Reverse((ends_at, auction)));
        }
        let tokens = state.topics[&auction].subs.clone();
        let mut behind = false;
        for token in tokens {
            for (count, frame) in events {
                match self.send_next(&mut state, token, *count, frame) {
                    Delivery::Sent | Delivery::Seen => {}
                    Delivery::Behind => {
                        behind = true;
                        break;
                    }
                    Delivery::Gone => break,
                }
            }
        }
        behind
    }

    /// Sends event `count` to stream `token` if it is the one it needs next.
    fn send_next(&self, state: &mut State, token: u64, count: i64, frame: &[u8]) -> Delivery {
        let Some(sub) = slot_mut(state, token) else {
            return Delivery::Gone;
        };
        if count <= sub.position {
            return Delivery::Seen;
        }
        if count > sub.position + 1 {
            return Delivery::Behind;
        }
        match self.send(sub, token, frame) {
            Ok(()) => {
                sub.position = count;
                Delivery::Sent
            }
            Err(Cut) => {
                self.remove(state, token);
                Delivery::Gone
            }
        }
    }

    fn send(&self, sub: &mut Sub, token: u64, frame: &[u8]) -> Result<(), Cut> {
        if sub.stream.send(frame)? == Sent::Pending && sub.stream.pending_bytes() > 0 {
            self.watch
                .want_write(&sub.stream, token, true)
                .map_err(|_| Cut)?;
        }
        Ok(())
    }

    /// Takes stream `token` out (its client left or was cut off) and returns it.
    fn remove(&self, state: &mut State, token: u64) -> Option<OpenStream> {
        let index = (token & u64::from(u32::MAX)) as usize;
        let slot = state.slots.get_mut(index)?;
        if slot.as_ref().map(|s| s.token) != Some(token) {
            return None;
        }
        let sub = slot.take()?;
        state.free.push(index as u32);
        self.watch.remove(&sub.stream);
        if let Some(topic) = state.topics.get_mut(&sub.auction) {
            topic.subs.retain(|&t| t != token);
        }
        self.forget_if_unused(state, sub.auction);
        Some(sub.stream)
    }

    /// Stops following `auction` once no stream here follows or is about to follow it.
    fn forget_if_unused(&self, state: &mut State, auction: i64) {
        if let Some(topic) = state.topics.get(&auction) {
            if topic.subs.is_empty() && topic.reserved == 0 {
                state.topics.remove(&auction);
                self.shared.unfollow(auction);
            }
        }
    }

    /// The lowest position among `auction`'s streams, if any stream follows it.
    pub(super) fn lowest_position(&self, auction: i64) -> Option<i64> {
        let state = self.lock();
        let topic = state.topics.get(&auction)?;
        topic
            .subs
            .iter()
            .filter_map(|&t| slot_ref(&state, t).map(|s| s.position))
            .min()
    }

    pub(super) fn followed(&self) -> Vec<i64> {
        self.lock().topics.keys().copied().collect()
    }

    /// Sends what the stored history holds past each stream's position; a stream further behind
    /// than the history reaches is cut off (it resumes with `Last-Event-ID`). Closes the auction
    /// if the history is final (`now` is this server's clock).
    pub(super) fn catch_up_from(&self, history: &History, now: Timestamp) {
        let auction = history.auction.id;
        let events: Vec<(i64, Box<[u8]>)> = render::bid_events(history);
        self.deliver(auction, history.auction.ends_at, &events);
        let mut state = self.lock();
        let Some(topic) = state.topics.get(&auction) else {
            return;
        };
        for token in topic.subs.clone() {
            let behind =
                slot_ref(&state, token).is_some_and(|s| s.position < history.auction.bid_count);
            if behind {
                drop(self.remove(&mut state, token));
            }
        }
        if history.ended {
            self.close(&mut state, history, now);
        }
    }

    /// Sends `closed` to every stream of the auction and ends them.
    fn close(&self, state: &mut State, history: &History, now: Timestamp) {
        let auction = history.auction.id;
        let mut frame = Vec::with_capacity(512);
        render::closed_event(
            &mut frame,
            &history.auction,
            now.max(history.auction.ends_at),
        );
        let tokens = state
            .topics
            .get(&auction)
            .map(|t| t.subs.clone())
            .unwrap_or_default();
        for token in tokens {
            if let Some(stream) = self.remove(state, token) {
                stream.end(&frame);
            }
        }
    }

    /// Sends a ping to every stream.
    pub(super) fn ping(&self) {
        let mut state = self.lock();
        let tokens: Vec<u64> = state.slots.iter().flatten().map(|s| s.token).collect();
        let frame = render::ping();
        for token in tokens {
            let sent = slot_mut(&mut state, token).map(|sub| self.send(sub, token, &frame));
            if let Some(Err(Cut)) = sent {
                drop(self.remove(&mut state, token));
            }
        }
    }

    /// The auctions whose end (by this server's clock) has come; their timers are consumed.
    pub(super) fn due(&self, now: Timestamp) -> Vec<i64> {
        let mut state = self.lock();
        let mut due = Vec::new();
        while let Some(&Reverse((at, auction))) = state.closing.peek() {
            if at > now {
                break;
            }
            state.closing.pop();
            let current = state.topics.get(&auction).map(|t| t.ends_at);
            if current == Some(at) && !due.contains(&auction) {
                due.push(auction);
            }
        }
        due
    }

    /// Looks at `auction` again at `at` (its end has not come by the database's clock, or its
    /// streams could not be caught up): at the latest, the end as last seen.
    pub(super) fn look_again(&self, auction: i64, at: Timestamp) {
        let mut state = self.lock();
        if let Some(topic) = state.topics.get_mut(&auction) {
            topic.ends_at = at;
            state.closing.push(Reverse((at, auction)));
        }
    }

    pub(super) fn next_deadline(&self) -> Option<Timestamp> {
        self.lock().closing.peek().map(|Reverse((at, _))| *at)
    }

    /// A may IO handle on the worker's watch (see [`StreamWatch::waiter`]).
    pub(super) fn waiter(&self) -> io::Result<may::io::CoIo<std::os::fd::OwnedFd>> {
        self.watch.waiter(self.worker.index())
    }

    /// Handles what the watch reports, batch by batch, until a batch is not full; true if more
    /// may be waiting (the caller yields, then calls again).
    pub(super) fn on_ready(&self) -> bool {
        for _ in 0..MAX_READY_BATCHES_PER_TURN {
            let readies = self.watch.ready();
            let full = readies.len() == READY_BATCH_EVENTS;
            self.handle_ready(readies);
            if !full {
                return false;
            }
        }
        true
    }

    fn handle_ready(&self, readies: Vec<Ready>) {
        let mut state = self.lock();
        for ready in readies {
            let Some(sub) = slot_mut(&mut state, ready.token) else {
                continue;
            };
            if ready.ended && (sub.stream.draining() || sub.stream.peer_ended()) {
                if let Some(stream) = self.remove(&mut state, ready.token) {
                    stream.end(b"");
                }
                continue;
            }
            if ready.writable {
                match sub.stream.flush() {
                    Ok(Sent::Done) => {
                        let _ = self.watch.want_write(&sub.stream, ready.token, false);
                    }
                    Ok(Sent::Pending) => {}
                    Err(Cut) => drop(self.remove(&mut state, ready.token)),
                }
            }
        }
    }
}

enum Delivery {
    Sent,
    /// The stream already had it.
    Seen,
    /// The stream needs earlier events first.
    Behind,
    /// The stream is gone.
    Gone,
}

fn slot_ref(state: &State, token: u64) -> Option<&Sub> {
    let index = (token & u64::from(u32::MAX)) as usize;
    state
        .slots
        .get(index)?
        .as_ref()
        .filter(|s| s.token == token)
}

fn slot_mut(state: &mut State, token: u64) -> Option<&mut Sub> {
    let index = (token & u64::from(u32::MAX)) as usize;
    state
        .slots
        .get_mut(index)?
        .as_mut()
        .filter(|s| s.token == token)
}
