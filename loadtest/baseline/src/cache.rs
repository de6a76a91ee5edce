//! The bid price cache: a hash per auction in Redis, used to turn away bids that are certainly too
//! low before they take a database connection and a row lock. Redis is an optimisation only;
//! every failure is logged at debug level and the request goes on to PostgreSQL.

use std::error::Error;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_redis::{Config, Pool, Runtime, Timeouts};
use rust_decimal::Decimal;

use crate::db::AuctionState;

type CacheResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// A slow Redis must not hold bids up for longer than PostgreSQL would.
const OP_TIMEOUT: Duration = Duration::from_millis(250);

/// Entries of auctions nobody bids on fall out; the next bid refills from the database.
const ENTRY_TTL_SECS: i64 = 24 * 3600;

/// Only ever raises the cached minimum: snapshots written by concurrent requests can arrive out of
/// order, and a stale entry must never let a bid through the fast path wrongly.
const RAISE_SCRIPT: &str = r"
local cur = redis.call('HGET', KEYS[1], 'min_next')
if (not cur) or tonumber(ARGV[5]) > tonumber(cur) then
  redis.call('HSET', KEYS[1], 'seller', ARGV[1], 'starts', ARGV[2], 'ends', ARGV[3],
             'price', ARGV[4], 'min_next', ARGV[5])
end
redis.call('EXPIRE', KEYS[1], ARGV[6])
return 0
";

pub struct Cache {
    pool: Pool,
    raise: redis::Script,
    /// `baseline:{database oid}:`. The database's OID keeps entries of a dropped and recreated
    /// database, whose auction IDs start again at 1, from answering for the new one.
    prefix: String,
}

/// What the cache knows of an auction. Money is in cents and times in Unix microseconds, so that
/// the Lua script compares exact numbers.
#[derive(Debug)]
pub struct Cached {
    seller_id: i64,
    starts_us: i64,
    ends_us: i64,
    price_cents: Option<i64>,
    min_next_cents: i64,
}

impl Cached {
    /// `Some((current_price, min_next_bid))` when the bid would be refused as too low by the
    /// database too. That holds because the seller and start never change, the end only moves
    /// later and the minimum only rises, so every cached value errs on the side of letting the
    /// bid through to PostgreSQL. The other rules come first in API.md's order, hence the checks.
    pub fn certainly_too_low(
        &self,
        bidder_id: i64,
        amount: Decimal,
        now: DateTime<Utc>,
    ) -> Option<(Option<Decimal>, Decimal)> {
        let now = now.timestamp_micros();
        let open = self.starts_us <= now && now < self.ends_us;
        let too_low = to_cents(amount) < self.min_next_cents;
        (open && bidder_id != self.seller_id && too_low).then(|| {
            (
                self.price_cents.map(from_cents),
                from_cents(self.min_next_cents),
            )
        })
    }
}

fn to_cents(d: Decimal) -> i64 {
    let mut d = d;
    d.rescale(2);
    // Money is at most 14 digits, far inside i64.
    d.mantissa() as i64
}

fn from_cents(cents: i64) -> Decimal {
    Decimal::new(cents, 2)
}

async fn bounded<T>(op: impl Future<Output = CacheResult<T>>) -> CacheResult<T> {
    tokio::time::timeout(OP_TIMEOUT, op).await?
}

impl Cache {
    pub fn new(url: &str, max_size: usize, database_oid: i64) -> CacheResult<Cache> {
        let pool = Config::from_url(url)
            .builder()?
            .max_size(max_size)
            .timeouts(Timeouts {
                wait: Some(OP_TIMEOUT),
                create: Some(OP_TIMEOUT),
                recycle: Some(OP_TIMEOUT),
            })
            .runtime(Runtime::Tokio1)
            .build()?;
        Ok(Cache {
            pool,
            raise: redis::Script::new(RAISE_SCRIPT),
            prefix: format!("baseline:{database_oid}:"),
        })
    }

    fn key(&self, auction_id: i64) -> String {
        format!("{}auction:{auction_id}:price", self.prefix)
    }

    pub async fn ping(&self) -> bool {
        let result = bounded(async {
            let mut conn = self.pool.get().await?;
            let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
            Ok(pong)
        })
        .await;
        if let Err(e) = &result {
            tracing::debug!(error = %e, "redis ping failed");
        }
        result.is_ok()
    }

    pub async fn lookup(&self, auction_id: i64) -> Option<Cached> {
        let result = bounded(async {
            let mut conn = self.pool.get().await?;
            let fields: Vec<Option<i64>> = redis::cmd("HMGET")
                .arg(self.key(auction_id))
                .arg(&["seller", "starts", "ends", "price", "min_next"])
                .query_async(&mut conn)
                .await?;
            Ok(fields)
        })
        .await;
        let fields = match result {
            Ok(fields) => fields,
            Err(e) => {
                tracing::debug!(error = %e, auction_id, "redis lookup failed");
                return None;
            }
        };
        match fields[..] {
            [Some(seller_id), Some(starts_us), Some(ends_us), Some(price), Some(min_next_cents)] => {
                Some(Cached {
                    seller_id,
                    starts_us,
                    ends_us,
                    price_cents: (price >= 0).then_some(price),
                    min_next_cents,
                })
            }
            _ => None,
        }
    }

    pub async fn remember(&self, auction_id: i64, state: &AuctionState) {
        let result = bounded(async {
            let mut conn = self.pool.get().await?;
            self.raise
                .key(self.key(auction_id))
                .arg(state.seller_id)
                .arg(state.starts_at.timestamp_micros())
                .arg(state.ends_at.timestamp_micros())
                .arg(state.current_price.map_or(-1, to_cents))
                .arg(to_cents(state.min_next_bid))
                .arg(ENTRY_TTL_SECS)
                .invoke_async::<i64>(&mut conn)
                .await?;
            Ok(())
        })
        .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, auction_id, "redis update failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cents_round_trip() {
        let d = Decimal::new(1250, 2);
        assert_eq!(to_cents(d), 1250);
        assert_eq!(to_cents(Decimal::new(7, 0)), 700);
        assert_eq!(from_cents(1250).to_string(), "12.50");
    }

    #[test]
    fn fast_path_keeps_rule_order() {
        let now = Utc::now();
        let us = now.timestamp_micros();
        let cached = Cached {
            seller_id: 7,
            starts_us: us - 1_000_000,
            ends_us: us + 1_000_000,
            price_cents: Some(10_000),
            min_next_cents: 10_500,
        };
        assert!(cached
            .certainly_too_low(8, Decimal::new(10_499, 2), now)
            .is_some());
        assert!(cached
            .certainly_too_low(8, Decimal::new(10_500, 2), now)
            .is_none());
        // The seller gets 403 from the database, not 409 from here.
        assert!(cached
            .certainly_too_low(7, Decimal::new(1, 2), now)
            .is_none());
        let closed = Cached {
            ends_us: us - 1,
            ..cached
        };
        assert!(closed
            .certainly_too_low(8, Decimal::new(1, 2), now)
            .is_none());
    }
}
