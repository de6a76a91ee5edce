//! Connection set-up IO: dialing, then everything until the link starts, bounded by one deadline.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use may::net::TcpStream;

use super::error::LinkError;
use super::limits::Limits;
use crate::placement::WorkerId;

/// Where to connect, and how long connecting (TCP plus the handshake) may take.
pub struct Endpoint<'a> {
    pub host: &'a str,
    pub port: u16,
    pub connect_timeout: Duration,
}

/// The socket and read buffer of a link being set up. Whatever the handshake leaves unread in
/// `buf` is the reader's first input.
pub struct Handshake {
    pub(super) stream: TcpStream,
    pub buf: BytesMut,
    deadline: Instant,
    limits: Limits,
}

impl Handshake {
    /// Connects, then moves the socket onto a descriptor that `worker`'s event loop watches,
    /// before the first timed wait of the handshake. may keeps a socket's timer in a `RefCell`
    /// that its event loop and the waiting coroutine both borrow: when they are different
    /// threads, a timeout that fires as the socket becomes ready borrows it twice and panics.
    /// On `worker`'s own descriptor the two are one thread.
    pub(super) fn dial(
        at: &Endpoint<'_>,
        limits: Limits,
        worker: WorkerId,
    ) -> Result<Handshake, LinkError> {
        let deadline = Instant::now() + at.connect_timeout;
        let keepalive = crate::sockets::Keepalive {
            idle: Duration::from_secs(limits.keepalive_idle_secs),
            interval: Duration::from_secs(limits.keepalive_interval_secs),
        };
        let dialed = crate::sockets::dial(at.host, at.port, deadline, keepalive)
            .map_err(LinkError::Unavailable)?;
        let stream = worker
            .own(&dialed)
            .map_err(|e| LinkError::Unavailable(format!("cannot set up the socket: {e}")))?;
        drop(dialed);
        Ok(Handshake {
            stream,
            buf: BytesMut::with_capacity(limits.read_buffer_bytes),
            deadline,
            limits,
        })
    }

    fn remaining(&self) -> Result<Duration, LinkError> {
        match self.deadline.checked_duration_since(Instant::now()) {
            Some(d) if !d.is_zero() => Ok(d),
            _ => Err(timed_out()),
        }
    }

    /// Writes all of `bytes` before the deadline.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        let left = self.remaining()?;
        self.stream
            .set_write_timeout(Some(left))
            .and_then(|_| self.stream.write_all(bytes))
            .map_err(|e| LinkError::Unavailable(format!("write during the handshake failed: {e}")))
    }

    /// Reads more bytes into `buf` before the deadline; the end of the stream is an error.
    pub fn fill(&mut self) -> Result<(), LinkError> {
        let left = self.remaining()?;
        let read = self
            .stream
            .set_read_timeout(Some(left))
            .and_then(|_| read_into(&mut self.stream, &mut self.buf, &self.limits));
        match read {
            Ok(0) => Err(LinkError::Unavailable(
                "server closed the connection during the handshake".into(),
            )),
            Ok(_) => Ok(()),
            Err(e) if is_timeout(&e) => Err(timed_out()),
            Err(e) => Err(LinkError::Unavailable(format!(
                "read during the handshake failed: {e}"
            ))),
        }
    }
}

fn timed_out() -> LinkError {
    LinkError::Unavailable("connect timeout reached during the handshake".into())
}

/// Reads what is available, in the protocol's buffer sizes.
pub(super) fn read_into(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    limits: &Limits,
) -> io::Result<usize> {
    crate::sockets::read_into(
        stream,
        buf,
        limits.read_buffer_bytes,
        limits.read_chunk_bytes,
    )
}

pub(super) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}
