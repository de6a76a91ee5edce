//! TCP helpers shared by the PostgreSQL and Redis clients: dialing with a deadline, socket options,
//! and reads into a growable buffer.

use bytes::BytesMut;
use may::net::TcpStream;
use std::io::{self, Read};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

/// TCP keepalive probing for a client connection: idle time before the first probe, then the
/// interval between probes.
#[derive(Clone, Copy, Debug)]
pub struct Keepalive {
    pub idle: Duration,
    pub interval: Duration,
}

/// Connects to `host:port` before `deadline`, trying each resolved address in turn, and sets
/// TCP_NODELAY (the clients batch their writes; Nagle would only delay each batch) and keepalive.
/// The error text names the target, for logs.
pub fn dial(
    host: &str,
    port: u16,
    deadline: Instant,
    keepalive: Keepalive,
) -> Result<TcpStream, String> {
    let target = format!("{host}:{port}");
    // Resolution blocks the worker thread: fine for IP literals and /etc/hosts names.
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {target}: {e}"))?
        .collect();
    let mut last = String::from("no address");
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            last = "connect timeout reached".into();
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => {
                return tune(stream, keepalive).map_err(|e| format!("cannot configure socket: {e}"))
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(format!("cannot connect to {target}: {last}"))
}

fn tune(stream: TcpStream, keepalive: Keepalive) -> io::Result<TcpStream> {
    let probes = socket2::TcpKeepalive::new()
        .with_time(keepalive.idle)
        .with_interval(keepalive.interval);
    stream.set_nodelay(true)?;
    socket2::SockRef::from(stream.inner()).set_tcp_keepalive(&probes)?;
    Ok(stream)
}

/// Reads what is available into the spare room of `buf`, growing it by `reserve_bytes` when less
/// than a quarter of that is free and zero-filling at most `chunk_bytes` first (safe code cannot
/// read into uninitialised memory).
pub fn read_into(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    reserve_bytes: usize,
    chunk_bytes: usize,
) -> io::Result<usize> {
    if buf.capacity() - buf.len() < reserve_bytes / 4 {
        buf.reserve(reserve_bytes);
    }
    let start = buf.len();
    let room = (buf.capacity() - start).min(chunk_bytes);
    buf.resize(start + room, 0);
    let read = stream.read(&mut buf[start..]);
    buf.truncate(start + *read.as_ref().unwrap_or(&0));
    read
}
