//! Cache: the bid fast path on Redis. A cached auction state turns away bids that cannot win
//! without a PostgreSQL round trip; it can only make Gavel faster, never wrong, never down.
//!
//! Why a cached answer always equals PostgreSQL's decision:
//! - Every cached state was returned by `gavel_place_bids`, read under the auction's row lock: it is
//!   a true state of the past. Later states only have more bids, a higher price, a later end.
//! - Writes go through `RAISE_SCRIPT`, which keeps whichever state has more bids, atomically in
//!   Redis. Two workers or two processes finishing bids in either order leave the newer state.
//! - So a cached `min_next_bid` is never above the true one, a cached `ends_at` never after it, and
//!   `BidState::certainly_too_low` only says "too low" when the true state must say it too.
//! - Redis down, slow, restarted or flushed: lookups miss or time out and the bid goes to
//!   PostgreSQL, whose answer refreshes the cache.
//! - An accepted bid's state is written before its 201 is sent; when that write fails the auction
//!   is remembered and its key deleted once Redis answers again, so a stale state is not kept.

pub mod client;

use crate::domain::auction::BidState;
use crate::domain::money::Money;
use crate::domain::time::Timestamp;
use crate::placement::WorkerId;
use client::{Client, RedisConfig};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a cached auction lives without a refresh: long enough that hot auctions (refreshed by
/// every bid that reaches PostgreSQL) stay cached, short enough to bound how long a state whose
/// refresh was lost can linger.
pub const CACHE_TTL_MILLIS: u64 = 60_000;

/// Auctions whose cache refresh failed, waiting for their key to be deleted. Past this, the worker
/// stops using the cache until every entry written before has expired.
pub const MAX_PENDING_REPAIRS: usize = 4_096;

/// Keeps the state with more bids; a missing key takes any state.
/// KEYS[1] the auction's key; ARGV: bid_count, price cents ('' for none), increment cents,
/// start price cents, ends_at micros, starts_at micros, seller id, TTL millis.
const RAISE_SCRIPT: &str = r"
local have = redis.call('HGET', KEYS[1], 'c')
if have and tonumber(have) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'c', ARGV[1], 'p', ARGV[2], 'i', ARGV[3], 's', ARGV[4],
           'e', ARGV[5], 'b', ARGV[6], 'sl', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
return 1
";

const FIELDS: [&str; 7] = ["c", "p", "i", "s", "e", "b", "sl"];

/// Lost refreshes not yet repaired, per worker.
#[derive(Default)]
struct Repairs {
    auctions: Vec<i64>,
    /// Set when the list overflowed: the cache is not used before this instant.
    blind_until: Option<Instant>,
}

/// One worker's view of the cache.
pub struct BidCache {
    client: Client,
    prefix: String,
    // Per worker: only this worker's connections take it.
    repairs: Mutex<Repairs>,
}

/// What `/ready` reports for Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    Up,
    Down,
}

impl BidCache {
    /// `instance` names the database, so two databases sharing one Redis never share a key.
    pub fn new(cfg: RedisConfig, instance: &str, worker: WorkerId) -> BidCache {
        BidCache {
            client: Client::new(cfg, worker),
            prefix: format!("gavel:{instance}:auction:"),
            repairs: Mutex::new(Repairs::default()),
        }
    }

    pub fn status(&self) -> CacheStatus {
        if self.client.is_up() {
            CacheStatus::Up
        } else {
            CacheStatus::Down
        }
    }

    fn key(&self, auction_id: i64) -> String {
        format!("{}{auction_id}", self.prefix)
    }

