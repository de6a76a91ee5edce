//! The process's one listening connection: turns each batch's notification into the events of
//! the auctions followed here, rendered once, for every worker.

use std::collections::HashMap;
use std::io;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::Duration;

use super::render;
use super::shared::{Shared, Update, BIDS_CHANNEL};
use crate::domain::events::History;
use crate::domain::events::MAX_REPLAYED_BIDS;
use crate::fanout::Hub;
use crate::logging;
use crate::placement::WorkerId;
use crate::storage::history::auction_histories;
use crate::storage::pg::{Client, Config, Notification, Notifications};
use crate::storage::STATEMENTS;

/// Longest the feed waits for a notification before checking whether its connection was
/// re-established (notifications sent meanwhile were lost).
const FEED_POLL_MILLIS: u64 = 200;

/// Auctions whose last published count the feed remembers; past this it forgets them all (the
/// workers' position check drops the few events it then sends twice).
const MAX_REMEMBERED_AUCTIONS: usize = 100_000;

/// Most notifications read together, their bids in one statement: a busy server's batches
/// arrive faster than one read each could keep up with.
const MAX_NOTIFICATIONS_PER_READ: usize = 64;

/// Stack of the feed coroutine: it authenticates to PostgreSQL (SCRAM) and renders JSON.
const FEED_STACK_WORDS: usize = 128 * 1024 / std::mem::size_of::<usize>();

/// Appended to the configured `application_name` for the listening connection.
pub const LISTENER_NAME_SUFFIX: &str = "-live";

/// One auction's entry in a notification: its bid counts before and after the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advanced {
    pub auction: i64,
    pub before: i64,
    pub after: i64,
}

/// A notification's payload: `auction:before:after` entries separated by commas, or `*` (too
/// many auctions for one payload: resynchronise). `None` for `*` and for anything unreadable.
pub fn parse_payload(payload: &str) -> Option<Vec<Advanced>> {
    payload
        .split(',')
        .map(|entry| {
            let mut parts = entry.split(':').map(|p| p.parse::<i64>().ok());
            let advanced = Advanced {
                auction: parts.next()??,
                before: parts.next()??,
                after: parts.next()??,
            };
            (parts.next().is_none() && advanced.before < advanced.after).then_some(advanced)
        })
        .collect()
}

/// Connects the listening connection (before returning, so a bad configuration stops start-up)
/// and starts the feed on `worker`.
pub fn start(
    cfg: &Config,
    worker: WorkerId,
    shared: Arc<Shared>,
    hub: Hub<Update>,
) -> io::Result<()> {
    let mut cfg = cfg.clone();
    // Named apart in pg_stat_activity: operators (and the tests) can tell it from the workers'.
    cfg.application_name = format!("{}{LISTENER_NAME_SUFFIX}", cfg.application_name);
    worker.spawn("live-feed", FEED_STACK_WORDS, move || {
        let (client, notes) = match Client::listening(cfg, STATEMENTS, &[BIDS_CHANNEL], worker) {
            Ok(connected) => connected,
            Err(e) => {
                logging::error(
                    "live updates: cannot listen for accepted bids",
                    &[("error", &e.to_string())],
                );
                return;
            }
        };
        Feed {
            client,
            worker,
            shared,
            hub,
            published: HashMap::new(),
        }
        .run(&notes);
    })
}

struct Feed {
    client: Client,
    worker: WorkerId,
    shared: Arc<Shared>,
    hub: Hub<Update>,
    /// Per auction, the last count whose event was handed to the workers.
    published: HashMap<i64, i64>,
}

impl Feed {
    fn run(&mut self, notes: &Notifications) {
        let mut generation = self.client.generation();
        loop {
            match notes.recv_timeout(self.worker, Duration::from_millis(FEED_POLL_MILLIS)) {
                Ok(first) => {
                    let mut batch = vec![first];
                    while batch.len() < MAX_NOTIFICATIONS_PER_READ {
                        match notes.try_recv() {
                            Some(n) => batch.push(n),
                            None => break,
                        }
                    }
                    self.handle(&batch);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let now_generation = self.client.generation();
            if notes.take_overflow() || now_generation != generation {
                generation = now_generation;
                self.resync();
            }
        }
    }

    fn resync(&mut self) {
        self.published.clear();
        self.hub.publish(Update::Resync);
    }

    /// Reads, in one statement, the bids the notifications announce (those of auctions followed
    /// here and not yet published) and hands their events to every worker.
    fn handle(&mut self, batch: &[Notification]) {
        let mut wanted: Vec<(i64, i64)> = Vec::new();
        for n in batch {
            let Some(entries) = parse_payload(&n.payload) else {
                return self.resync();
            };
            for advanced in entries {
                if let Some(from) = self.unpublished(advanced) {
                    match wanted.iter_mut().find(|w| w.0 == advanced.auction) {
                        Some(w) => w.1 = w.1.min(from),
                        None => wanted.push((advanced.auction, from)),
                    }
                }
            }
        }
        if wanted.is_empty() {
            return;
        }
        let histories = match auction_histories(&self.client, &wanted, MAX_REPLAYED_BIDS) {
            Ok(histories) => histories,
            Err(e) => {
                logging::warn(
                    "live updates: cannot read accepted bids",
                    &[("auctions", &wanted.len()), ("error", &e.to_string())],
                );
                // The workers read the stored bids themselves.
                return self.resync();
            }
        };
        if self.published.len() + histories.len() > MAX_REMEMBERED_AUCTIONS {
            self.published.clear();
        }
        for history in histories {
            self.publish(&history);
        }
    }

    /// The count after which `advanced`'s bids are still to be published, if any are and some
    /// worker here follows the auction.
    fn unpublished(&mut self, advanced: Advanced) -> Option<i64> {
        if !self.shared.followed(advanced.auction) {
            self.published.remove(&advanced.auction);
            return None;
        }
        let from = self
            .published
            .get(&advanced.auction)
            .map_or(advanced.before, |&p| p.max(advanced.before));
        (advanced.after > from).then_some(from)
    }

    fn publish(&mut self, history: &History) {
        let events = render::bid_events(history);
        self.published
            .insert(history.auction.id, history.auction.bid_count);
        // A full inbox drops the event and tells its worker, which then resynchronises.
        let _ = self.hub.publish(Update::Bids {
            auction: history.auction.id,
            ends_at: history.auction.ends_at,
            events,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_auctions_and_their_counts() {
        assert_eq!(
            parse_payload("7:0:2,9:41:42"),
            Some(vec![
                Advanced {
                    auction: 7,
                    before: 0,
                    after: 2
                },
                Advanced {
                    auction: 9,
                    before: 41,
                    after: 42
                },
            ])
        );
        for unreadable in ["*", "", "7", "7:1", "7:1:2:3", "7:2:2", "a:1:2", "7:1:2,"] {
            assert_eq!(parse_payload(unreadable), None, "{unreadable}");
        }
    }
}
