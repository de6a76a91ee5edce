//! Listeners and acceptors: one `SO_REUSEPORT` listener and one acceptor coroutine per worker;
//! each accepted connection is counted, registered and spawned on its socket's worker.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use may::net::{TcpListener, TcpStream};
use socket2::SockRef;

use super::runtime::{spawn_connection, Runtime};
use super::service::Service;
use super::shared::{Counted, Membership, Shared, Tracked};
use super::{ACCEPT_BACKOFF_MILLIS, LISTEN_BACKLOG};

/// Binds one listener per worker to the same address. The first one fixes the port when port
/// 0 was asked for; `SO_REUSEPORT` (set by may's `bind`) lets the others share it. Unless
/// `join` is set, a port another process already serves is refused first: `SO_REUSEPORT` would
/// otherwise let this server join it silently and take part of its traffic.
pub(super) fn bind_listeners(
    addr: SocketAddr,
    workers: usize,
    join: bool,
) -> io::Result<Vec<Arc<TcpListener>>> {
    if !join && addr.port() != 0 {
        refuse_if_served(addr)?;
    }
    let first = bind_one(addr)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![Arc::new(first)];
    for _ in 1..workers {
        listeners.push(Arc::new(bind_one(addr)?));
    }
    Ok(listeners)
}

/// Fails with `AddrInUse` if some process listens on `addr`: a bind without `SO_REUSEPORT`
/// (with `SO_REUSEADDR`, so connections of an earlier server still in TIME_WAIT do not count)
/// fails exactly then.
fn refuse_if_served(addr: SocketAddr) -> io::Result<()> {
    let probe = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    probe.set_reuse_address(true)?;
    match probe.bind(&addr.into()) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "{addr} is already served by another process; to share it on purpose (a restart \
                 without downtime), set GAVEL_JOIN_PORT=true"
            ),
        )),
        other => other,
    }
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    // may listens with its own backlog; listening again on Linux only updates the queue length.
    SockRef::from(listener.inner()).listen(LISTEN_BACKLOG)?;
    Ok(listener)
}

pub(super) fn accept_loop<S, F>(listener: &TcpListener, rt: &Arc<Runtime<S, F>>)
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
    if let Some(observer) = rt.shared.observers.of(worker) {
        observer.connection_accepted();
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
