//! Auction rules that need no IO: derived status, the next acceptable bid, and what a new auction may be.

use super::money::Money;
use super::time::Timestamp;

/// Longest title, in Unicode scalar values after trimming (API.md).
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest auction: 365 days (API.md), so `duration_seconds` tops out at 31 536 000.
pub const MAX_DURATION_SECS: i64 = 365 * 86_400;
/// Longest soft-close extension: one hour (API.md).
pub const MAX_EXTENSION_SECS: i64 = 3_600;
/// The increment an auction gets when none is given (API.md).
pub const DEFAULT_MIN_INCREMENT_CENTS: i64 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Scheduled,
    Open,
    Closed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Scheduled => "scheduled",
            Status::Open => "open",
            Status::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        match text {
            "scheduled" => Some(Status::Scheduled),
            "open" => Some(Status::Open),
            "closed" => Some(Status::Closed),
            _ => None,
        }
    }

    /// `scheduled` before `starts_at`, `open` until `ends_at`, `closed` from `ends_at` on.
    pub fn at(starts_at: Timestamp, ends_at: Timestamp, now: Timestamp) -> Status {
        if now < starts_at {
            Status::Scheduled
        } else if now < ends_at {
            Status::Open
        } else {
            Status::Closed
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auction {
    pub id: i64,
    pub title: String,
    pub seller_id: i64,
    pub start_price: Money,
    pub min_increment: Money,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub extension_seconds: i32,
    pub current_price: Option<Money>,
    pub leader_id: Option<i64>,
    pub bid_count: i64,
    pub created_at: Timestamp,
}

impl Auction {
    pub fn status(&self, now: Timestamp) -> Status {
        Status::at(self.starts_at, self.ends_at, now)
    }

    /// `start_price` before the first bid, else `current_price + min_increment` (may pass the money maximum).
    pub fn min_next_bid(&self) -> Money {
        min_next_bid(self.start_price, self.min_increment, self.current_price)
    }
}

pub fn min_next_bid(start_price: Money, min_increment: Money, current: Option<Money>) -> Money {
    match current {
        None => start_price,
        Some(price) => price.saturating_add(min_increment),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bid {
    pub id: i64,
    pub auction_id: i64,
    pub amount: Money,
    pub bidder_id: i64,
    pub is_winning: bool,
    pub created_at: Timestamp,
}

/// The part of an auction a bid is decided on, as one decision of the database saw it. Such a state
/// is a true state of the past: later states only have more bids, higher prices and later ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BidState {
    pub seller_id: i64,
    pub start_price: Money,
    pub min_increment: Money,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub current_price: Option<Money>,
    pub bid_count: i64,
}

/// How far from an auction's start and end a state from a cache is trusted to say "open": covers
/// the difference between this server's clock and the database's, which decides the real status.
pub const OPEN_MARGIN_SECS: i64 = 2;

impl BidState {
    pub fn min_next_bid(&self) -> Money {
        min_next_bid(self.start_price, self.min_increment, self.current_price)
    }

    /// `Some((current_price, min_next_bid))` when, judging by this possibly older state, the bid is
    /// certain to be answered `bid_too_low` now: the auction is surely open (its end only ever moves
    /// later), the bidder is not the seller, and the amount is below a minimum that only ever rises.
    /// `None` means "ask the database".
    pub fn certainly_too_low(
        &self,
        bidder_id: i64,
        amount: Money,
        now: Timestamp,
    ) -> Option<(Option<Money>, Money)> {
        let surely_open = self.starts_at.plus_secs(OPEN_MARGIN_SECS) <= now
            && now < self.ends_at.plus_secs(-OPEN_MARGIN_SECS);
        let min_next = self.min_next_bid();
        (surely_open && bidder_id != self.seller_id && amount < min_next)
            .then_some((self.current_price, min_next))
    }
}

/// How a new auction's end is given: exactly one of the two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    At(Timestamp),
    AfterSecs(i64),
}

/// A request to create an auction, fields already of the right types.
#[derive(Clone, Debug)]
pub struct Draft {
    pub title: String,
    pub seller_id: i64,
    pub start_price: Money,
    pub min_increment: Option<Money>,
    pub starts_at: Option<Timestamp>,
    pub end: End,
    pub extension_seconds: Option<i64>,
}

/// A new auction that satisfies every rule of API.md, ready to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAuction {
    pub title: String,
    pub seller_id: i64,
    pub start_price: Money,
    pub min_increment: Money,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub extension_seconds: i32,
}

/// The field a rule rejected, named as in the request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleViolation {
    pub field: &'static str,
    pub reason: &'static str,
}

