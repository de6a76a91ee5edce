//! Parking lots: idle connections that wait without a coroutine, one lot per worker.
//!
//! A connection waiting in a coroutine keeps its stack pages resident (at least two pages even
//! when fresh, more once a request ran deep code), which alone would put 10 000 idle
//! connections well past the memory budget. So a connection idle for a while leaves its socket
//! and service in its worker's lot and its coroutine ends. A lot watches its sockets with its
//! own epoll instance, which one coroutine of that worker waits on through may (the epoll
//! descriptor is itself pollable); a socket that becomes readable is taken out and given a new
//! coroutine on the same worker. Deadlines are kept in park order, which is also deadline order
//! because every connection parks after the same idle time.
//!
//! may resumes a coroutine blocked on a descriptor, or whose wait on it timed out, on the worker
//! whose epoll owns the descriptor (`fd % workers`), and one that slept with
//! `may::coroutine::sleep` on its timer thread. So the descriptors a lot's coroutines wait on are
//! duplicated onto numbers that map to the lot's worker ([`Lot::waiter`], [`crate::placement::Nap`]), and the
//! sweeper waits with a read timeout instead of sleeping: both stay on their worker.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use may::io::CoIo;

use super::epoll;
use crate::placement::dup_for_worker;

/// Events collected per `epoll_wait` call; more are fetched in further calls.
const READY_BATCH_EVENTS: usize = 64;

struct Entry<T> {
    item: T,
    fd: RawFd,
    token: u64,
}

struct State<T> {
    slots: Vec<Option<Entry<T>>>,
    free: Vec<u32>,
    /// Tags tokens so a stale event or deadline never takes a later occupant of the same slot.
    generation: u32,
    /// (deadline, token) in park order.
    deadlines: VecDeque<(Instant, u64)>,
    closed: bool,
}

/// One worker's idle items (connections), each watched through a socket.
pub(crate) struct Lot<T> {
    epoll: OwnedFd,
    /// Per-worker lock: taken by the worker's connections as they park and by its parker and
    /// sweeper, all of which run on that worker, so it is contended within that worker at most,
    /// never between workers.
    state: Mutex<State<T>>,
}

impl<T> Lot<T> {
    pub(crate) fn new() -> io::Result<Lot<T>> {
        Ok(Lot {
            epoll: epoll::create()?,
            state: Mutex::new(State {
                slots: Vec::new(),
                free: Vec::new(),
                generation: 0,
                deadlines: VecDeque::new(),
                closed: false,
            }),
        })
    }

    /// A may IO handle on the lot's epoll instance: waiting on it wakes when a parked socket is
    /// readable, and resumes the waiter on `worker`.
    pub(crate) fn waiter(&self, worker: usize) -> io::Result<CoIo<OwnedFd>> {
        Ok(CoIo::new(dup_for_worker(self.epoll.as_raw_fd(), worker)?)?)
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Every update leaves the state consistent, so a panic elsewhere cannot corrupt it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Parks `item`, watched through `fd` (which must stay open while parked), until input
    /// arrives or `deadline` passes. Gives the item back if the lot is closed or the socket
    /// cannot be watched.
    pub(crate) fn park(&self, fd: RawFd, item: T, deadline: Instant) -> Result<(), T> {
        let mut state = self.lock();
        if state.closed {
            return Err(item);
        }
        let index = match state.free.pop() {
            Some(i) => i,
            None => {
                state.slots.push(None);
                (state.slots.len() - 1) as u32
            }
        };
        state.generation = state.generation.wrapping_add(1);
        let token = u64::from(state.generation) << 32 | u64::from(index);
        if epoll::ctl(&self.epoll, libc::EPOLL_CTL_ADD, fd, token, epoll::READABLE).is_err() {
            state.free.push(index);
            return Err(item);
        }
        state.slots[index as usize] = Some(Entry { item, fd, token });
        state.deadlines.push_back((deadline, token));
        Ok(())
    }

    /// Takes out every item whose socket is readable (input, end of input or error).
    pub(crate) fn ready(&self) -> Vec<T> {
        let mut taken = Vec::new();
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; READY_BATCH_EVENTS];
        loop {
            let n = epoll::ready_now(&self.epoll, &mut events);
            let mut state = self.lock();
            for event in &events[..n] {
                let token = event.u64;
                taken.extend(self.take(&mut state, token));
            }
            if n < READY_BATCH_EVENTS {
                return taken;
            }
        }
    }

    /// Takes out the items whose deadline has passed; also returns the next deadline.
    pub(crate) fn expire(&self, now: Instant) -> (Vec<T>, Option<Instant>) {
        let mut expired = Vec::new();
        let mut state = self.lock();
        while let Some(&(deadline, token)) = state.deadlines.front() {
            if deadline > now {
                return (expired, Some(deadline));
            }
            state.deadlines.pop_front();
            expired.extend(self.take(&mut state, token));
        }
        (expired, None)
    }

    /// Takes out everything and refuses further parking.
    pub(crate) fn close(&self) -> Vec<T> {
        let mut state = self.lock();
        state.closed = true;
        state.deadlines.clear();
        let tokens: Vec<u64> = state.slots.iter().flatten().map(|e| e.token).collect();
        tokens
            .into_iter()
            .filter_map(|token| self.take(&mut state, token))
            .collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().slots.iter().flatten().count()
    }

