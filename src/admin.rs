//! The admin listener: `GET /metrics` on its own address, served by one plain OS thread with
//! blocking sockets, away from the workers and their coroutines.
//!
//! Scrapes are rare (every few seconds) and come from a handful of collectors, so connections
//! are answered one at a time and closed after each answer; the read and write timeouts bound how
//! long a stuck client can keep the next one waiting. Nothing here runs on a worker: a scrape
//! only reads the workers' atomics.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::metrics::{render, Gauges, ProcessStats, Registry, CONTENT_TYPE};

/// Largest request head read. A scrape's head is a few hundred bytes; 8 KiB bounds what a stray
/// client can make the thread buffer.
pub const ADMIN_MAX_REQUEST_BYTES: usize = 8 * 1024;

/// Most header lines parsed in a request; collectors send fewer than ten.
pub const ADMIN_MAX_HEADERS: usize = 32;

/// Time allowed for a whole request head to arrive, however it trickles in. Connections are served
/// one at a time, so this is also the longest a slow or silent client delays the next scrape;
/// collectors send at once.
pub const ADMIN_READ_TIMEOUT_MILLIS: u64 = 2000;

/// Time allowed to hand a response to the kernel, for the same reason as the read timeout.
pub const ADMIN_WRITE_TIMEOUT_MILLIS: u64 = 2000;

/// Pause after `accept` fails for lack of descriptors or memory, so the thread does not spin
/// while the condition lasts.
pub const ADMIN_ACCEPT_BACKOFF_MILLIS: u64 = 100;

/// The bound admin socket, not yet serving: bound early so a taken address stops start-up before
/// anything else is started, served once the public listener (whose connection counts it shows)
/// exists.
pub struct AdminListener {
    listener: TcpListener,
}

/// Binds the admin address.
pub fn bind(addr: SocketAddr) -> io::Result<AdminListener> {
    Ok(AdminListener {
        listener: TcpListener::bind(addr)?,
    })
}

impl AdminListener {
    /// The bound address (with the actual port when port 0 was asked for).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves scrapes on a thread of its own for the rest of the process. `gauges` gives, at
    /// scrape time, the public listener's open connections per worker and the open streams.
    pub fn serve(
        self,
        registry: &'static Registry,
        gauges: impl Fn() -> Gauges + Send + 'static,
    ) -> io::Result<()> {
        std::thread::Builder::new()
            .name("gavel-admin".into())
            .spawn(move || loop {
                match self.listener.accept() {
                    Ok((stream, _)) => {
                        // A client that vanished mid-answer only ends its own connection.
                        let _ = answer(stream, registry, &gauges);
                    }
                    Err(e) if is_resource_shortage(&e) => {
                        std::thread::sleep(Duration::from_millis(ADMIN_ACCEPT_BACKOFF_MILLIS));
                    }
                    Err(_) => {}
                }
            })
            .map(drop)
    }
}

fn is_resource_shortage(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// What the request asked for, as far as this listener cares.
#[derive(Debug, PartialEq, Eq)]
enum Ask {
    Metrics { head_only: bool },
    WrongMethod,
    NotFound,
    Malformed,
}

fn answer(
    mut stream: TcpStream,
    registry: &Registry,
    gauges: &dyn Fn() -> Gauges,
) -> io::Result<()> {
    stream.set_write_timeout(Some(Duration::from_millis(ADMIN_WRITE_TIMEOUT_MILLIS)))?;
    let deadline = Instant::now() + Duration::from_millis(ADMIN_READ_TIMEOUT_MILLIS);
    let ask = read_request(&mut stream, deadline)?;
    let response = match ask {
        Ask::Metrics { head_only } => {
            let mut snapshot = registry.snapshot();
            let now = gauges();
            snapshot.open_connections = now.open_connections;
            snapshot.open_streams = now.open_streams;
            snapshot.process = Some(process_stats());
            let body = render(&snapshot, env!("CARGO_PKG_VERSION"));
            respond("200 OK", CONTENT_TYPE, &[], body.as_bytes(), head_only)
        }
        Ask::WrongMethod => respond(
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            &[("Allow", "GET, HEAD")],
            b"method not allowed\n",
            false,
        ),
        Ask::NotFound => respond(
            "404 Not Found",
            "text/plain; charset=utf-8",
            &[],
            b"not found; metrics are at /metrics\n",
            false,
        ),
        Ask::Malformed => respond(
            "400 Bad Request",
            "text/plain; charset=utf-8",
            &[],
            b"bad request\n",
            false,
        ),
    };
    stream.write_all(&response)?;
    stream.flush()
}

/// Reads until a whole head has arrived, the size bound or the deadline is reached, or the client
/// stops.
fn read_request(stream: &mut TcpStream, deadline: Instant) -> io::Result<Ask> {
    let mut buf = vec![0u8; ADMIN_MAX_REQUEST_BYTES];
    let mut filled = 0;
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(io::ErrorKind::TimedOut)?;
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut buf[filled..])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        filled += n;
        match classify(&buf[..filled]) {
            Some(ask) => return Ok(ask),
            None if filled == buf.len() => return Ok(Ask::Malformed),
            None => {}
        }
    }
}

