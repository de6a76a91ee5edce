//! A server's state shared by its acceptors and connections, per worker: the open and parked
//! counters, the registry of open connections (so that shutdown can wake the idle ones), the gzip
//! compressors; and the guards that keep the counters and the registry true as connections come
//! and go. The locks here are per worker, contended within one worker at most.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use may::net::TcpStream;

use super::cors::Cors;
use super::gzip::GzipPool;
use super::observe::Observers;
use super::GZIP_COMPRESSORS_PER_WORKER;

/// The deadlines a connection works under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) idle: Duration,
    /// Idle time after which the connection parks instead of waiting in its coroutine.
    pub(crate) park: Duration,
    pub(crate) header: Duration,
    pub(crate) body: Duration,
    pub(crate) write: Duration,
}

/// State shared by a server's acceptors and connections.
pub(crate) struct Shared {
    pub(super) timeouts: Timeouts,
    pub(super) cors: Cors,
    pub(super) observers: Observers,
    pub(super) draining: AtomicBool,
    pub(super) workers: Box<[Worker]>,
}

/// One worker's bookkeeping, padded to its own cache lines so that counting connections on one
/// worker does not slow down another.
#[repr(align(128))]
pub(super) struct Worker {
    pub(super) open: AtomicUsize,
    pub(super) parked: AtomicUsize,
    /// Per-worker lock: taken by the worker's connections as they open and close, so it is
    /// contended within that worker at most (and by shutdown, off the request path).
    pub(super) registry: Mutex<Registry>,
    /// The worker's own compressors; a response finding none free is sent uncompressed.
    pub(super) gzip: GzipPool,
}

/// The worker's open connections, for shutdown to find the idle ones.
#[derive(Default)]
pub(super) struct Registry {
    pub(super) slots: Vec<Option<Arc<Slot>>>,
    pub(super) free: Vec<usize>,
}

/// A registered connection: its socket and whether it is waiting between requests.
pub(crate) struct Slot {
    pub(super) fd: RawFd,
    pub(super) idle: AtomicBool,
}

impl Shared {
    pub(super) fn new(
        timeouts: Timeouts,
        cors: Cors,
        observers: Observers,
        workers: usize,
    ) -> Shared {
        Shared {
            timeouts,
            cors,
            observers,
            draining: AtomicBool::new(false),
            workers: (0..workers)
                .map(|_| Worker {
                    open: AtomicUsize::new(0),
                    parked: AtomicUsize::new(0),
                    registry: Mutex::new(Registry::default()),
                    gzip: GzipPool::new(GZIP_COMPRESSORS_PER_WORKER),
                })
                .collect(),
        }
    }

    pub(super) fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub(super) fn registry(&self, worker: usize) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the slot table inconsistent.
        self.workers[worker]
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wakes every idle connection waiting in its coroutine with end-of-input so it closes.
    /// Busy ones see the draining flag when they next go idle; parked ones are closed by their
    /// worker's parker.
    pub(super) fn wake_idle(&self) {
        for worker in 0..self.workers.len() {
            let registry = self.registry(worker);
            for slot in registry.slots.iter().flatten() {
                if slot.idle.load(Ordering::SeqCst) {
                    slot.shutdown_read();
                }
            }
        }
    }
}

impl Slot {
    /// Only called with the registry lock held and the slot registered: a connection
    /// unregisters (under that lock) before its socket is closed, so `fd` is still its socket.
    pub(super) fn shutdown_read(&self) {
        // SAFETY: plain syscall on an fd that is open (see above); no memory is involved.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RD);
        }
    }
}

/// Counts a connection as parked, in its worker's counter, for as long as it lives.
pub(super) struct ParkedGauge {
    pub(super) shared: Arc<Shared>,
    pub(super) worker: usize,
}

impl ParkedGauge {
    pub(super) fn new(shared: &Arc<Shared>, worker: usize) -> ParkedGauge {
        shared.workers[worker].parked.fetch_add(1, Ordering::SeqCst);
        ParkedGauge {
            shared: shared.clone(),
            worker,
        }
    }
}

impl Drop for ParkedGauge {
    fn drop(&mut self) {
        self.shared.workers[self.worker]
            .parked
            .fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection's socket with its bookkeeping. Field order is drop order: unregister first,
/// then close the socket, then stop counting it, so shutdown never touches a closed fd and never
/// reports "all closed" while a socket is still open.
pub(super) struct Tracked {
    pub(super) membership: Membership,
    pub(super) stream: TcpStream,
    pub(super) _counted: Counted,
}

/// Registration in the worker's registry, removed on drop.
pub(super) struct Membership {
    pub(super) shared: Arc<Shared>,
    pub(super) worker: usize,
    pub(super) slot: Arc<Slot>,
    pub(super) index: usize,
}

impl Membership {
    pub(super) fn new(shared: Arc<Shared>, worker: usize, fd: RawFd) -> Membership {
        let slot = Arc::new(Slot {
            fd,
            idle: AtomicBool::new(true),
        });
        let index = {
            let mut registry = shared.registry(worker);
            match registry.free.pop() {
                Some(i) => {
                    registry.slots[i] = Some(slot.clone());
                    i
                }
                None => {
                    registry.slots.push(Some(slot.clone()));
                    registry.slots.len() - 1
                }
            }
        };
        Membership {
            shared,
            worker,
            slot,
            index,
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut registry = self.shared.registry(self.worker);
        registry.slots[self.index] = None;
        registry.free.push(self.index);
    }
}

/// One open connection in its worker's counter, released on drop.
pub(super) struct Counted {
    pub(super) shared: Arc<Shared>,
    pub(super) worker: usize,
}

impl Counted {
    pub(super) fn new(shared: Arc<Shared>, worker: usize) -> Counted {
        shared.workers[worker].open.fetch_add(1, Ordering::SeqCst);
        Counted { shared, worker }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.shared.workers[self.worker]
            .open
            .fetch_sub(1, Ordering::SeqCst);
    }
}
