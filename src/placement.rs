//! Keeping coroutines on their worker: the PostgreSQL and Redis clients' reader and writer
//! coroutines, and the callers they answer.
//!
//! may resumes a coroutine blocked on a socket on the worker whose epoll watches the socket's
//! descriptor (`fd % workers`), a coroutine woken by another one on the waker's worker, and a
//! timed-out one on whichever worker its timer thread picks.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use may::net::TcpStream;
use may::sync::mpsc::channel;

/// Descriptors tried when looking for one that maps to the owning worker's epoll (may picks the
/// epoll by `fd % workers`). Free descriptors come lowest-first, so a match turns up within about
/// `workers` tries; 256 covers the largest machines, and past it only locality is lost.
pub const FD_ALIGN_MAX_TRIES: usize = 256;

/// Attempts to hand a coroutine back to its worker after something resumed it elsewhere. One
/// almost always suffices (the helper waits until the caller parks); the rest cover the race.
pub const HANDOFF_MAX_TRIES: usize = 8;

/// Spawns on the given worker so the coroutine never leaves it (may runs without work stealing).
/// `stack_words` is in machine words, may's unit.
pub fn spawn_on(
    worker: usize,
    name: &str,
    stack_words: usize,
    f: impl FnOnce() + Send + 'static,
) -> io::Result<()> {
    let builder = may::coroutine::Builder::new()
        .id(worker)
        .name(name.to_owned())
        .stack_size(stack_words);
    may::go!(builder, f).map(drop)
}

/// A duplicate of `stream` whose descriptor maps to `worker`'s epoll: with aligned descriptors
/// the reader and writer stay on `worker`, and so do the callers they wake.
pub fn on_worker(stream: &TcpStream, worker: usize) -> io::Result<TcpStream> {
    let workers = may::config().get_workers().max(1);
    // Held until a match is found so that each try yields a new descriptor number.
    let mut misses = Vec::new();
    for _ in 0..FD_ALIGN_MAX_TRIES {
        let dup = stream.try_clone()?;
        if dup.as_raw_fd() as usize % workers == worker % workers {
            return Ok(dup);
        }
        misses.push(dup);
    }
    stream.try_clone()
}

/// Moves the calling coroutine back onto `worker` by having a helper spawned there wake it.
///
/// The wake only moves the caller if it comes after the caller has parked; one that comes first
/// leaves the caller where it is (typically may's timer thread, which runs timed-out coroutines
/// itself). So the helper waits until the caller is about to park, then yields to its worker's
/// queue a few times (twice as many on each retry) before waking it, and the caller checks
/// where it woke up.
pub fn return_to(worker: usize) {
    if !may::coroutine::is_coroutine() {
        return;
    }
    for attempt in 0..HANDOFF_MAX_TRIES {
        let (tx, rx) = channel();
        let parking = Arc::new(AtomicBool::new(false));
        let parked = parking.clone();
        let helper = may::coroutine::Builder::new().id(worker);
        let wake = move || {
            while !parked.load(Ordering::Acquire) {
                may::coroutine::yield_now();
            }
            for _ in 0..(1usize << attempt) {
                may::coroutine::yield_now();
            }
            // The caller waits for this message; it cannot be gone.
            let _ = tx.send(std::thread::current().id());
        };
        if may::go!(helper, wake).is_err() {
            return;
        }
        parking.store(true, Ordering::Release);
        match rx.recv() {
            Ok(there) if there == std::thread::current().id() => return,
            Ok(_) => {}
            Err(_) => return,
        }
    }
}
