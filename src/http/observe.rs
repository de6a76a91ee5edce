//! What the layer reports, and to whom: an [`Observer`] of the server's workers (metrics), so
//! that the layer itself knows nothing of how requests are counted.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Told of every response and every accepted connection, on the connection's worker. Must be
/// cheap and must not block: it runs on the request path.
pub trait Observer: Send + Sync {
    /// A response was buffered for the socket `took` after its request was complete (or after
    /// the layer refused the request). `route` is the response's route label.
    fn request(&self, route: &'static str, status: u16, took: Duration);
    /// The listener accepted a connection.
    fn connection_accepted(&self);
}

/// One observer per worker, indexed by worker; empty when nothing observes the server.
#[derive(Clone, Default)]
pub struct Observers(Vec<Arc<dyn Observer>>);

impl Observers {
    pub fn new(per_worker: Vec<Arc<dyn Observer>>) -> Observers {
        Observers(per_worker)
    }

    /// `worker`'s observer, if any.
    pub(crate) fn of(&self, worker: usize) -> Option<&Arc<dyn Observer>> {
        self.0.get(worker)
    }
}

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Observers({} workers)", self.0.len())
    }
}
