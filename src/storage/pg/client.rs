//! The self-healing PostgreSQL client: the pipeline's [`crate::pipeline::Client`] with
//! PostgreSQL's calls.

use postgres_types::ToSql;

use super::config::Config;
use super::conn::{Connection, Listen, Postgres, StatementDef, Statements, Target};
use super::error::PgError;
use super::notify::{self, Notifications};
use super::row::Row;
use crate::metrics::Backend;
use crate::pipeline;
use crate::placement::WorkerId;

/// One worker's connection to PostgreSQL. While the connection is down, requests fail at once
/// with `Unavailable` and a single background coroutine on the worker reconnects with
/// exponential backoff; `query` and `simple_query` never wait for it.
pub type Client = pipeline::Client<Postgres>;

/// Every coroutine of a worker shares the client and what it hands out.
const _: () = pipeline::shareable::<(Client, Connection, Row, PgError)>();

impl pipeline::Client<Postgres> {
    /// Starts connecting in the background on `worker` and returns at once.
    pub fn new(cfg: Config, statements: Statements, worker: impl Into<WorkerId>) -> Client {
        let worker = worker.into();
        Client::start(Target::plain(cfg, statements), worker, observer(worker))
    }

    /// Connects before returning (for start-up, where a bad URL or password should stop the
    /// process); later breaks heal in the background like `new`.
    pub fn connect_now(
        cfg: Config,
        statements: Statements,
        worker: impl Into<WorkerId>,
    ) -> Result<Client, PgError> {
        let worker = worker.into();
        Client::start_connected(Target::plain(cfg, statements), worker, observer(worker))
    }

    /// A connection that listens on `channels` (re-listening after every reconnection), and
    /// the queue their notifications arrive in. Connects before returning, like `connect_now`.
    /// Notifications sent while it was reconnecting are lost: after a new
    /// [`generation`](pipeline::Client::generation) the consumer resynchronises.
    pub fn listening(
        cfg: Config,
        statements: Statements,
        channels: &[&str],
        worker: impl Into<WorkerId>,
    ) -> Result<(Client, Notifications), PgError> {
        let worker = worker.into();
        let (sink, notifications) = notify::queue();
        let listen = Listen {
            channels: channels.iter().map(|c| (*c).to_owned()).collect(),
            sink,
        };
        let target = Target {
            cfg,
            statements,
            listen: Some(listen),
        };
        let client = Client::start_connected(target, worker, observer(worker))?;
        Ok((client, notifications))
    }

    pub fn query(
        &self,
        stmt: &StatementDef,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PgError> {
        self.with(|conn| conn.query(stmt, params))
    }

    pub fn simple_query(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, PgError> {
        self.with(|conn| conn.simple_query(sql))
    }
}

/// Reports a client of `worker` into its metrics slot, when metrics are on.
fn observer(worker: WorkerId) -> Option<std::sync::Arc<dyn pipeline::Observer>> {
    crate::metrics::observer(worker.index(), Backend::Postgres)
}
