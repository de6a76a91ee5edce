//! Storage: the PostgreSQL client, the queries Gavel runs and the schema migrations.

pub mod auctions;
pub mod batch;
pub mod bid_pages;
pub mod bids;
mod coalesce;
pub mod history;
pub mod keys;
pub mod migrate;
pub mod pg;
pub mod reads;
pub mod statements;
pub mod sweep;
mod types;

pub use statements::STATEMENTS;

use crate::domain::auction::{Auction, Bid, NewAuction, Status};
use crate::domain::bid::{BidDecision, BidInput};
use crate::domain::events::History;
use crate::domain::idempotency::{KeyClaim, Keyed};
use crate::domain::page::{Page, PageQuery};
use crate::domain::time::Timestamp;
use crate::placement::WorkerId;
use auctions::CreatedAuction;
use batch::BidBatcher;
use pg::{Client, Config, PgError, Row, StatementDef};
use reads::{AuctionReader, BidPageReader};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What can go wrong in storage, as the API layer needs to tell it apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The database can't be reached, is restarting, or answered too slowly: worth a retry.
    Unavailable(String),
    /// Anything else; the text is for the log, never for a client.
    Internal(String),
}

impl StoreError {
    pub fn internal(what: &str) -> StoreError {
        StoreError::Internal(what.to_owned())
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(why) => write!(f, "database unavailable: {why}"),
            StoreError::Internal(why) => write!(f, "database error: {why}"),
        }
    }
}

/// SQLSTATE classes that mean "try again later" rather than "this request is wrong":
/// 08 connection exceptions, 53 insufficient resources, 57 operator intervention (statement timeout
/// 57014, shutdown 57P01..57P03), 40 transaction rollback (serialization failure, deadlock).
fn transient_sqlstate(code: &str) -> bool {
    ["08", "53", "57", "40"]
        .iter()
        .any(|class| code.starts_with(class))
        // A server that turned read-only under the connection (a primary demoted in a
        // switchover): the client reconnects through the host list, so a retry finds the new one.
        || code == pg::READ_ONLY_SQL_TRANSACTION
}

impl From<PgError> for StoreError {
    fn from(e: PgError) -> Self {
        match e {
            PgError::Db { ref code, .. } if transient_sqlstate(code) => {
                StoreError::Unavailable(e.to_string())
            }
            PgError::Unavailable(_) | PgError::Busy | PgError::Timeout => {
                StoreError::Unavailable(e.to_string())
            }
            other => StoreError::Internal(other.to_string()),
        }
    }
}

/// The one row a statement that always answers one row returned.
pub(crate) fn only_row<'a>(
    rows: &'a [Row],
    statement: &StatementDef,
) -> Result<&'a Row, StoreError> {
    rows.first().ok_or_else(|| {
        StoreError::Internal(format!("statement {} returned no row", statement.name))
    })
}

/// One worker's database: what the API asks of it. Which connection serves a call is the store's
/// business: bid batches and inserts go on one, reads on the other, so a read never waits in the
/// pipeline behind a commit.
pub struct Store {
    write: Arc<Client>,
    read: Arc<Client>,
    bids: BidBatcher,
    /// Single-auction reads, coalesced on `read`.
    auctions: AuctionReader,
    /// Bids pages, coalesced on `read`.
    bid_pages: BidPageReader,
}

impl Store {
    /// Opens the worker's connections and starts its bid batcher; must run in a coroutine on that
    /// worker.
    pub fn connect(cfg: &Config, worker: WorkerId) -> Result<Store, PgError> {
        // Both at once: each is mostly waiting for its server process to start and prepare.
        let second = cfg.clone();
        let builder = may::coroutine::Builder::new()
            .id(worker.index())
            .stack_size(pg::limits::LIMITS.coroutine_stack_words);
        // SAFETY: the closure touches no thread-local state (may's requirement for spawn).
        let reading =
            unsafe { builder.spawn(move || Client::connect_now(second, STATEMENTS, worker)) }
                .map_err(|e| PgError::Unavailable(format!("cannot start connecting: {e}")))?;
        let write = Arc::new(Client::connect_now(cfg.clone(), STATEMENTS, worker)?);
        let read = Arc::new(
            reading
                .join()
                .map_err(|_| PgError::Unavailable("connecting stopped unexpectedly".into()))??,
        );
        let bids = BidBatcher::start(write.clone(), worker, cfg.query_timeout)
            .map_err(|e| PgError::Unavailable(format!("cannot start the bid batcher: {e}")))?;
        let auctions = AuctionReader::start(read.clone(), worker, cfg.query_timeout)
            .map_err(|e| PgError::Unavailable(format!("cannot start the auction reader: {e}")))?;
        let bid_pages = BidPageReader::start(read.clone(), worker, cfg.query_timeout)
            .map_err(|e| PgError::Unavailable(format!("cannot start the page reader: {e}")))?;
        Ok(Store {
            write,
            read,
            bids,
            auctions,
            bid_pages,
        })
    }

    /// The schema as this store's connections see it, in one round trip: start-up keeps
    /// connections opened before any migration only when it was [`migrate::Schema::Settled`].
    pub fn schema(&self) -> Result<migrate::Schema, StoreError> {
        Ok(migrate::check(&self.write)?)
    }

