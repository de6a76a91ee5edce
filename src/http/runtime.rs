//! A running server's coroutines and what they share: connections spawned on their worker, run,
//! and parked when idle.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use may::coroutine::Builder;
use may::go;

use super::conn::{Conn, Ended};
use super::link::ConnLink;
use super::parking::Lot;
use super::service::Service;
use super::shared::{ParkedGauge, Shared, Tracked};
use super::stream::OpenStream;
use super::{CONN_STACK_BYTES, HOUSEKEEPING_STACK_BYTES};

/// Everything the coroutines of one server share, including the parts that depend on the
/// service type.
pub(super) struct Runtime<S, F> {
    pub(super) shared: Arc<Shared>,
    pub(super) factory: F,
    /// Each worker's parking lot, indexed by worker.
    pub(super) lots: Box<[Lot<Parked<S>>]>,
}

/// An idle connection in its worker's parking lot: its socket and bookkeeping, and its service.
pub(super) struct Parked<S> {
    pub(super) tracked: Tracked,
    pub(super) service: S,
    pub(super) _gauge: ParkedGauge,
}

/// A coroutine builder for a worker's acceptor, parker and sweeper.
pub(super) fn housekeeping(worker: usize) -> Builder {
    Builder::new()
        .id(worker)
        .stack_size(HOUSEKEEPING_STACK_BYTES / std::mem::size_of::<usize>())
}

/// Runs a connection in a new coroutine on its worker; `service` is `None` for a new connection
/// (the factory makes one) and the parked service for one coming back from its worker's lot. On
/// failure the closure, and with it the connection, is dropped and cleaned up.
pub(super) fn spawn_connection<S, F>(rt: &Arc<Runtime<S, F>>, tracked: Tracked, service: Option<S>)
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

pub(super) fn run_connection<S, F>(rt: &Runtime<S, F>, mut tracked: Tracked, service: Option<S>)
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
    let (service, deadline) = match Conn::new(&mut tracked.stream, link, service).run() {
        Ended::Closed => return,
        Ended::Park(service, deadline) => (service, deadline),
        Ended::Stream(mut service, chunked) => {
            service.adopt(OpenStream::new(tracked, chunked));
            return;
        }
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