    /// The cached state, or `None` on a miss, an error, a timeout or while repairs are pending.
    pub fn lookup(&self, auction_id: i64) -> Option<BidState> {
        if !self.client.is_up() || !self.usable() {
            return None;
        }
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.key(auction_id)).arg(&FIELDS[..]);
        let value = self.client.query(&cmd).ok()?;
        decode(&value)
    }

    /// Stores a state PostgreSQL returned; keeps the newer one if the cache already holds it.
    /// After an accepted bid (`changed`) this waits for Redis, so that once the bid's 201 is sent
    /// no lookup can see the state before it; other refreshes are sent without waiting.
    pub fn remember(&self, auction_id: i64, state: &BidState, changed: bool) {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RAISE_SCRIPT)
            .arg(1)
            .arg(self.key(auction_id))
            .arg(state.bid_count)
            .arg(
                state
                    .current_price
                    .map_or(String::new(), |p| p.cents().to_string()),
            )
            .arg(state.min_increment.cents())
            .arg(state.start_price.cents())
            .arg(state.ends_at.unix_micros())
            .arg(state.starts_at.unix_micros())
            .arg(state.seller_id)
            .arg(CACHE_TTL_MILLIS);
        if !changed {
            let _ = self.client.send(&cmd);
        } else if self.client.query(&cmd).is_err() {
            self.schedule_repair(auction_id);
        }
    }

    /// Whether lookups may be trusted now; deletes the keys of lost refreshes first.
    fn usable(&self) -> bool {
        let mut repairs = lock(&self.repairs);
        if let Some(until) = repairs.blind_until {
            if Instant::now() < until {
                return false;
            }
            repairs.blind_until = None;
        }
        if repairs.auctions.is_empty() {
            return true;
        }
        let mut cmd = redis::cmd("DEL");
        for id in &repairs.auctions {
            cmd.arg(self.key(*id));
        }
        let pending = std::mem::take(&mut repairs.auctions);
        drop(repairs);
        if self.client.query(&cmd).is_ok() {
            return true;
        }
        let mut repairs = lock(&self.repairs);
        repairs.auctions = pending;
        false
    }

    fn schedule_repair(&self, auction_id: i64) {
        let mut repairs = lock(&self.repairs);
        if repairs.auctions.len() >= MAX_PENDING_REPAIRS {
            repairs.auctions.clear();
            repairs.blind_until = Some(Instant::now() + Duration::from_millis(CACHE_TTL_MILLIS));
        } else {
            repairs.auctions.push(auction_id);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads an HMGET reply of `FIELDS`; anything incomplete or malformed is a miss.
fn decode(value: &redis::Value) -> Option<BidState> {
    let redis::Value::Array(items) = value else {
        return None;
    };
    let text: Vec<&str> = items
        .iter()
        .map(|v| match v {
            redis::Value::BulkString(b) => std::str::from_utf8(b).ok(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let [count, price, inc, start, ends, starts, seller] = text[..] else {
        return None;
    };
    let int = |s: &str| s.parse::<i64>().ok();
    let current_price = if price.is_empty() {
        None
    } else {
        Some(Money::from_cents(int(price)?))
    };
    Some(BidState {
        seller_id: int(seller)?,
        start_price: Money::from_cents(int(start)?),
        min_increment: Money::from_cents(int(inc)?),
        starts_at: Timestamp::from_unix_micros(int(starts)?),
        ends_at: Timestamp::from_unix_micros(int(ends)?),
        current_price,
        bid_count: int(count)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn decodes_a_full_reply() {
        let v = Value::Array(
            ["3", "12000", "500", "10000", "2000000", "1000000", "7"]
                .iter()
                .map(|s| bulk(s))
                .collect(),
        );
        let s = decode(&v).unwrap();
        assert_eq!(s.bid_count, 3);
        assert_eq!(s.current_price, Some(Money::from_cents(12_000)));
        assert_eq!(s.min_next_bid(), Money::from_cents(12_500));
        assert_eq!(s.seller_id, 7);
        let none = Value::Array(
            ["0", "", "500", "10000", "2000000", "1000000", "7"]
                .iter()
                .map(|s| bulk(s))
                .collect(),
        );
        assert_eq!(decode(&none).unwrap().current_price, None);
    }

    #[test]
    fn partial_or_garbage_is_a_miss() {
        let miss = Value::Array(vec![Value::Nil; 7]);
        assert!(decode(&miss).is_none());
        let short = Value::Array(vec![bulk("1"); 6]);
        assert!(decode(&short).is_none());
        let junk = Value::Array(
            ["x", "1", "1", "1", "1", "1", "1"]
                .iter()
                .map(|s| bulk(s))
                .collect(),
        );
        assert!(decode(&junk).is_none());
        assert!(decode(&Value::Nil).is_none());
    }
}
