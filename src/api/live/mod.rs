//! Live updates (API.md v1.1): every auction's stream of events, on every worker.
//!
//! - [`feed`]: the process's one listening PostgreSQL connection. `gavel_place_bids` sends one
//!   notification per batch after it commits; the feed reads the batch's bids of the auctions
//!   someone here follows, renders their events once, and hands them to every worker through a
//!   [`fanout::Hub`](crate::fanout::Hub). Notifications lost (a reconnection, an overflow) make
//!   every worker resynchronise from the stored bids.
//! - [`subscribers`] and [`updates`]: one worker's streams, their positions, close timers and
//!   pings, and the coroutines that serve them. An event
//!   is sent to a stream only if it is the next one that stream needs (its id one past the
//!   stream's last), so a stream never sees a duplicate; a stream found behind is caught up from
//!   the stored bids, so it never sees a gap.
//! - [`render`]: the events as bytes.

pub mod feed;
pub mod render;
pub mod shared;
pub mod subscribers;
pub mod updates;

pub use shared::{Shared, Update, BIDS_CHANNEL};
pub use subscribers::{Reservation, Subscribers};
