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
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use may::coroutine::Builder;
use may::go;
use may::io::{CoIo, WaitIo, WaitIoWaker};
use may::net::{TcpListener, TcpStream};
use socket2::SockRef;

use super::conn::{Conn, Timeouts};
use super::cors::Cors;
use super::gzip::GzipPool;
use super::message::Service;
use super::parking::Lot;
use super::{ACCEPT_BACKOFF_MILLIS, BODY_TIMEOUT_SECS, CONN_STACK_BYTES};
use super::{GZIP_COMPRESSORS_PER_WORKER, HEADER_TIMEOUT_SECS, HOUSEKEEPING_STACK_BYTES};
use super::{IDLE_TIMEOUT_SECS, LISTEN_BACKLOG, PARK_AFTER_MILLIS, SHUTDOWN_POLL_MILLIS};
use super::{SWEEP_NAP_MIN_MILLIS, WRITE_TIMEOUT_SECS};
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
    let listeners = bind_listeners(cfg.listen, workers)?;
    let local_addr = listeners[0].local_addr()?;
    let shared = Arc::new(Shared::new(timeouts, cfg.cors, workers));
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

/// A coroutine builder for a worker's acceptor, parker and sweeper.
fn housekeeping(worker: usize) -> Builder {
    Builder::new()
        .id(worker)
        .stack_size(HOUSEKEEPING_STACK_BYTES / std::mem::size_of::<usize>())
}

/// Binds one listener per worker to the same address. The first one fixes the port when port
/// 0 was asked for; `SO_REUSEPORT` (set by may's `bind`) lets the others share it.
fn bind_listeners(addr: SocketAddr, workers: usize) -> io::Result<Vec<Arc<TcpListener>>> {
    let first = bind_one(addr)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![Arc::new(first)];
    for _ in 1..workers {
        listeners.push(Arc::new(bind_one(addr)?));
    }
    Ok(listeners)
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    // may listens with its own backlog; listening again on Linux only updates the queue length.
    SockRef::from(listener.inner()).listen(LISTEN_BACKLOG)?;
    Ok(listener)
}

/// State shared by a server's acceptors and connections.
pub(crate) struct Shared {
    timeouts: Timeouts,
    cors: Cors,
    draining: AtomicBool,
    workers: Box<[Worker]>,
}

/// Everything the coroutines of one server share, including the parts that depend on the
/// service type.
struct Runtime<S, F> {
    shared: Arc<Shared>,
    factory: F,
    /// Each worker's parking lot, indexed by worker.
    lots: Box<[Lot<Parked<S>>]>,
}

/// An idle connection in its worker's parking lot: its socket and bookkeeping, and its service.
struct Parked<S> {
    tracked: Tracked,
    service: S,
    _gauge: ParkedGauge,
}

/// Counts a connection as parked, in its worker's counter, for as long as it lives.
struct ParkedGauge {
    shared: Arc<Shared>,
    worker: usize,
}

impl ParkedGauge {
    fn new(shared: &Arc<Shared>, worker: usize) -> ParkedGauge {
        shared.workers[worker].parked.fetch_add(1, Ordering::SeqCst);
        ParkedGauge {
            shared: shared.clone(),
            worker,
        }
    }
}

impl Drop for ParkedGauge {
    fn drop(&mut self) {
        self.shared.workers[self.worker]
            .parked
            .fetch_sub(1, Ordering::SeqCst);
    }
}

/// One worker's bookkeeping, padded to its own cache lines so that counting connections on one
/// worker does not slow down another.
#[repr(align(128))]
struct Worker {
    open: AtomicUsize,
    parked: AtomicUsize,
    /// Per-worker lock: taken by the worker's connections as they open and close, so it is
    /// contended within that worker at most (and by shutdown, off the request path).
    registry: Mutex<Registry>,
    /// The worker's own compressors; a response finding none free is sent uncompressed.
    gzip: GzipPool,
}

/// The worker's open connections, for shutdown to find the idle ones.
#[derive(Default)]
struct Registry {
    slots: Vec<Option<Arc<Slot>>>,
    free: Vec<usize>,
}

/// A registered connection: its socket and whether it is waiting between requests.
pub(crate) struct Slot {
    fd: RawFd,
    idle: AtomicBool,
}

impl Shared {
    fn new(timeouts: Timeouts, cors: Cors, workers: usize) -> Shared {
        Shared {
            timeouts,
            cors,
            draining: AtomicBool::new(false),
            workers: (0..workers)
                .map(|_| Worker {
                    open: AtomicUsize::new(0),
                    parked: AtomicUsize::new(0),
                    registry: Mutex::new(Registry::default()),
                    gzip: GzipPool::new(GZIP_COMPRESSORS_PER_WORKER),
                })
                .collect(),
        }
    }

    fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    fn registry(&self, worker: usize) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the slot table inconsistent.
        self.workers[worker]
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wakes every idle connection waiting in its coroutine with end-of-input so it closes.
    /// Busy ones see the draining flag when they next go idle; parked ones are closed by their
    /// worker's parker.
    fn wake_idle(&self) {
        for worker in 0..self.workers.len() {
            let registry = self.registry(worker);
            for slot in registry.slots.iter().flatten() {
                if slot.idle.load(Ordering::SeqCst) {
                    slot.shutdown_read();
                }
            }
        }
    }
}

impl Slot {
    /// Only called with the registry lock held and the slot registered: a connection
    /// unregisters (under that lock) before its socket is closed, so `fd` is still its socket.
    fn shutdown_read(&self) {
        // SAFETY: plain syscall on an fd that is open (see above); no memory is involved.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RD);
        }
    }
}

/// What a connection sees of the server: its timeouts, CORS policy, its worker's compressors and
/// shutdown state.
pub(crate) struct ConnLink<'a> {
    shared: &'a Shared,
    worker: usize,
    slot: &'a Slot,
}

/// A server's shared state for one connection outside any server: the link of a connection
/// that runs on an in-memory stream.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) struct Detached {
    shared: Shared,
    slot: Slot,
}

#[cfg(any(test, feature = "fuzzing"))]
impl Detached {
    pub(crate) fn new(timeouts: Timeouts, cors: Cors) -> Detached {
        Detached {
            shared: Shared::new(timeouts, cors, 1),
            slot: Slot {
                fd: -1,
                idle: AtomicBool::new(false),
            },
        }
    }

    pub(crate) fn link(&self) -> ConnLink<'_> {
        ConnLink {
            shared: &self.shared,
            worker: 0,
            slot: &self.slot,
        }
    }
}

impl ConnLink<'_> {
    pub(crate) fn timeouts(&self) -> &Timeouts {
        &self.shared.timeouts
    }

    pub(crate) fn cors(&self) -> &Cors {
        &self.shared.cors
    }

    pub(crate) fn gzip(&self) -> &GzipPool {
        &self.shared.workers[self.worker].gzip
    }

    /// Marks the connection idle; false if the server is draining and it should close instead.
    /// Flag then check here, flag then scan in shutdown: one of the two always sees the other.
    pub(crate) fn enter_idle(&self) -> bool {
        self.slot.idle.store(true, Ordering::SeqCst);
        !self.shared.draining()
    }

    pub(crate) fn leave_idle(&self) {
        self.slot.idle.store(false, Ordering::SeqCst);
    }

    /// The server is shutting down: answer the current request with `Connection: close`.
    pub(crate) fn draining(&self) -> bool {
        self.shared.draining()
    }

    /// The worker's metrics slot, `None` when metrics are off; asked once per connection
    /// coroutine.
    pub(crate) fn metrics(&self) -> Option<&'static crate::metrics::WorkerMetrics> {
        crate::metrics::worker(self.worker)
    }
}

fn accept_loop<S, F>(listener: &TcpListener, rt: &Arc<Runtime<S, F>>)
where
    S: Service + Send + 'static,
    F: Fn(usize) -> S + Send + Sync + 'static,
{
    loop {
        let admitted = match listener.accept() {
            Ok((stream, _)) => admit(stream, rt),
            Err(e) => keep_accepting_after(&e, &rt.shared),
        };
        if !admitted {
            return;
        }
    }
}

/// Whether the acceptor should go on after `accept` failed.
fn keep_accepting_after(e: &io::Error, shared: &Shared) -> bool {
    if shared.draining() {
        return false;
    }
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
            may::coroutine::sleep(Duration::from_millis(ACCEPT_BACKOFF_MILLIS));
            true
        }
        Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK) => false,
        _ => true,
    }
}

/// Counts, registers and spawns a connection on its socket's worker. False once the server is
/// draining.
fn admit<S, F>(stream: TcpStream, rt: &Arc<Runtime<S, F>>) -> bool
where
    S: Service + Send + 'static,
    F: Fn(usize) -> S + Send + Sync + 'static,
{
    // may wakes a coroutine blocked on a socket on the worker that owns the socket's epoll
    // (`fd % workers`), so that is where the connection lives and whose resources (counters,
    // registry, compressors, parking lot) it uses.
    let worker = stream.as_raw_fd() as usize % rt.shared.workers.len();
    let counted = Counted::new(rt.shared.clone(), worker);
    if let Some(metrics) = crate::metrics::worker(worker) {
        metrics.connection_accepted();
    }
    // Counted before this check, checked after draining is set by shutdown: either shutdown
    // sees the count or this sees the flag.
    if rt.shared.draining() {
        return false;
    }
    // Responses are written whole; Nagle would only delay them.
    let _ = stream.set_nodelay(true);
    let tracked = Tracked {
        membership: Membership::new(rt.shared.clone(), worker, stream.as_raw_fd()),
        stream,
        _counted: counted,
    };
    spawn_connection(rt, tracked, None);
    true
}

