use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Serialize, Serializer};
use sqlx::postgres::PgRow;
use sqlx::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Scheduled,
    Open,
    Closed,
}

impl Status {
    pub fn at(starts_at: DateTime<Utc>, ends_at: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        if now < starts_at {
            Status::Scheduled
        } else if now < ends_at {
            Status::Open
        } else {
            Status::Closed
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "scheduled" => Some(Status::Scheduled),
            "open" => Some(Status::Open),
            "closed" => Some(Status::Closed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Scheduled => "scheduled",
            Status::Open => "open",
            Status::Closed => "closed",
        }
    }
}

impl Serialize for Status {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

pub fn format_money(d: Decimal) -> String {
    let mut d = d;
    d.rescale(2);
    d.to_string()
}

pub fn format_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn money<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_money(*d))
}

fn opt_money<S: Serializer>(d: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => money(d, s),
        None => s.serialize_none(),
    }
}

fn time<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(*t))
}

/// Columns every auction query returns. The status is derived from the database's `now()`, the
/// same clock the list filter uses, so a listed page never contradicts its own filter.
pub const AUCTION_COLUMNS: &str = "id, title, seller_id, start_price, min_increment, starts_at, \
     ends_at, extension_seconds, current_price, leader_id, bid_count, created_at, now() AS now";

#[derive(Debug, Serialize)]
pub struct Auction {
    pub id: i64,
    pub title: String,
    pub seller_id: i64,
    #[serde(serialize_with = "money")]
    pub start_price: Decimal,
    #[serde(serialize_with = "money")]
    pub min_increment: Decimal,
    #[serde(serialize_with = "time")]
    pub starts_at: DateTime<Utc>,
    #[serde(serialize_with = "time")]
    pub ends_at: DateTime<Utc>,
    pub extension_seconds: i32,
    pub status: Status,
    #[serde(serialize_with = "opt_money")]
    pub current_price: Option<Decimal>,
    pub leader_id: Option<i64>,
    pub bid_count: i64,
    #[serde(serialize_with = "money")]
    pub min_next_bid: Decimal,
    #[serde(serialize_with = "time")]
    pub created_at: DateTime<Utc>,
}

impl Auction {
    pub fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let now = row.try_get("now")?;
        let starts_at = row.try_get("starts_at")?;
        let ends_at = row.try_get("ends_at")?;
        let start_price = row.try_get("start_price")?;
        let min_increment = row.try_get("min_increment")?;
        let current_price: Option<Decimal> = row.try_get("current_price")?;
        Ok(Auction {
            id: row.try_get("id")?,
            title: row.try_get("title")?,
            seller_id: row.try_get("seller_id")?,
            start_price,
            min_increment,
            starts_at,
            ends_at,
            extension_seconds: row.try_get("extension_seconds")?,
            status: Status::at(starts_at, ends_at, now),
            current_price,
            leader_id: row.try_get("leader_id")?,
            bid_count: row.try_get("bid_count")?,
            min_next_bid: min_next_bid(start_price, min_increment, current_price),
            created_at: row.try_get("created_at")?,
        })
    }
}

pub fn min_next_bid(start: Decimal, increment: Decimal, current: Option<Decimal>) -> Decimal {
    current.map_or(start, |price| price + increment)
}

#[derive(Debug, Serialize)]
pub struct Bid {
    pub id: i64,
    pub auction_id: i64,
    #[serde(serialize_with = "money")]
    pub amount: Decimal,
    pub bidder_id: i64,
    pub is_winning: bool,
    #[serde(serialize_with = "time")]
    pub created_at: DateTime<Utc>,
}
