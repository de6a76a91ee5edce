//! Listeners, acceptors, the connection registry, the parking lots' coroutines and graceful
//! shutdown.
//!
//! Each worker has its own `SO_REUSEPORT` listener, so the kernel spreads connections over the
//! workers, and its own acceptor coroutine. may resumes a coroutine blocked on a socket, or whose
//! socket wait timed out, on the worker whose epoll owns the socket (`fd % workers`), so each
//! connection is spawned on that worker and stays there: it is "the connection's worker".
//!
//! Everything a connection touches on its request path belongs to its worker: the open and
//! parked connection counters, the registry of open connections (socket and idle flag, so
//! shutdown can wake the idle ones), the gzip compressors and the parking lot. The locks among
//! these are per worker, so they are contended within one worker at most, never between workers.
//! A connection idle past the park delay waits in its worker's lot; that worker's parker
//! coroutine gives it a new coroutine on the same worker when input arrives, and its sweeper
//! coroutine closes it when its idle timeout passes there.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use may::go;
use may::io::{WaitIo, WaitIoWaker};
use may::net::TcpListener;
use socket2::SockRef;

use super::cors::Cors;
use super::listen::{accept_loop, bind_listeners};
use super::observe::Observers;
use super::parker::{run_parker, run_sweeper};
use super::parking::Lot;
use super::runtime::{housekeeping, Runtime};
use super::service::Service;
use super::shared::{Shared, Timeouts};
use super::{BODY_TIMEOUT_SECS, HEADER_TIMEOUT_SECS, IDLE_TIMEOUT_SECS, PARK_AFTER_MILLIS};
use super::{SHUTDOWN_POLL_MILLIS, WRITE_TIMEOUT_SECS};
use crate::placement::Nap;

/// How to run the server. [`ServerConfig::new`] gives the documented defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Listeners and acceptors, one per worker; should equal may's worker count.
    pub workers: usize,
    /// A keep-alive connection idle this long is closed silently.
    pub idle_timeout: Duration,
    /// A connection idle this long gives up its coroutine and waits in the parking lot.
    pub park_after: Duration,
    /// A request head must arrive within this, counted from its first byte (then 408).
    pub header_timeout: Duration,
    /// A request body must arrive within this, counted from the end of its head (then 408).
    pub body_timeout: Duration,
    /// Pending responses must be handed to the kernel within this, or the connection closes.
    pub write_timeout: Duration,
    pub cors: Cors,
    /// Told of every response and accepted connection; none by default.
    pub observers: Observers,
    /// Share a port another process already serves (`SO_REUSEPORT`) instead of refusing to
    /// start; off by default.
    pub join_port: bool,
}

impl ServerConfig {
    /// Defaults: one worker per may worker, the `*_TIMEOUT_SECS` and `PARK_AFTER_MILLIS`
    /// constants, CORS for any origin.
    pub fn new(listen: SocketAddr) -> ServerConfig {
        ServerConfig {
            listen,
            workers: may::config().get_workers(),
            idle_timeout: Duration::from_secs(IDLE_TIMEOUT_SECS),
            park_after: Duration::from_millis(PARK_AFTER_MILLIS),
            header_timeout: Duration::from_secs(HEADER_TIMEOUT_SECS),
            body_timeout: Duration::from_secs(BODY_TIMEOUT_SECS),
            write_timeout: Duration::from_secs(WRITE_TIMEOUT_SECS),
            cors: Cors::Any,
            observers: Observers::default(),
            join_port: false,
        }
    }

    fn timeouts(&self) -> io::Result<Timeouts> {
        let t = Timeouts {
            idle: self.idle_timeout,
            park: self.park_after,
            header: self.header_timeout,
            body: self.body_timeout,
            write: self.write_timeout,
        };
        if [t.idle, t.park, t.header, t.body, t.write]
            .iter()
            .any(Duration::is_zero)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "server timeouts must be positive",
            ));
        }
        Ok(t)
    }
}

/// A running server. Dropping it stops accepting and closes parked connections (like the start
/// of [`Server::shutdown`]) but does not wait for the others.
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<Arc<TcpListener>>,
    local_addr: SocketAddr,
    /// Wakes each worker's parker, indexed by worker.
    parkers: Vec<WaitIoWaker>,
}

