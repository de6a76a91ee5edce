//! Notifications (`LISTEN`/`NOTIFY`) that a listening connection receives, handed to one consumer
//! through a bounded queue.
//!
//! PostgreSQL delivers a transaction's notifications after it commits, in commit order, to every
//! session listening on the channel. The reader coroutine must never wait on the consumer (it
//! also answers the connection's requests), so when the consumer falls `MAX_PENDING_NOTIFICATIONS`
//! behind, further notifications are dropped and the consumer is told so
//! ([`Notifications::take_overflow`]): it must then resynchronise from the stored data, as it
//! must after the connection breaks (a new `Client::generation`).

use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use crate::lossy::{self, Offer, Take};
use crate::placement::WorkerId;

/// Notifications received and not yet taken by the consumer. A busy server's bid batches send one
/// notification each, a few thousand a second at most; 4096 is over a second of them, far more
/// than a consumer that is keeping up ever holds, while bounding what one that stopped can cost.
pub const MAX_PENDING_NOTIFICATIONS: usize = 4096;

/// One `NOTIFY`, as a listener receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub channel: String,
    pub payload: String,
}

/// The reader's side of the queue.
#[derive(Clone)]
pub struct NotifySink(Offer<Notification>);

/// The consumer's side of the queue.
pub struct Notifications(Take<Notification>);

/// A new, empty queue.
pub fn queue() -> (NotifySink, Notifications) {
    let (offer, take) = lossy::queue(MAX_PENDING_NOTIFICATIONS);
    (NotifySink(offer), Notifications(take))
}

impl NotifySink {
    /// Queues `n`, or drops it and marks the overflow when the consumer is too far behind.
    pub(crate) fn deliver(&self, n: Notification) {
        // A refusal is marked for the consumer (full) or has no one to tell (closed).
        let _ = self.0.offer(n);
    }
}

impl Notifications {
    /// The next notification, waiting up to `timeout`; a timed-out wait comes back to `home`.
    pub fn recv_timeout(
        &self,
        home: WorkerId,
        timeout: Duration,
    ) -> Result<Notification, RecvTimeoutError> {
        self.0.recv_timeout(home, timeout)
    }

    /// Whether notifications were dropped since the last call: the consumer must resynchronise.
    pub fn take_overflow(&self) -> bool {
        self.0.take_dropped()
    }

    /// The next notification if one is waiting; never waits.
    pub fn try_recv(&self) -> Option<Notification> {
        self.0.try_recv()
    }

    /// Notifications waiting to be taken.
    pub fn pending(&self) -> usize {
        self.0.pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(i: usize) -> Notification {
        Notification {
            channel: "c".into(),
            payload: i.to_string(),
        }
    }

    #[test]
    fn the_queue_holds_its_bound_and_drops_past_it() {
        let (sink, notes) = queue();
        for i in 0..MAX_PENDING_NOTIFICATIONS {
            sink.deliver(note(i));
        }
        assert_eq!(notes.pending(), MAX_PENDING_NOTIFICATIONS);
        assert!(!notes.take_overflow(), "at the bound nothing is dropped");
        sink.deliver(note(MAX_PENDING_NOTIFICATIONS));
        assert_eq!(notes.pending(), MAX_PENDING_NOTIFICATIONS);
        assert!(
            notes.take_overflow(),
            "just past it, one is dropped and said so"
        );
        assert!(!notes.take_overflow());
        let home = WorkerId::new(0);
        let first = notes.recv_timeout(home, Duration::from_secs(1)).unwrap();
        assert_eq!(first, note(0));
        assert_eq!(notes.pending(), MAX_PENDING_NOTIFICATIONS - 1);
    }
}