/// What a request head asks for; `None` while it is incomplete.
fn classify(head: &[u8]) -> Option<Ask> {
    let mut headers = [httparse::EMPTY_HEADER; ADMIN_MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Partial) => None,
        Err(_) => Some(Ask::Malformed),
        Ok(httparse::Status::Complete(_)) => {
            let path = req.path.unwrap_or("");
            let path = path.split('?').next().unwrap_or(path);
            Some(match (path, req.method.unwrap_or("")) {
                ("/metrics", "GET") => Ask::Metrics { head_only: false },
                ("/metrics", "HEAD") => Ask::Metrics { head_only: true },
                ("/metrics", _) => Ask::WrongMethod,
                _ => Ask::NotFound,
            })
        }
    }
}

fn respond(
    status: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// The process's memory and descriptors, from `/proc` and `getrlimit`; what cannot be read is
/// left out.
fn process_stats() -> ProcessStats {
    ProcessStats {
        resident_memory_bytes: resident_memory_bytes(),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            // The directory handle reading it is one of the entries; it is not the process's.
            .map(|dir| (dir.count() as u64).saturating_sub(1)),
        max_fds: max_fds(),
    }
}

fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages = parse_statm_resident(&statm)?;
    // SAFETY: sysconf only reads a system constant.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page_size).ok().map(|size| pages * size)
}

/// The resident page count: the second field of `/proc/self/statm`.
fn parse_statm_resident(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

fn max_fds() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    ok.then_some(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_metrics_is_served() {
        let ask = |head: &str| classify(head.as_bytes());
        assert_eq!(
            ask("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(Ask::Metrics { head_only: false })
        );
        assert_eq!(
            ask("GET /metrics?name[]=x HTTP/1.0\r\n\r\n"),
            Some(Ask::Metrics { head_only: false })
        );
        assert_eq!(
            ask("HEAD /metrics HTTP/1.1\r\n\r\n"),
            Some(Ask::Metrics { head_only: true })
        );
        assert_eq!(
            ask("POST /metrics HTTP/1.1\r\n\r\n"),
            Some(Ask::WrongMethod)
        );
        assert_eq!(ask("GET / HTTP/1.1\r\n\r\n"), Some(Ask::NotFound));
        assert_eq!(ask("GET /metrics HTTP/1.1\r\nHost"), None);
        assert_eq!(ask("\x01\x02 nonsense\r\n\r\n"), Some(Ask::Malformed));
    }

    #[test]
    fn responses_are_framed_and_closed() {
        let r = respond("200 OK", "text/plain", &[("Allow", "GET")], b"abc", false);
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\nAllow: GET\r\n\r\nabc"
        );
        let r = respond("200 OK", "text/plain", &[], b"abc", true);
        assert!(r.ends_with(b"Content-Length: 3\r\nConnection: close\r\n\r\n"));
    }

    #[test]
    fn statm() {
        assert_eq!(parse_statm_resident("1000 250 30 4 0 100 0\n"), Some(250));
        assert_eq!(parse_statm_resident("1000"), None);
        assert!(process_stats().resident_memory_bytes.unwrap_or(0) > 0);
    }
}