    pub fn is_up(&self) -> bool {
        self.write.is_up() && self.read.is_up()
    }

    /// Whether the database answers a round trip now (for readiness).
    pub fn answers(&self) -> bool {
        self.read.is_up() && statements::ping(&self.read).is_ok()
    }

    /// Decides a bid in the worker's next batch.
    pub fn place_bid(&self, input: BidInput) -> Result<BidDecision, StoreError> {
        self.bids.place(input)
    }

    pub fn auction(&self, id: i64) -> Result<Option<Auction>, StoreError> {
        self.auctions.get(id)
    }

    /// A bids page; `None` when the auction does not exist.
    pub fn bids_page(&self, page: PageQuery) -> Result<Option<Page<Bid>>, StoreError> {
        self.bid_pages.get(page)
    }

    pub fn list_auctions(
        &self,
        status: Option<Status>,
        after_id: i64,
        limit: i64,
        now: Timestamp,
    ) -> Result<Page<Auction>, StoreError> {
        auctions::list_auctions(&self.read, status, after_id, limit, now)
    }

    pub fn insert_auction(&self, a: &NewAuction) -> Result<Auction, StoreError> {
        auctions::insert_auction(&self.write, a)
    }

    /// See [`auctions::create_auction_keyed`].
    pub fn create_auction_keyed(
        &self,
        a: &NewAuction,
        claim: &KeyClaim,
        now: Timestamp,
    ) -> Result<Keyed<CreatedAuction>, StoreError> {
        auctions::create_auction_keyed(&self.write, a, claim, now)
    }

    /// See [`history::auction_history`]; read on the worker's read connection, uncoalesced.
    pub fn history(&self, id: i64, after: i64, limit: i64) -> Result<Option<History>, StoreError> {
        history::auction_history(&self.read, id, after, limit)
    }

    /// See [`auctions::stored_auction`].
    pub fn stored_auction(
        &self,
        claim: &KeyClaim,
    ) -> Result<Option<Keyed<CreatedAuction>>, StoreError> {
        auctions::stored_auction(&self.read, claim)
    }
}

/// SQLSTATE for "database does not exist" and for "database already exists".
const INVALID_CATALOG_NAME: &str = "3D000";
const DUPLICATE_DATABASE: &str = "42P04";
const UNIQUE_VIOLATION: &str = "23505";

/// Longest a start-up statement (a migration) may run: schema changes on a large database take
/// far longer than a request may.
const MIGRATION_TIMEOUT_SECS: u64 = 600;

/// Connects to the configured database, creating it first when it does not exist, and brings its
/// schema up to date under the migration lock. (A restart on a settled schema does not come here:
/// see `migrate::check`, which start-up runs on the workers' own connections.)
pub fn prepare_database(cfg: &Config) -> Result<String, String> {
    let mut cfg = cfg.clone();
    cfg.statement_timeout = Duration::from_secs(MIGRATION_TIMEOUT_SECS);
    cfg.query_timeout = Duration::from_secs(MIGRATION_TIMEOUT_SECS);
    let client = match Client::connect_now(cfg.clone(), &[], 0) {
        Ok(c) => c,
        Err(PgError::Db { ref code, .. }) if code == INVALID_CATALOG_NAME => {
            create_database(&cfg)?;
            Client::connect_now(cfg.clone(), &[], 0).map_err(|e| e.to_string())?
        }
        Err(e) => return Err(format!("cannot connect to PostgreSQL: {e}")),
    };
    migrate::run(&client).map_err(|e| e.to_string())?;
    instance_id(&client).map_err(|e| format!("cannot read the instance id: {e}"))
}

fn instance_id(client: &Client) -> Result<String, PgError> {
    let rows = client.simple_query("SELECT id FROM gavel_instance")?;
    rows.into_iter()
        .next()
        .and_then(|row| row.into_iter().next().flatten())
        .ok_or_else(|| PgError::Protocol("gavel_instance is empty".into()))
}

fn create_database(cfg: &Config) -> Result<(), String> {
    let admin = Client::connect_now(cfg.with_dbname("postgres"), &[], 0)
        .map_err(|e| format!("cannot connect to create database {:?}: {e}", cfg.dbname))?;
    let sql = format!("CREATE DATABASE {}", quote_ident(&cfg.dbname));
    match admin.simple_query(&sql) {
        Ok(_) => Ok(()),
        // Two servers creating it at once: the loser sees 42P04, or 23505 from the catalog index.
        Err(PgError::Db { ref code, .. })
            if code == DUPLICATE_DATABASE || code == UNIQUE_VIOLATION =>
        {
            Ok(())
        }
        Err(e) => Err(format!("cannot create database {:?}: {e}", cfg.dbname)),
    }
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("gavel"), "\"gavel\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn classifies_sqlstates() {
        let db = |code: &str| PgError::Db {
            code: code.into(),
            message: "m".into(),
            constraint: None,
        };
        assert!(matches!(
            StoreError::from(db("57014")),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            StoreError::from(db("40P01")),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            StoreError::from(db("23505")),
            StoreError::Internal(_)
        ));
        assert!(matches!(
            StoreError::from(PgError::Busy),
            StoreError::Unavailable(_)
        ));
    }
}
