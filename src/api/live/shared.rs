//! What crosses workers in live updates: the update the feed hands every worker, and what every
//! worker's streams share (the stream cap and the filter of followed auctions).

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::domain::time::Timestamp;

/// The channel `gavel_place_bids` notifies on (migration 0006).
pub const BIDS_CHANNEL: &str = "gavel_bids";

/// Slots in the filter of followed auctions (a counting filter: an auction's slot counts the
/// workers following it and any auction sharing the slot). 4096 slots keep false positives, each
/// one read of an auction nobody here follows, rare for thousands of followed auctions, in 16 KiB.
const FOLLOWED_SLOTS: usize = 4096;

/// What the feed hands every worker.
pub enum Update {
    /// Bids accepted on `auction`, in acceptance order, each as its event's count and bytes;
    /// `ends_at` is the auction's end after the last of them.
    Bids {
        auction: i64,
        ends_at: Timestamp,
        events: Vec<(i64, Box<[u8]>)>,
    },
    /// Notifications were lost: catch up every auction followed, from the stored bids.
    Resync,
    /// A stream joined `auction` behind what this worker already sent: catch it up.
    CatchUp(i64),
}

/// What every worker's streams share: the stream cap and the filter of followed auctions. Both
/// are atomics, touched when a stream opens or ends and when a notification arrives, never on a
/// bid's path.
pub struct Shared {
    max_streams: usize,
    open: AtomicUsize,
    followed: Box<[AtomicU32]>,
}

impl Shared {
    pub fn new(max_streams: usize) -> Arc<Shared> {
        Arc::new(Shared {
            max_streams,
            open: AtomicUsize::new(0),
            followed: (0..FOLLOWED_SLOTS).map(|_| AtomicU32::new(0)).collect(),
        })
    }

    /// Streams open (or being opened) in this process.
    pub fn open_streams(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Counts one more stream, or says the cap is reached.
    pub(super) fn try_open(self: &Arc<Self>) -> Option<StreamCount> {
        self.open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max_streams).then_some(n + 1)
            })
            .ok()
            .map(|_| StreamCount(self.clone()))
    }

    /// Whether some worker here may follow `auction` (false positives possible, never false
    /// negatives).
    pub fn followed(&self, auction: i64) -> bool {
        self.slot(auction).load(Ordering::SeqCst) > 0
    }

    pub(super) fn follow(&self, auction: i64) {
        self.slot(auction).fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn unfollow(&self, auction: i64) {
        let before = self.slot(auction).fetch_sub(1, Ordering::SeqCst);
        debug_assert!(
            before > 0,
            "auction {auction} unfollowed more than followed"
        );
    }

    fn slot(&self, auction: i64) -> &AtomicU32 {
        &self.followed[auction.rem_euclid(FOLLOWED_SLOTS as i64) as usize]
    }
}

/// One stream in the process's count, released on drop.
pub(crate) struct StreamCount(Arc<Shared>);

impl Drop for StreamCount {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}