/// Runs a connection in a new coroutine on its worker; `service` is `None` for a new connection
/// (the factory makes one) and the parked service for one coming back from its worker's lot. On
/// failure the closure, and with it the connection, is dropped and cleaned up.
fn spawn_connection<S, F>(rt: &Arc<Runtime<S, F>>, tracked: Tracked, service: Option<S>)
where
    S: Service + Send + 'static,
    F: Fn(usize) -> S + Send + Sync + 'static,
{
    let builder = Builder::new()
        .id(tracked.membership.worker)
        .stack_size(CONN_STACK_BYTES / std::mem::size_of::<usize>());
    let rt = rt.clone();
    let _ = go!(builder, move || run_connection(&rt, tracked, service));
}

fn run_connection<S, F>(rt: &Runtime<S, F>, mut tracked: Tracked, service: Option<S>)
where
    S: Service,
    F: Fn(usize) -> S,
{
    let worker = tracked.membership.worker;
    let service = service.unwrap_or_else(|| (rt.factory)(worker));
    let link = ConnLink {
        shared: &rt.shared,
        worker,
        slot: &tracked.membership.slot,
    };
    let Some((service, deadline)) = Conn::new(&mut tracked.stream, link, service).run() else {
        return;
    };
    let fd = tracked.stream.as_raw_fd();
    let parked = Parked {
        tracked,
        service,
        _gauge: ParkedGauge::new(&rt.shared, worker),
    };
    // A refused park (lot closed by shutdown) drops the connection, closing it.
    let _ = rt.lots[worker].park(fd, parked, deadline);
}

/// `worker`'s parker: gives connections in its lot whose socket became readable a coroutine on
/// the worker again; on shutdown, closes every connection parked there and exits. `waiter`
/// resumes it on `worker`.
fn run_parker<S, F>(rt: &Arc<Runtime<S, F>>, worker: usize, waiter: &CoIo<OwnedFd>)
where
    S: Service + Send + 'static,
    F: Fn(usize) -> S + Send + Sync + 'static,
{
    let lot = &rt.lots[worker];
    loop {
        waiter.wait_io();
        if rt.shared.draining() {
            drop(lot.close());
            return;
        }
        for Parked {
            tracked, service, ..
        } in lot.ready()
        {
            spawn_connection(rt, tracked, Some(service));
        }
    }
}

/// `worker`'s sweeper: closes connections in its lot whose idle timeout has passed. It naps
/// (on `worker`, see [`Nap`]) until the oldest deadline, or for the park delay when the lot is
/// empty: a connection parked meanwhile has a deadline at least that far away.
fn run_sweeper<S, F>(rt: &Runtime<S, F>, worker: usize, nap: &mut Nap) {
    let lot = &rt.lots[worker];
    let nap_max = rt.shared.timeouts.park;
    loop {
        let now = Instant::now();
        let (expired, next) = lot.expire(now);
        drop(expired);
        if rt.shared.draining() {
            return;
        }
        let until_next = next.map_or(nap_max, |at| at.saturating_duration_since(now));
        nap.sleep(until_next.clamp(Duration::from_millis(SWEEP_NAP_MIN_MILLIS), nap_max));
    }
}

/// A connection's socket with its bookkeeping. Field order is drop order: unregister first,
/// then close the socket, then stop counting it, so shutdown never touches a closed fd and never
/// reports "all closed" while a socket is still open.
struct Tracked {
    membership: Membership,
    stream: TcpStream,
    _counted: Counted,
}

/// Registration in the worker's registry, removed on drop.
struct Membership {
    shared: Arc<Shared>,
    worker: usize,
    slot: Arc<Slot>,
    index: usize,
}

impl Membership {
    fn new(shared: Arc<Shared>, worker: usize, fd: RawFd) -> Membership {
        let slot = Arc::new(Slot {
            fd,
            idle: AtomicBool::new(true),
        });
        let index = {
            let mut registry = shared.registry(worker);
            match registry.free.pop() {
                Some(i) => {
                    registry.slots[i] = Some(slot.clone());
                    i
                }
                None => {
                    registry.slots.push(Some(slot.clone()));
                    registry.slots.len() - 1
                }
            }
        };
        Membership {
            shared,
            worker,
            slot,
            index,
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut registry = self.shared.registry(self.worker);
        registry.slots[self.index] = None;
        registry.free.push(self.index);
    }
}

/// One open connection in its worker's counter, released on drop.
struct Counted {
    shared: Arc<Shared>,
    worker: usize,
}

impl Counted {
    fn new(shared: Arc<Shared>, worker: usize) -> Counted {
        shared.workers[worker].open.fetch_add(1, Ordering::SeqCst);
        Counted { shared, worker }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.shared.workers[self.worker]
            .open
            .fetch_sub(1, Ordering::SeqCst);
    }
}
