//! One event handed to every worker without a lock shared across workers: each worker has its
//! own bounded inbox (a [`lossy`](crate::lossy) queue), a publisher offers the event to every
//! inbox, and each worker takes from its own inbox on its own coroutine. An inbox that is full
//! drops the event and says so; its worker then rebuilds what it serves from the database.

use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::Duration;

use crate::lossy::{self, Offer, Take};
use crate::placement::WorkerId;

/// Events waiting in one worker's inbox. A worker that keeps up takes each event within
/// microseconds; 4096 is seconds of a busy server's accepted-bid batches, so only a stalled
/// worker ever fills it, and the bound keeps that worker from holding the others' events.
pub const MAX_INBOX_EVENTS: usize = 4096;

/// The publishers' side: every worker's inbox.
pub struct Hub<T> {
    inboxes: Vec<Offer<Arc<T>>>,
}

impl<T> Clone for Hub<T> {
    fn clone(&self) -> Self {
        Hub {
            inboxes: self.inboxes.clone(),
        }
    }
}

/// One worker's side.
pub struct Inbox<T>(Take<Arc<T>>);

/// A hub for `workers` workers, and each worker's inbox, indexed by worker.
pub fn hub<T>(workers: usize) -> (Hub<T>, Vec<Inbox<T>>) {
    let (offers, takes): (Vec<_>, Vec<_>) = (0..workers.max(1))
        .map(|_| lossy::queue(MAX_INBOX_EVENTS))
        .unzip();
    (
        Hub { inboxes: offers },
        takes.into_iter().map(Inbox).collect(),
    )
}

impl<T> Hub<T> {
    /// Offers `event` to every worker; never waits. Returns how many inboxes were full and
    /// dropped it.
    pub fn publish(&self, event: T) -> usize {
        let event = Arc::new(event);
        self.inboxes
            .iter()
            .filter(|inbox| inbox.offer(event.clone()).is_err())
            .count()
    }
}

impl<T> Hub<T> {
    /// Offers `event` to `worker`'s inbox alone; never waits. False if it was full and dropped
    /// it (the worker is told, as for any dropped event).
    pub fn offer_to(&self, worker: usize, event: T) -> bool {
        self.inboxes[worker % self.inboxes.len()]
            .offer(Arc::new(event))
            .is_ok()
    }
}

impl<T> Inbox<T> {
    /// The next event, waiting up to `timeout`; a timed-out wait comes back to `home`.
    pub fn recv_timeout(
        &self,
        home: WorkerId,
        timeout: Duration,
    ) -> Result<Arc<T>, RecvTimeoutError> {
        self.0.recv_timeout(home, timeout)
    }

    /// Whether events were dropped since the last call: the worker must resynchronise.
    pub fn take_dropped(&self) -> bool {
        self.0.take_dropped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_worker_gets_every_event_in_order() {
        let (hub, inboxes) = hub::<u32>(3);
        for e in 0..10 {
            assert_eq!(hub.publish(e), 0);
        }
        for inbox in &inboxes {
            for e in 0..10 {
                let got = inbox.recv_timeout(WorkerId::new(0), Duration::from_secs(1));
                assert_eq!(got.as_deref(), Ok(&e));
            }
            assert!(!inbox.take_dropped());
        }
    }

    #[test]
    fn a_full_inbox_drops_for_its_worker_alone() {
        let (hub, inboxes) = hub::<usize>(2);
        let home = WorkerId::new(0);
        for e in 0..MAX_INBOX_EVENTS {
            assert_eq!(hub.publish(e), 0);
            // Worker 1 keeps up; worker 0 takes nothing.
            assert_eq!(
                *inboxes[1]
                    .recv_timeout(home, Duration::from_secs(1))
                    .unwrap(),
                e
            );
        }
        assert_eq!(
            hub.publish(MAX_INBOX_EVENTS),
            1,
            "only worker 0's inbox is full"
        );
        assert!(inboxes[0].take_dropped());
        assert!(!inboxes[1].take_dropped());
        let next = inboxes[1]
            .recv_timeout(home, Duration::from_secs(1))
            .unwrap();
        assert_eq!(*next, MAX_INBOX_EVENTS);
        assert_eq!(
            *inboxes[0]
                .recv_timeout(home, Duration::from_secs(1))
                .unwrap(),
            0
        );
    }
}
