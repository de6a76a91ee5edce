use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Row};

use crate::model::{min_next_bid, Auction, Bid, Status, AUCTION_COLUMNS};

const SCHEMA: &str = include_str!("../migrations/0001_init.sql");

/// Serializes schema set-up between processes started together against one database.
const SCHEMA_LOCK_KEY: i64 = 0x6261_7365_6c69_6e65; // "baseline"

pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub test_before_acquire: bool,
}

pub async fn connect(url: &str, settings: &PoolSettings) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?;
    create_database_if_missing(&options).await?;
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .test_before_acquire(settings.test_before_acquire)
        .connect_with(options)
        .await?;
    migrate(&pool).await?;
    Ok(pool)
}

async fn create_database_if_missing(options: &PgConnectOptions) -> Result<(), sqlx::Error> {
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let mut admin = options.clone().database("postgres").connect().await?;
    let exists = sqlx::query("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut admin)
        .await?
        .is_some();
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match sqlx::raw_sql(&format!("CREATE DATABASE {quoted}"))
            .execute(&mut admin)
            .await
        {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // Another process created it between the check and here.
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {}
            Err(e) => return Err(e),
        }
    }
    admin.close().await
}

async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    // Re-running the idempotent schema would otherwise log a notice per existing relation.
    sqlx::query("SET LOCAL client_min_messages = warning")
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(SCHEMA).execute(&mut *tx).await?;
    tx.commit().await
}

pub async fn database_oid(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT oid::bigint FROM pg_database WHERE datname = current_database()")
        .fetch_one(pool)
        .await
}

pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

pub struct NewAuction {
    pub title: String,
    pub seller_id: i64,
    pub start_price: Decimal,
    pub min_increment: Decimal,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub extension_seconds: i32,
}