fn violation(field: &'static str, reason: &'static str) -> RuleViolation {
    RuleViolation { field, reason }
}

/// Trims white space at both ends; 1–200 characters, none of them control characters.
pub fn normalize_title(raw: &str) -> Result<String, RuleViolation> {
    let title = raw.trim();
    if title.is_empty() {
        return Err(violation("title", "must not be empty"));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(violation("title", "must be at most 200 characters"));
    }
    if title.chars().any(char::is_control) {
        return Err(violation("title", "must not contain control characters"));
    }
    Ok(title.to_owned())
}

impl Draft {
    /// Applies the defaults and the schedule rules against `now`.
    pub fn validate(self, now: Timestamp) -> Result<NewAuction, RuleViolation> {
        let title = normalize_title(&self.title)?;
        let starts_at = self.starts_at.unwrap_or(now);
        let ends_at = match self.end {
            End::AfterSecs(secs) => {
                if !(1..=MAX_DURATION_SECS).contains(&secs) {
                    return Err(violation("duration_seconds", "must be 1 to 31536000"));
                }
                starts_at.plus_secs(secs)
            }
            End::At(at) => {
                if at <= starts_at {
                    return Err(violation("ends_at", "must be after starts_at"));
                }
                if at > starts_at.plus_secs(MAX_DURATION_SECS) {
                    return Err(violation(
                        "ends_at",
                        "must be at most 365 days after starts_at",
                    ));
                }
                at
            }
        };
        if ends_at <= now {
            let field = match self.end {
                End::At(_) => "ends_at",
                End::AfterSecs(_) => "duration_seconds",
            };
            return Err(violation(field, "the auction must end in the future"));
        }
        let extension = self.extension_seconds.unwrap_or(0);
        if !(0..=MAX_EXTENSION_SECS).contains(&extension) {
            return Err(violation("extension_seconds", "must be 0 to 3600"));
        }
        Ok(NewAuction {
            title,
            seller_id: self.seller_id,
            start_price: self.start_price,
            min_increment: self
                .min_increment
                .unwrap_or(Money::from_cents(DEFAULT_MIN_INCREMENT_CENTS)),
            starts_at,
            ends_at,
            extension_seconds: extension as i32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_unix_micros(1_800_000_000_000_000);

    fn draft(end: End) -> Draft {
        Draft {
            title: "  Vintage watch ".into(),
            seller_id: 7,
            start_price: Money::from_cents(10_000),
            min_increment: None,
            starts_at: None,
            end,
            extension_seconds: None,
        }
    }

    #[test]
    fn status_boundaries() {
        let s = NOW;
        let e = NOW.plus_secs(10);
        assert_eq!(Status::at(s, e, s.plus_secs(-1)), Status::Scheduled);
        assert_eq!(Status::at(s, e, s), Status::Open);
        assert_eq!(Status::at(s, e, e.plus_secs(-1)), Status::Open);
        assert_eq!(Status::at(s, e, e), Status::Closed);
    }

    #[test]
    fn min_next_bid_rules() {
        let start = Money::from_cents(10_000);
        let inc = Money::from_cents(500);
        assert_eq!(min_next_bid(start, inc, None), start);
        assert_eq!(
            min_next_bid(start, inc, Some(Money::from_cents(12_000))),
            Money::from_cents(12_500)
        );
    }

    fn state() -> BidState {
        BidState {
            seller_id: 7,
            start_price: Money::from_cents(10_000),
            min_increment: Money::from_cents(500),
            starts_at: NOW.plus_secs(-60),
            ends_at: NOW.plus_secs(60),
            current_price: Some(Money::from_cents(12_000)),
            bid_count: 3,
        }
    }

    #[test]
    fn certainly_too_low_only_when_sure() {
        let s = state();
        let low = Money::from_cents(12_499);
        assert_eq!(
            s.certainly_too_low(8, low, NOW),
            Some((Some(Money::from_cents(12_000)), Money::from_cents(12_500)))
        );
        assert_eq!(s.certainly_too_low(8, Money::from_cents(12_500), NOW), None);
        assert_eq!(
            s.certainly_too_low(7, low, NOW),
            None,
            "the seller rule comes first"
        );
        let mut near_end = s.clone();
        near_end.ends_at = NOW.plus_secs(OPEN_MARGIN_SECS);
        assert_eq!(near_end.certainly_too_low(8, low, NOW), None);
        near_end.ends_at = NOW.plus_secs(OPEN_MARGIN_SECS + 1);
        assert!(near_end.certainly_too_low(8, low, NOW).is_some());
        let mut just_started = s.clone();
        just_started.starts_at = NOW.plus_secs(-OPEN_MARGIN_SECS + 1);
        assert_eq!(just_started.certainly_too_low(8, low, NOW), None);
        let mut fresh = s;
        fresh.current_price = None;
        fresh.bid_count = 0;
        assert_eq!(
            fresh.certainly_too_low(8, Money::from_cents(9_999), NOW),
            Some((None, Money::from_cents(10_000)))
        );
    }

    #[test]
    fn defaults_apply() {
        let a = draft(End::AfterSecs(60)).validate(NOW).unwrap();
        assert_eq!(a.title, "Vintage watch");
        assert_eq!(a.starts_at, NOW);
        assert_eq!(a.ends_at, NOW.plus_secs(60));
        assert_eq!(a.min_increment, Money::from_cents(100));
        assert_eq!(a.extension_seconds, 0);
    }

    #[test]
    fn duration_bounds() {
        assert!(draft(End::AfterSecs(MAX_DURATION_SECS))
            .validate(NOW)
            .is_ok());
        for bad in [0, -1, MAX_DURATION_SECS + 1] {
            let err = draft(End::AfterSecs(bad)).validate(NOW).unwrap_err();
            assert_eq!(err.field, "duration_seconds");
        }
    }

    #[test]
    fn ends_at_rules() {
        assert!(draft(End::At(NOW.plus_secs(1))).validate(NOW).is_ok());
        assert!(draft(End::At(NOW.plus_secs(MAX_DURATION_SECS)))
            .validate(NOW)
            .is_ok());
        for bad in [NOW, NOW.plus_secs(-5), NOW.plus_secs(MAX_DURATION_SECS + 1)] {
            assert_eq!(
                draft(End::At(bad)).validate(NOW).unwrap_err().field,
                "ends_at"
            );
        }
        let mut d = draft(End::At(NOW.plus_secs(100)));
        d.starts_at = Some(NOW.plus_secs(100));
        assert_eq!(d.validate(NOW).unwrap_err().field, "ends_at");
        let mut past = draft(End::AfterSecs(10));
        past.starts_at = Some(NOW.plus_secs(-20));
        assert_eq!(past.validate(NOW).unwrap_err().field, "duration_seconds");
    }

    #[test]
    fn extension_bounds() {
        let mut d = draft(End::AfterSecs(60));
        d.extension_seconds = Some(MAX_EXTENSION_SECS);
        assert!(d.clone().validate(NOW).is_ok());
        d.extension_seconds = Some(MAX_EXTENSION_SECS + 1);
        assert_eq!(
            d.clone().validate(NOW).unwrap_err().field,
            "extension_seconds"
        );
        d.extension_seconds = Some(-1);
        assert_eq!(d.validate(NOW).unwrap_err().field, "extension_seconds");
    }

    #[test]
    fn title_rules() {
        assert!(normalize_title(" ").is_err());
        assert!(normalize_title("a\u{0}b").is_err());
        assert!(normalize_title("tab\there").is_err());
        assert_eq!(
            normalize_title(&"é".repeat(200)).unwrap().chars().count(),
            200
        );
        assert!(normalize_title(&"é".repeat(201)).is_err());
    }
}
