//! The process's one listening connection: turns each batch's notification into the events of
//! the auctions followed here, rendered once, for every worker.

use std::collections::HashMap;
use std::io;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::Duration;

use super::render;
use super::shared::{Shared, Update, BIDS_CHANNEL};
use crate::domain::events::MAX_REPLAYED_BIDS;
use crate::fanout::Hub;
use crate::logging;
use crate::placement::WorkerId;
use crate::storage::history::auction_history;
use crate::storage::pg::{Client, Config, Notifications};
use crate::storage::STATEMENTS;

/// Longest the feed waits for a notification before checking whether its connection was
/// re-established (notifications sent meanwhile were lost).
const FEED_POLL_MILLIS: u64 = 200;

/// Auctions whose last published count the feed remembers; past this it forgets them all (the
/// workers' position check drops the few events it then sends twice).
const MAX_REMEMBERED_AUCTIONS: usize = 100_000;

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
                Ok(n) => match parse_payload(&n.payload) {
                    Some(entries) => {
                        for advanced in entries {
                            self.publish(advanced);
                        }
                    }
                    None => self.resync(),
                },
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

    /// Reads the bids `advanced` announces (those not yet published) and hands their events to
    /// every worker.
    fn publish(&mut self, advanced: Advanced) {
        let auction = advanced.auction;
        if !self.shared.followed(auction) {
            self.published.remove(&auction);
            return;
        }
        let from = self
            .published
            .get(&auction)
            .map_or(advanced.before, |&p| p.max(advanced.before));
        if advanced.after <= from {
            return;
        }
        let history = match auction_history(&self.client, auction, from, MAX_REPLAYED_BIDS) {
            Ok(Some(history)) => history,
            Ok(None) => return,
            Err(e) => {
                log_unread(auction, &e);
                // The workers read the stored bids themselves.
                self.resync();
                return;
            }
        };
        let events = history
            .bids
            .iter()
            .map(|accepted| {
                let mut frame = Vec::with_capacity(768);
                render::bid_event(&mut frame, accepted, &history.auction);
                (accepted.count, frame.into_boxed_slice())
            })
            .collect();
        if self.published.len() >= MAX_REMEMBERED_AUCTIONS {
            self.published.clear();
        }
        self.published.insert(auction, history.auction.bid_count);
        // A full inbox drops the event and tells its worker, which then resynchronises.
        let _ = self.hub.publish(Update::Bids {
            auction,
            ends_at: history.auction.ends_at,
            events,
        });
    }
}

fn log_unread(auction: i64, e: &dyn std::fmt::Display) {
    logging::warn(
        "live updates: cannot read accepted bids",
        &[("auction", &auction), ("error", &e.to_string())],
    );
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