pub async fn insert_auction(pool: &PgPool, new: &NewAuction) -> Result<Auction, sqlx::Error> {
    let sql = format!(
        "INSERT INTO auctions (title, seller_id, start_price, min_increment, starts_at, ends_at, \
         extension_seconds) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {AUCTION_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(&new.title)
        .bind(new.seller_id)
        .bind(new.start_price)
        .bind(new.min_increment)
        .bind(new.starts_at)
        .bind(new.ends_at)
        .bind(new.extension_seconds)
        .fetch_one(pool)
        .await?;
    Auction::from_row(&row)
}

pub async fn get_auction(pool: &PgPool, id: i64) -> Result<Option<Auction>, sqlx::Error> {
    let sql = format!("SELECT {AUCTION_COLUMNS} FROM auctions WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
    row.as_ref().map(Auction::from_row).transpose()
}

pub struct Page<T> {
    pub items: Vec<T>,
    /// Whether rows exist beyond this page.
    pub more: bool,
}

pub async fn list_auctions(
    pool: &PgPool,
    status: Option<Status>,
    after_id: i64,
    limit: i64,
) -> Result<Page<Auction>, sqlx::Error> {
    let sql = format!(
        "SELECT {AUCTION_COLUMNS} FROM auctions \
         WHERE id > $1 AND ($2::text IS NULL \
           OR ($2 = 'scheduled' AND starts_at > now()) \
           OR ($2 = 'open' AND starts_at <= now() AND ends_at > now()) \
           OR ($2 = 'closed' AND ends_at <= now())) \
         ORDER BY id LIMIT $3"
    );
    // One row past the page tells whether another page exists.
    let rows = sqlx::query(&sql)
        .bind(after_id)
        .bind(status.map(Status::as_str))
        .bind(limit + 1)
        .fetch_all(pool)
        .await?;
    let more = rows.len() as i64 > limit;
    let items = rows
        .iter()
        .take(limit as usize)
        .map(Auction::from_row)
        .collect::<Result<_, _>>()?;
    Ok(Page { items, more })
}

/// `None` when the auction does not exist. The auction's price and its bids are read in one
/// statement so that `is_winning` agrees with the page even while bids arrive.
pub async fn list_bids(
    pool: &PgPool,
    auction_id: i64,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Option<Page<Bid>>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT a.current_price, b.id, b.bidder_id, b.amount, b.created_at \
         FROM auctions a \
         LEFT JOIN LATERAL ( \
             SELECT id, bidder_id, amount, created_at FROM bids \
             WHERE auction_id = a.id AND ($2::bigint IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3 \
         ) b ON true \
         WHERE a.id = $1",
    )
    .bind(auction_id)
    .bind(before_id)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let Some(id) = row.try_get::<Option<i64>, _>("id")? else {
            continue;
        };
        let current_price: Option<Decimal> = row.try_get("current_price")?;
        let amount: Decimal = row.try_get("amount")?;
        items.push(Bid {
            id,
            auction_id,
            amount,
            bidder_id: row.try_get("bidder_id")?,
            // Accepted amounts strictly increase, so only the leading bid equals the price.
            is_winning: current_price == Some(amount),
            created_at: row.try_get("created_at")?,
        });
    }
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    Ok(Some(Page { items, more }))
}

/// The auction as its bid transaction saw it, for answers and for the price cache.
#[derive(Debug, Clone)]
pub struct AuctionState {
    pub seller_id: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub current_price: Option<Decimal>,
    pub min_next_bid: Decimal,
}

pub enum BidOutcome {
    Accepted(Bid),
    NotFound,
    NotOpen(Status),
    Forbidden,
    TooLow,
}

pub async fn place_bid(
    pool: &PgPool,
    auction_id: i64,
    bidder_id: i64,
    amount: Decimal,
) -> Result<(BidOutcome, Option<AuctionState>), sqlx::Error> {
    let mut tx = pool.begin().await?;
    // The CTE takes the row lock first; clock_timestamp() in the outer select is therefore read
    // once this bid holds the auction, which makes it the bid's acceptance time.
    let row = sqlx::query(
        "WITH locked AS MATERIALIZED ( \
             SELECT seller_id, start_price, min_increment, starts_at, ends_at, \
                    extension_seconds, current_price \
             FROM auctions WHERE id = $1 FOR UPDATE \
         ) \
         SELECT locked.*, clock_timestamp() AS now FROM locked",
    )
    .bind(auction_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        tx.rollback().await?;
        return Ok((BidOutcome::NotFound, None));
    };
    let now: DateTime<Utc> = row.try_get("now")?;
    let start_price: Decimal = row.try_get("start_price")?;
    let min_increment: Decimal = row.try_get("min_increment")?;
    let extension_seconds: i32 = row.try_get("extension_seconds")?;
    let current_price: Option<Decimal> = row.try_get("current_price")?;
    let mut state = AuctionState {
        seller_id: row.try_get("seller_id")?,
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
        current_price,
        min_next_bid: min_next_bid(start_price, min_increment, current_price),
    };

    let rejection = match Status::at(state.starts_at, state.ends_at, now) {
        Status::Open if bidder_id == state.seller_id => Some(BidOutcome::Forbidden),
        Status::Open if amount < state.min_next_bid => Some(BidOutcome::TooLow),
        Status::Open => None,
        status => Some(BidOutcome::NotOpen(status)),
    };
    if let Some(outcome) = rejection {
        tx.rollback().await?;
        return Ok((outcome, Some(state)));
    }

    let bid_id: i64 = sqlx::query_scalar(
        "INSERT INTO bids (auction_id, bidder_id, amount, created_at) \
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(auction_id)
    .bind(bidder_id)
    .bind(amount)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;

    let extension = TimeDelta::seconds(i64::from(extension_seconds));
    if extension_seconds > 0 && state.ends_at - now < extension {
        state.ends_at = now + extension;
    }
    sqlx::query(
        "UPDATE auctions SET current_price = $2, leader_id = $3, bid_count = bid_count + 1, \
         ends_at = $4 WHERE id = $1",
    )
    .bind(auction_id)
    .bind(amount)
    .bind(bidder_id)
    .bind(state.ends_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;

    state.current_price = Some(amount);
    state.min_next_bid = amount + min_increment;
    let bid = Bid {
        id: bid_id,
        auction_id,
        amount,
        bidder_id,
        is_winning: true,
        created_at: now,
    };
    Ok((BidOutcome::Accepted(bid), Some(state)))
}
