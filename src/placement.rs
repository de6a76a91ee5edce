//! Keeping coroutines on their worker, the rule Gavel's thread-per-core design rests on: a
//! coroutine spawned for a worker runs there (may without work stealing never moves it), and
//! uses only that worker's connections and state. [`WorkerId`] states the rule once: it spawns
//! on its worker, waits with a deadline and comes back home, and finds the worker's metrics slot.
//!
//! may resumes a coroutine blocked on a socket on the worker whose epoll watches the socket's
//! descriptor (`fd % workers`), a coroutine woken by another one on the waker's worker, and a
//! timed-out one on whichever worker its timer thread picks.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use may::io::CoIo;
use may::net::TcpStream;
use may::sync::mpsc::channel;

/// Descriptors tried when looking for one that maps to the owning worker's epoll (may picks the
/// epoll by `fd % workers`). Free descriptors come lowest-first, so a match turns up within about
/// `workers` tries; 256 covers the largest machines, and past it only locality is lost.
pub const FD_ALIGN_MAX_TRIES: usize = 256;

/// Attempts to hand a coroutine back to its worker after something resumed it elsewhere. One
/// almost always suffices (the helper waits until the caller parks); the rest cover the race.
pub const HANDOFF_MAX_TRIES: usize = 8;

/// One of may's workers, by the index given to `may::coroutine::Builder::id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WorkerId(usize);

impl From<usize> for WorkerId {
    fn from(index: usize) -> WorkerId {
        WorkerId(index)
    }
}

impl WorkerId {
    pub const fn new(index: usize) -> WorkerId {
        WorkerId(index)
    }

    pub fn index(self) -> usize {
        self.0
    }

    /// Spawns `f` on this worker, where it stays; `stack_words` is in machine words, may's unit.
    pub fn spawn(
        self,
        name: &str,
        stack_words: usize,
        f: impl FnOnce() + Send + 'static,
    ) -> io::Result<()> {
        spawn_on(self.0, name, stack_words, move || {
            debug_assert!(
                self.is_current(),
                "a coroutine spawned for {self:?} runs elsewhere"
            );
            f()
        })
    }

    /// Brings the calling coroutine back here after something resumed it on another thread
    /// (a timed-out wait resumes on may's timer thread).
    pub fn come_home(self) {
        return_to(self.0);
    }

    /// Waits up to `timeout` for a message, and comes back home if the wait timed out.
    pub fn recv_timeout<T>(
        self,
        rx: &may::sync::mpsc::Receiver<T>,
        timeout: Duration,
    ) -> Result<T, std::sync::mpsc::RecvTimeoutError> {
        let r = rx.recv_timeout(timeout);
        if matches!(r, Err(std::sync::mpsc::RecvTimeoutError::Timeout)) {
            self.come_home();
        }
        r
    }

    /// Sleeps for `duration` and comes back home.
    pub fn sleep(self, duration: Duration) {
        may::coroutine::sleep(duration);
        self.come_home();
    }

    /// A duplicate of `stream` whose descriptor maps to this worker's epoll; see [`on_worker`].
    pub fn own(self, stream: &TcpStream) -> io::Result<TcpStream> {
        on_worker(stream, self.0)
    }

    /// This worker's metrics slot; `None` when metrics are off.
    pub fn metrics(self) -> Option<&'static crate::metrics::WorkerMetrics> {
        crate::metrics::worker(self.0)
    }

    /// Whether the calling code runs on this worker's thread. True as well where that cannot be
    /// known: outside a coroutine, or before [`record_worker_threads`] ran (tests, tools).
    pub fn is_current(self) -> bool {
        if !may::coroutine::is_coroutine() {
            return true;
        }
        let threads = WORKER_THREADS.get();
        match threads.and_then(|t| t.get(self.0 % t.len())) {
            Some(home) => *home == std::thread::current().id(),
            None => true,
        }
    }
}

/// Each worker's thread, indexed by worker, once [`record_worker_threads`] has run.
static WORKER_THREADS: std::sync::OnceLock<Vec<std::thread::ThreadId>> = std::sync::OnceLock::new();

