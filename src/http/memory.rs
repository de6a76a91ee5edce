//! The whole connection logic on bytes in memory: requests in (as the reads that bring them),
//! responses out. What property tests and fuzzers drive; no socket, no coroutine.

use std::time::Duration;

use super::conn::{Conn, Ended};
use super::link::Detached;
use super::shared::Timeouts;
use super::transport::MemoryStream;
use super::{Cors, Service};

/// Serves one connection whose peer sends `reads` one after the other and then closes; returns
/// every byte written back. The server's default timeouts apply, and none expires: the peer
/// never makes the connection wait.
pub fn serve<S: Service>(service: S, reads: &[&[u8]]) -> Vec<u8> {
    let detached = Detached::new(timeouts(), Cors::Any);
    let mut stream = MemoryStream::new(reads);
    let mut service = Some(service);
    // A connection that would park comes back, as it does from the parking lot, until it ends.
    while let Some(s) = service.take() {
        // A stream ends here: memory has no one to hold it.
        service = match Conn::new(&mut stream, detached.link(), s).run() {
            Ended::Park(s, _) => Some(s),
            Ended::Closed | Ended::Stream(..) => None,
        };
    }
    stream.written
}

fn timeouts() -> Timeouts {
    let secs = Duration::from_secs;
    Timeouts {
        idle: secs(super::IDLE_TIMEOUT_SECS),
        park: Duration::from_millis(super::PARK_AFTER_MILLIS),
        header: secs(super::HEADER_TIMEOUT_SECS),
        body: secs(super::BODY_TIMEOUT_SECS),
        write: secs(super::WRITE_TIMEOUT_SECS),
    }
}
