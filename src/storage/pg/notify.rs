//! Notifications (`LISTEN`/`NOTIFY`) that a listening connection receives, handed to one consumer
//! through a bounded queue.
//!
//! PostgreSQL delivers a transaction's notifications after it commits, in commit order, to every
//! session listening on the channel. The reader coroutine must never wait on the consumer (it
//! also answers the connection's requests), so when the consumer falls `MAX_PENDING_NOTIFICATIONS`
//! behind, further notifications are dropped and the consumer is told so
//! ([`Notifications::take_overflow`]): it must then resynchronise from the stored data, as it
//! must after the connection breaks (a new `Client::generation`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::Duration;

use may::sync::mpsc::{channel, Receiver, Sender};

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
pub struct NotifySink {
    tx: Sender<Notification>,
    shared: Arc<Counts>,
}

/// The consumer's side of the queue.
pub struct Notifications {
    rx: Receiver<Notification>,
    shared: Arc<Counts>,
}

struct Counts {
    pending: AtomicUsize,
    overflowed: AtomicBool,
}

/// A new, empty queue.
pub fn queue() -> (NotifySink, Notifications) {
    let (tx, rx) = channel();
    let shared = Arc::new(Counts {
        pending: AtomicUsize::new(0),
        overflowed: AtomicBool::new(false),
    });
    (
        NotifySink {
            tx,
            shared: shared.clone(),
        },
        Notifications { rx, shared },
    )
}

impl NotifySink {
    /// Queues `n`, or drops it and marks the overflow when the consumer is too far behind.
    pub(crate) fn deliver(&self, n: Notification) {
        if self.shared.pending.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING_NOTIFICATIONS {
            self.shared.pending.fetch_sub(1, Ordering::AcqRel);
            self.shared.overflowed.store(true, Ordering::Release);
            return;
        }
        if self.tx.send(n).is_err() {
            // No consumer any more: nothing waits for the count.
            self.shared.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Notifications {
    /// The next notification, waiting up to `timeout`; a timed-out wait comes back to `home`.
    pub fn recv_timeout(
        &self,
        home: WorkerId,
        timeout: Duration,
    ) -> Result<Notification, RecvTimeoutError> {
        let n = home.recv_timeout(&self.rx, timeout)?;
        self.shared.pending.fetch_sub(1, Ordering::AcqRel);
        Ok(n)
    }

    /// Whether notifications were dropped since the last call: the consumer must resynchronise.
    pub fn take_overflow(&self) -> bool {
        self.shared.overflowed.swap(false, Ordering::AcqRel)
    }

    /// Notifications waiting to be taken.
    pub fn pending(&self) -> usize {
        self.shared.pending.load(Ordering::Acquire)
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
