//! A connection that heals itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use postgres_types::ToSql;

use super::config::Config;
use super::conn::{lock, spawn_on, Connection, StatementDef};
use super::error::PgError;
use super::limits::{RECONNECT_BACKOFF_MAX_MILLIS, RECONNECT_BACKOFF_MIN_MILLIS};
use super::row::Row;
use crate::metrics::WorkerMetrics;

/// One worker's connection to PostgreSQL. While the connection is down, requests fail at once
/// with `Unavailable` and a single background coroutine on the worker reconnects with
/// exponential backoff; `query` and `simple_query` never wait for it.
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Config,
    statements: &'static [StatementDef],
    worker: usize,
    conn: Mutex<Option<Arc<Connection>>>,
    /// True while the reconnect coroutine runs, so there is only ever one.
    reconnecting: AtomicBool,
    last_error: Mutex<String>,
    /// The worker's metrics slot; `None` when metrics are off.
    metrics: Option<&'static WorkerMetrics>,
}

impl Client {
    /// Starts connecting in the background on `worker` and returns at once.
    pub fn new(cfg: Config, statements: &'static [StatementDef], worker: usize) -> Client {
        let client = Client::idle(cfg, statements, worker);
        client.inner.ensure_reconnecting();
        client
    }

    /// Connects before returning (for start-up, where a bad URL or password should stop the
    /// process); later breaks heal in the background like `new`.
    pub fn connect_now(
        cfg: Config,
        statements: &'static [StatementDef],
        worker: usize,
    ) -> Result<Client, PgError> {
        let client = Client::idle(cfg, statements, worker);
        let conn = client.inner.open()?;
        // A break right after connecting may already have put a fresh connection in place.
        lock(&client.inner.conn).get_or_insert(conn);
        Ok(client)
    }

    fn idle(cfg: Config, statements: &'static [StatementDef], worker: usize) -> Client {
        Client {
            inner: Arc::new(Inner {
                cfg,
                statements,
                worker,
                conn: Mutex::new(None),
                reconnecting: AtomicBool::new(false),
                last_error: Mutex::new("not connected yet".into()),
                metrics: crate::metrics::worker(worker),
            }),
        }
    }

    pub fn query(&self, stmt: usize, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, PgError> {
        self.counted(
            self.live()
                .and_then(|conn| self.noticing_breaks(&conn, conn.query(stmt, params))),
        )
    }

    pub fn simple_query(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, PgError> {
        self.counted(
            self.live()
                .and_then(|conn| self.noticing_breaks(&conn, conn.simple_query(sql))),
        )
    }

    /// Counts a failed request by kind, failing fast while reconnecting included.
    fn counted<T>(&self, r: Result<T, PgError>) -> Result<T, PgError> {
        if let (Some(m), Err(e)) = (self.inner.metrics, &r) {
            m.pg_error(e.metrics_kind());
        }
        r
    }

    /// Whether a healthy connection is in place right now (starts a reconnection if not).
    pub fn is_up(&self) -> bool {
        self.live().is_ok()
    }

    /// The current connection, healthy or not, e.g. to read `in_flight` for metrics.
    pub fn connection(&self) -> Option<Arc<Connection>> {
        lock(&self.inner.conn).clone()
    }

    /// The healthy connection, or `Unavailable` with the last connection error (and a
    /// reconnection under way).
    fn live(&self) -> Result<Arc<Connection>, PgError> {
        let conn = lock(&self.inner.conn).clone();
        match conn {
            Some(c) if !c.is_broken() => Ok(c),
            _ => {
                self.inner.ensure_reconnecting();
                let why = lock(&self.inner.last_error).clone();
                Err(PgError::Unavailable(format!("reconnecting ({why})")))
            }
        }
    }

    fn noticing_breaks<T>(&self, conn: &Connection, r: Result<T, PgError>) -> Result<T, PgError> {
        if conn.is_broken() {
            self.inner.ensure_reconnecting();
        }
        r
    }
}

impl Inner {
    /// A connection whose break starts a reconnection, for as long as this client lives.
    fn open(self: &Arc<Self>) -> Result<Arc<Connection>, PgError> {
        let weak = Arc::downgrade(self);
        let on_break = Box::new(move |why: &str| {
            if let Some(inner) = weak.upgrade() {
                *lock(&inner.last_error) = format!("connection lost: {why}");
                inner.ensure_reconnecting();
            }
        });
        let r = Connection::open(&self.cfg, self.statements, self.worker, Some(on_break));
        if let Err(e) = &r {
            *lock(&self.last_error) = e.to_string();
        }
        r
    }

    fn ensure_reconnecting(self: &Arc<Self>) {
        if self.reconnecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        if let Err(e) = spawn_on(self.worker, "pg-reconnect", move || reconnect_loop(weak)) {
            *lock(&self.last_error) = e.to_string();
            self.reconnecting.store(false, Ordering::Release);
        }
    }
}

/// Attempts at once, then after 50 ms, 100 ms, ... up to 2 s between attempts. Holds the client
/// only weakly between attempts, so dropping the client ends the loop.
fn reconnect_loop(weak: Weak<Inner>) {
    let mut backoff = Duration::from_millis(RECONNECT_BACKOFF_MIN_MILLIS);
    let max = Duration::from_millis(RECONNECT_BACKOFF_MAX_MILLIS);
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if let Ok(conn) = inner.open() {
            let broke_already = conn.is_broken();
            // The first connection of a client started in the background is not a reconnect.
            let replaced = lock(&inner.conn).replace(conn).is_some();
            if let (true, Some(m)) = (replaced, inner.metrics) {
                m.pg_reconnect();
            }
            inner.reconnecting.store(false, Ordering::Release);
            // A break between connecting and storing found `reconnecting` still set.
            if broke_already {
                inner.ensure_reconnecting();
            }
            return;
        }
        drop(inner);
        may::coroutine::sleep(backoff);
        backoff = (backoff * 2).min(max);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Connection, PgError, Row};
    use super::Client;

    #[test]
    fn shareable_by_every_coroutine_of_a_worker() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Client>();
        send_sync::<Connection>();
        send_sync::<Row>();
        send_sync::<PgError>();
    }
}