    fn take(&self, state: &mut State<T>, token: u64) -> Option<T> {
        let index = (token & u64::from(u32::MAX)) as u32;
        let slot = state.slots.get_mut(index as usize)?;
        if slot.as_ref()?.token != token {
            return None;
        }
        let entry = slot.take()?;
        // The socket stays open until the caller drops the item, so it is still watched here.
        let _ = epoll::ctl(&self.epoll, libc::EPOLL_CTL_DEL, entry.fd, 0, 0);
        state.free.push(index);
        Some(entry.item)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use may::io::WaitIo;

    use super::*;
    use crate::placement::Nap;

    fn pair() -> (UnixStream, UnixStream) {
        UnixStream::pair().expect("socket pair")
    }

    #[test]
    fn readable_sockets_are_taken_out() {
        let lot = Lot::new().unwrap();
        let later = Instant::now() + Duration::from_secs(60);
        let (a, mut a_peer) = pair();
        let (b, _b_peer) = pair();
        lot.park(a.as_raw_fd(), "a", later).unwrap();
        lot.park(b.as_raw_fd(), "b", later).unwrap();
        assert!(lot.ready().is_empty());
        a_peer.write_all(b"x").unwrap();
        assert_eq!(lot.ready(), vec!["a"]);
        assert!(lot.ready().is_empty(), "taken items are no longer watched");
        assert_eq!(lot.len(), 1);
    }

    #[test]
    fn hang_ups_count_as_readable() {
        let lot = Lot::new().unwrap();
        let (a, a_peer) = pair();
        lot.park(a.as_raw_fd(), 1, Instant::now() + Duration::from_secs(60))
            .unwrap();
        drop(a_peer);
        assert_eq!(lot.ready(), vec![1]);
    }

    #[test]
    fn deadlines_expire_in_order_and_skip_items_already_gone() {
        let lot = Lot::new().unwrap();
        let now = Instant::now();
        let (a, mut a_peer) = pair();
        let (b, _b_peer) = pair();
        let (c, _c_peer) = pair();
        lot.park(a.as_raw_fd(), 'a', now).unwrap();
        lot.park(b.as_raw_fd(), 'b', now + Duration::from_millis(1))
            .unwrap();
        lot.park(c.as_raw_fd(), 'c', now + Duration::from_secs(60))
            .unwrap();
        a_peer.write_all(b"x").unwrap();
        assert_eq!(lot.ready(), vec!['a']);
        let (expired, next) = lot.expire(now + Duration::from_millis(5));
        assert_eq!(expired, vec!['b']);
        assert_eq!(next, Some(now + Duration::from_secs(60)));
    }

    #[test]
    fn a_reused_slot_is_not_taken_by_a_stale_token() {
        let lot = Lot::new().unwrap();
        let now = Instant::now();
        let (a, mut a_peer) = pair();
        let (b, _b_peer) = pair();
        lot.park(a.as_raw_fd(), "first", now).unwrap();
        a_peer.write_all(b"x").unwrap();
        assert_eq!(lot.ready(), vec!["first"]);
        lot.park(b.as_raw_fd(), "second", now + Duration::from_secs(60))
            .unwrap();
        let (expired, next) = lot.expire(now + Duration::from_millis(1));
        assert!(expired.is_empty(), "first's deadline must not take second");
        assert_eq!(next, Some(now + Duration::from_secs(60)));
        assert_eq!(lot.len(), 1);
    }

    #[test]
    fn duplicates_map_to_the_asked_worker() {
        let workers = may::config().get_workers().max(1);
        let (a, _a_peer) = pair();
        for worker in 0..2 * workers {
            let dup = dup_for_worker(a.as_raw_fd(), worker).unwrap();
            assert_eq!(dup.as_raw_fd() as usize % workers, worker % workers);
        }
    }

    #[test]
    fn naps_and_lot_waits_resume_on_their_worker() {
        for worker in 0..may::config().get_workers().max(1) {
            let on_worker = may::coroutine::Builder::new().id(worker);
            let handle = may::go!(on_worker, move || {
                let home = std::thread::current().id();
                let mut nap = Nap::new(worker).unwrap();
                let started = Instant::now();
                nap.sleep(Duration::from_millis(20));
                assert!(
                    started.elapsed() >= Duration::from_millis(10),
                    "nap too short"
                );
                assert_eq!(std::thread::current().id(), home, "nap left the worker");

                let lot = Lot::new().unwrap();
                let waiter = lot.waiter(worker).unwrap();
                let (a, mut a_peer) = pair();
                lot.park(a.as_raw_fd(), "a", Instant::now() + Duration::from_secs(60))
                    .unwrap();
                let writer = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    a_peer.write_all(b"x").unwrap();
                    a_peer
                });
                loop {
                    waiter.wait_io();
                    assert_eq!(std::thread::current().id(), home, "wait left the worker");
                    if lot.ready() == vec!["a"] {
                        break;
                    }
                }
                drop(writer.join());
            })
            .unwrap();
            handle.join().unwrap();
        }
    }

    #[test]
    fn a_closed_lot_gives_items_back() {
        let lot = Lot::new().unwrap();
        let (a, _a_peer) = pair();
        lot.park(a.as_raw_fd(), 7, Instant::now()).unwrap();
        assert_eq!(lot.close(), vec![7]);
        assert_eq!(lot.park(a.as_raw_fd(), 8, Instant::now()), Err(8));
    }
}
