//! A bounded queue from any number of producers to one consumer that never makes a producer
//! wait: past its bound it drops what is offered and tells the consumer, who then rebuilds its
//! view from the source of truth instead of from the queue.
//!
//! For producers that must not block on a slow consumer: a connection's reader coroutine handing
//! on what its server pushes, a worker handing events to the other workers, a request joining
//! its worker's next batch (which answers 503 when refused).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::Duration;

use may::sync::mpsc::{channel, Receiver, Sender};

use crate::placement::WorkerId;

/// The producers' side; cheap to clone.
pub struct Offer<T> {
    tx: Sender<T>,
    shared: Arc<Counts>,
}

impl<T> Clone for Offer<T> {
    fn clone(&self) -> Self {
        Offer {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// Why an item was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds its bound; the consumer is told items were dropped.
    Full,
    /// The consumer is gone.
    Closed,
}

/// The consumer's side.
pub struct Take<T> {
    rx: Receiver<T>,
    shared: Arc<Counts>,
}

struct Counts {
    bound: usize,
    pending: AtomicUsize,
    dropped: AtomicBool,
}

/// A new, empty queue holding at most `bound` items.
pub fn queue<T>(bound: usize) -> (Offer<T>, Take<T>) {
    let (tx, rx) = channel();
    let shared = Arc::new(Counts {
        bound,
        pending: AtomicUsize::new(0),
        dropped: AtomicBool::new(false),
    });
    (
        Offer {
            tx,
            shared: shared.clone(),
        },
        Take { rx, shared },
    )
}

impl<T> Offer<T> {
    /// Queues `item`, or drops it (marking the loss when the queue is full). Never waits.
    pub fn offer(&self, item: T) -> Result<(), Refused> {
        let c = &self.shared;
        if c.pending.fetch_add(1, Ordering::AcqRel) >= c.bound {
            c.pending.fetch_sub(1, Ordering::AcqRel);
            c.dropped.store(true, Ordering::Release);
            return Err(Refused::Full);
        }
        if self.tx.send(item).is_err() {
            // No consumer any more: nothing waits for the count.
            c.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Closed);
        }
        Ok(())
    }
}

impl<T> Take<T> {
    /// The next item, waiting up to `timeout`; a timed-out wait comes back to `home`.
    pub fn recv_timeout(&self, home: WorkerId, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let item = home.recv_timeout(&self.rx, timeout)?;
        self.shared.pending.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(self.pending() < self.shared.bound);
        Ok(item)
    }

    /// The next item, waiting as long as it takes; `None` once every producer is gone.
    pub fn recv(&self) -> Option<T> {
        let item = self.rx.recv().ok()?;
        self.shared.pending.fetch_sub(1, Ordering::AcqRel);
        Some(item)
    }

    /// The next item if one is queued.
    pub fn try_recv(&self) -> Option<T> {
        let item = self.rx.try_recv().ok()?;
        self.shared.pending.fetch_sub(1, Ordering::AcqRel);
        Some(item)
    }

    /// Whether items were dropped since the last call: what the queue would have said must be
    /// read from the source of truth instead.
    pub fn take_dropped(&self) -> bool {
        self.shared.dropped.swap(false, Ordering::AcqRel)
    }

    /// Items waiting to be taken.
    pub fn pending(&self) -> usize {
        self.shared.pending.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: usize = 8;

    #[test]
    fn holds_its_bound_and_drops_past_it_without_waiting() {
        let (offer, take) = queue(BOUND);
        for i in 0..BOUND {
            assert_eq!(offer.offer(i), Ok(()));
        }
        assert_eq!(take.pending(), BOUND);
        assert!(!take.take_dropped(), "at the bound nothing is dropped");
        assert_eq!(offer.offer(BOUND), Err(Refused::Full));
        assert_eq!(take.pending(), BOUND);
        assert!(
            take.take_dropped(),
            "just past it, one is dropped and said so"
        );
        assert!(!take.take_dropped());
        let first = take.recv_timeout(WorkerId::new(0), Duration::from_secs(1));
        assert_eq!(first, Ok(0));
        assert_eq!(take.try_recv(), Some(1));
        assert_eq!(take.pending(), BOUND - 2);
        assert_eq!(offer.offer(BOUND + 1), Ok(()), "room again once taken");
        drop(take);
        assert_eq!(offer.offer(0), Err(Refused::Closed));
    }

    #[test]
    fn many_producers_one_consumer_in_each_producers_order() {
        let (offer, take) = queue(1_000);
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let offer = offer.clone();
                std::thread::spawn(move || {
                    for i in 0..100 {
                        assert_eq!(offer.offer((p, i)), Ok(()));
                    }
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let mut last = [None; 4];
        while let Some((p, i)) = take.try_recv() {
            assert!(last[p].is_none_or(|l| l < i), "producer {p} out of order");
            last[p] = Some(i);
        }
        assert_eq!(last, [Some(99); 4]);
        assert_eq!(take.pending(), 0);
    }
}
