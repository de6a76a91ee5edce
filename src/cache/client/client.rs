//! A connection that heals itself.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::{Cmd, Value};

use super::config::RedisConfig;
use super::conn::spawn_on;
use super::conn::{lock, Connection};
use super::error::CacheError;
use super::limits::{RECONNECT_BACKOFF_MAX_MILLIS, RECONNECT_BACKOFF_MIN_MILLIS};
use crate::metrics::WorkerMetrics;

/// One worker's connection to Redis. While the connection is down, commands fail at once with
/// `Unavailable` and a single background coroutine on the worker reconnects with exponential
/// backoff; no call ever waits for it.
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: RedisConfig,
    worker: usize,
    conn: Mutex<Option<Arc<Connection>>>,
    /// True while the reconnect coroutine runs, so there is only ever one.
    reconnecting: AtomicBool,
    /// Successful connections so far.
    generation: AtomicU64,
    last_error: Mutex<String>,
    /// The worker's metrics slot; `None` when metrics are off.
    metrics: Option<&'static WorkerMetrics>,
}

impl Client {
    /// Starts connecting in the background on `worker` and returns at once.
    pub fn new(cfg: RedisConfig, worker: usize) -> Client {
        let client = Client {
            inner: Arc::new(Inner {
                cfg,
                worker,
                conn: Mutex::new(None),
                reconnecting: AtomicBool::new(false),
                generation: AtomicU64::new(0),
                last_error: Mutex::new("not connected yet".into()),
                metrics: crate::metrics::worker(worker),
            }),
        };
        client.inner.ensure_reconnecting();
        client
    }

    /// Runs `cmd` and waits up to the configured command timeout for its reply.
    pub fn query(&self, cmd: &Cmd) -> Result<Value, CacheError> {
        self.counted(
            self.live()
                .and_then(|conn| self.noticing_breaks(&conn, conn.query(cmd))),
        )
    }

    /// Runs `cmd` and waits up to `timeout` for its reply.
    pub fn query_timeout(&self, cmd: &Cmd, timeout: Duration) -> Result<Value, CacheError> {
        self.counted(
            self.live()
                .and_then(|conn| self.noticing_breaks(&conn, conn.query_timeout(cmd, timeout))),
        )
    }

    /// Queues `cmd` and returns at once; its reply is read and discarded.
    pub fn send(&self, cmd: &Cmd) -> Result<(), CacheError> {
        self.counted(
            self.live()
                .and_then(|conn| self.noticing_breaks(&conn, conn.send(cmd))),
        )
    }

    /// Counts a failed command by kind, failing fast while reconnecting included.
    fn counted<T>(&self, r: Result<T, CacheError>) -> Result<T, CacheError> {
        if let (Some(m), Err(e)) = (self.inner.metrics, &r) {
            m.redis_error(e.metrics_kind());
        }
        r
    }

    /// Whether a healthy connection is in place right now (starts a reconnection if not).
    pub fn is_up(&self) -> bool {
        self.live().is_ok()
    }

    /// Counts successful (re)connections: a change tells callers that the server may have
    /// restarted in between, and lost what it held.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// The current connection, healthy or not, e.g. to read `in_flight` for metrics.
    pub fn connection(&self) -> Option<Arc<Connection>> {
        lock(&self.inner.conn).clone()
    }

    /// The healthy connection, or `Unavailable` with the last connection error (and a
    /// reconnection under way).
    fn live(&self) -> Result<Arc<Connection>, CacheError> {
        let conn = lock(&self.inner.conn).clone();
        match conn {
            Some(c) if !c.is_broken() => Ok(c),
            _ => {
                self.inner.ensure_reconnecting();
                let why = lock(&self.inner.last_error).clone();
                Err(CacheError::Unavailable(format!("reconnecting ({why})")))
            }
        }
    }

    fn noticing_breaks<T>(
        &self,
        conn: &Connection,
        r: Result<T, CacheError>,
    ) -> Result<T, CacheError> {
        if conn.is_broken() {
            self.inner.ensure_reconnecting();
        }
        r
    }
}

impl Inner {
    /// A connection whose break starts a reconnection, for as long as this client lives.
    fn open(self: &Arc<Self>) -> Result<Arc<Connection>, CacheError> {
        let weak = Arc::downgrade(self);
        let on_break = Box::new(move |why: &str| {
            if let Some(inner) = weak.upgrade() {
                *lock(&inner.last_error) = format!("connection lost: {why}");
                inner.ensure_reconnecting();
            }
        });
        let r = Connection::open(&self.cfg, self.worker, Some(on_break));
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
        if let Err(e) = spawn_on(self.worker, "redis-reconnect", move || reconnect_loop(weak)) {
            *lock(&self.last_error) = e.to_string();
            self.reconnecting.store(false, Ordering::Release);
        }
    }
}

/// Attempts at once, then after 50 ms, 100 ms, ... up to 1 s between attempts. Holds the client
/// only weakly between attempts, so dropping the client ends the loop.
fn reconnect_loop(weak: Weak<Inner>) {
    let mut backoff = Duration::from_millis(RECONNECT_BACKOFF_MIN_MILLIS);
    let max = Duration::from_millis(RECONNECT_BACKOFF_MAX_MILLIS);
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if let Ok(conn) = inner.open() {
            let broke_already = conn.is_broken();
            // Counted first, so that whoever uses the new connection sees the new generation.
            let earlier = inner.generation.fetch_add(1, Ordering::AcqRel);
            // The first connection of a client is not a reconnect.
            if let (true, Some(m)) = (earlier > 0, inner.metrics) {
                m.redis_reconnect();
            }
            *lock(&inner.conn) = Some(conn);
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
    use super::super::{CacheError, Connection, RedisConfig};
    use super::Client;

    #[test]
    fn shareable_by_every_coroutine_of_a_worker() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Client>();
        send_sync::<Connection>();
        send_sync::<RedisConfig>();
        send_sync::<CacheError>();
    }
}
