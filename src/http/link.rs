//! What a connection sees of its server: timeouts, CORS policy, its worker's compressors and
//! observer, and shutdown state.

use std::sync::atomic::Ordering;

use super::cors::Cors;
use super::gzip::GzipPool;
use super::observe::Observer;
#[cfg(any(test, feature = "fuzzing"))]
use super::observe::Observers;
use super::shared::{Shared, Slot, Timeouts};
#[cfg(any(test, feature = "fuzzing"))]
use std::sync::atomic::AtomicBool;

/// What a connection sees of the server: its timeouts, CORS policy, its worker's compressors and
/// shutdown state.
pub(crate) struct ConnLink<'a> {
    pub(super) shared: &'a Shared,
    pub(super) worker: usize,
    pub(super) slot: &'a Slot,
}

/// A server's shared state for one connection outside any server: the link of a connection
/// that runs on an in-memory stream.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) struct Detached {
    shared: Shared,
    slot: Slot,
}

#[cfg(any(test, feature = "fuzzing"))]
impl Detached {
    pub(crate) fn new(timeouts: Timeouts, cors: Cors) -> Detached {
        Detached {
            shared: Shared::new(timeouts, cors, Observers::default(), 1),
            slot: Slot {
                fd: -1,
                idle: AtomicBool::new(false),
            },
        }
    }

    pub(crate) fn link(&self) -> ConnLink<'_> {
        ConnLink {
            shared: &self.shared,
            worker: 0,
            slot: &self.slot,
        }
    }
}

impl<'a> ConnLink<'a> {
    pub(crate) fn timeouts(&self) -> &Timeouts {
        &self.shared.timeouts
    }

    pub(crate) fn cors(&self) -> &Cors {
        &self.shared.cors
    }

    pub(crate) fn gzip(&self) -> &GzipPool {
        &self.shared.workers[self.worker].gzip
    }

    /// Marks the connection idle; false if the server is draining and it should close instead.
    /// Flag then check here, flag then scan in shutdown: one of the two always sees the other.
    pub(crate) fn enter_idle(&self) -> bool {
        self.slot.idle.store(true, Ordering::SeqCst);
        !self.shared.draining()
    }

    pub(crate) fn leave_idle(&self) {
        self.slot.idle.store(false, Ordering::SeqCst);
    }

    /// The server is shutting down: answer the current request with `Connection: close`.
    pub(crate) fn draining(&self) -> bool {
        self.shared.draining()
    }

    /// The worker's observer, `None` when nothing observes the server; asked once per
    /// connection coroutine.
    pub(crate) fn observer(&self) -> Option<&'a dyn Observer> {
        self.shared.observers.of(self.worker).map(|o| &**o)
    }
}