/// Learns which thread each of may's `workers` workers runs on, so that [`WorkerId::is_current`]
/// can tell (debug assertions). Call once at start-up, from a thread, after may is configured.
pub fn record_worker_threads(workers: usize) {
    let threads = (0..workers)
        .map(|w| {
            let builder = may::coroutine::Builder::new().id(w);
            may::go!(builder, || std::thread::current().id())
                .ok()
                .and_then(|h| h.join().ok())
        })
        .collect::<Option<Vec<_>>>();
    if let Some(threads) = threads {
        let _ = WORKER_THREADS.set(threads);
    }
}

/// Spawns on the given worker so the coroutine never leaves it (may runs without work stealing).
/// `stack_words` is in machine words, may's unit.
fn spawn_on(
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
fn on_worker(stream: &TcpStream, worker: usize) -> io::Result<TcpStream> {
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

/// Size of an eventfd read: the kernel refuses buffers shorter than its 8-byte counter.
const EVENTFD_READ_BYTES: usize = 8;

/// A timed wait that resumes on a chosen worker, for a coroutine of that worker that must not
/// leave it: `may::coroutine::sleep` would resume it on may's timer thread, while a read timeout
/// fires in the event loop of the worker that owns the descriptor. The descriptor is an eventfd
/// that nothing ever writes, so every read waits until its timeout.
pub(crate) struct Nap {
    io: CoIo<File>,
}

impl Nap {
    pub(crate) fn new(worker: usize) -> io::Result<Nap> {
        // SAFETY: plain syscall without pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and nothing else owns it.
        let created = unsafe { OwnedFd::from_raw_fd(fd) };
        let aligned = dup_for_worker(created.as_raw_fd(), worker)?;
        Ok(Nap {
            io: CoIo::new(File::from(aligned))?,
        })
    }

    /// Waits for `duration` (which must be positive), in a coroutine.
    pub(crate) fn sleep(&mut self, duration: Duration) {
        let mut counter = [0u8; EVENTFD_READ_BYTES];
        let timed_out = self.io.set_read_timeout(Some(duration)).is_ok()
            && matches!(self.io.read(&mut counter), Err(e) if e.kind() == io::ErrorKind::TimedOut);
        if !timed_out {
            // Never expected; still wait rather than let the caller spin.
            may::coroutine::sleep(duration);
        }
    }
}

/// A duplicate of `fd` (close-on-exec) whose number maps to `worker`'s epoll in may, which picks
/// it by `fd % workers`. Each try asks for the lowest free number at or above the next one that
/// maps to `worker`, so the search only moves up and ends at the descriptor limit.
pub(crate) fn dup_for_worker(fd: RawFd, worker: usize) -> io::Result<OwnedFd> {
    let workers = may::config().get_workers().max(1);
    let want = worker % workers;
    let mut lowest = want;
    loop {
        let min = libc::c_int::try_from(lowest)
            .map_err(|_| io::Error::from_raw_os_error(libc::EMFILE))?;
        // SAFETY: plain syscall without pointers.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
        if dup < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `dup` was just created and nothing else owns it.
        let dup = unsafe { OwnedFd::from_raw_fd(dup) };
        let got = dup.as_raw_fd() as usize;
        if got % workers == want {
            return Ok(dup);
        }
        // The next number above `got` that maps to `worker`; `dup` is closed here.
        lowest = got - got % workers + want + if got % workers > want { workers } else { 0 };
    }
}

/// Moves the calling coroutine back onto `worker` by having a helper spawned there wake it.
///
/// The wake only moves the caller if it comes after the caller has parked; one that comes first
/// leaves the caller where it is (typically may's timer thread, which runs timed-out coroutines
/// itself). So the helper waits until the caller is about to park, then yields to its worker's
/// queue a few times (twice as many on each retry) before waking it, and the caller checks
/// where it woke up.
fn return_to(worker: usize) {
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