/// Starts listening on `cfg.listen` and serving connections; returns once every listener is
/// bound. `factory(worker)` builds one service per accepted connection, on that connection's
/// first coroutine. may must already be configured (workers, pinning) when this is called, and
/// it must be called from a thread, not a coroutine: it builds the gzip compressors, which need
/// a large stack in unoptimised builds.
///
/// The service is `Send` because a connection that parks continues in a new coroutine, which
/// its worker's parker spawns (on the same worker) and may only be handed `Send` values.
pub fn serve<S, F>(cfg: ServerConfig, factory: F) -> io::Result<Server>
where
    S: Service + Send + 'static,
    F: Fn(usize) -> S + Send + Sync + 'static,
{
    let timeouts = cfg.timeouts()?;
    let workers = cfg.workers.max(1);
    let listeners = bind_listeners(cfg.listen, workers, cfg.join_port)?;
    let local_addr = listeners[0].local_addr()?;
    let shared = Arc::new(Shared::new(timeouts, cfg.cors, cfg.observers, workers));
    let lots = (0..workers)
        .map(|_| Lot::new())
        .collect::<io::Result<Box<[_]>>>()?;
    let waiters = (0..workers)
        .map(|worker| lots[worker].waiter(worker))
        .collect::<io::Result<Vec<_>>>()?;
    let naps = (0..workers).map(Nap::new).collect::<io::Result<Vec<_>>>()?;
    let server = Server {
        shared: shared.clone(),
        listeners,
        local_addr,
        parkers: waiters.iter().map(WaitIo::waker).collect(),
    };
    let rt = Arc::new(Runtime {
        shared,
        factory,
        lots,
    });
    for (worker, listener) in server.listeners.iter().enumerate() {
        let (listener, rt) = (listener.clone(), rt.clone());
        go!(housekeeping(worker), move || accept_loop(&listener, &rt))?;
    }
    for (worker, (waiter, mut nap)) in waiters.into_iter().zip(naps).enumerate() {
        let parker_rt = rt.clone();
        go!(housekeeping(worker), move || {
            run_parker(&parker_rt, worker, &waiter);
        })?;
        let sweeper_rt = rt.clone();
        go!(housekeeping(worker), move || {
            run_sweeper(&sweeper_rt, worker, &mut nap);
        })?;
    }
    Ok(server)
}

impl Server {
    /// The bound address (with the actual port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections currently open (parked ones included), all workers together.
    pub fn open_connections(&self) -> usize {
        self.open_connections_per_worker().iter().sum()
    }

    /// Connections currently waiting in a parking lot (idle past the park delay), all workers'
    /// lots together.
    pub fn parked_connections(&self) -> usize {
        self.shared
            .workers
            .iter()
            .map(|w| w.parked.load(Ordering::SeqCst))
            .sum()
    }

    /// Connections currently open on each worker.
    pub fn open_connections_per_worker(&self) -> Vec<usize> {
        self.connection_counts().open_per_worker()
    }

    /// A handle on the open-connection counters that another thread can keep (the admin
    /// listener reads them at each scrape).
    pub fn connection_counts(&self) -> ConnectionCounts {
        ConnectionCounts {
            shared: self.shared.clone(),
        }
    }

    /// Stops accepting, closes idle connections, lets in-flight requests finish (answered with
    /// `Connection: close`) and waits for every connection to close. True if all closed within
    /// `drain`, false if time ran out first (the rest still close as their requests end).
    pub fn shutdown(&self, drain: Duration) -> bool {
        let deadline = Instant::now() + drain;
        self.stop();
        self.shared.wake_idle();
        loop {
            if self.open_connections() == 0 {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            may::coroutine::sleep(left.min(Duration::from_millis(SHUTDOWN_POLL_MILLIS)));
        }
    }

    /// Marks the server as draining, wakes the acceptors (on Linux, shutting down the read side
    /// of a listening socket makes a blocked or later `accept` fail, so they exit) and wakes
    /// every worker's parker, which closes the connections parked in its lot and exits.
    fn stop(&self) {
        self.shared.draining.store(true, Ordering::SeqCst);
        for listener in &self.listeners {
            let _ = SockRef::from(listener.inner()).shutdown(Shutdown::Read);
        }
        for parker in &self.parkers {
            parker.wakeup();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads a server's per-worker open-connection counters; outlives nothing but the counters.
#[derive(Clone)]
pub struct ConnectionCounts {
    shared: Arc<Shared>,
}

impl ConnectionCounts {
    /// Connections currently open on each worker, parked ones included.
    pub fn open_per_worker(&self) -> Vec<usize> {
        self.shared
            .workers
            .iter()
            .map(|w| w.open.load(Ordering::SeqCst))
            .collect()
    }

    /// Connections currently open on `worker`, parked ones included.
    pub fn open(&self, worker: usize) -> usize {
        self.shared.workers[worker].open.load(Ordering::SeqCst)
    }
}
