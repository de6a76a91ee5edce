//! Open streams: responses whose body goes on after the service answered (Server-Sent Events).
//!
//! A service asks for one with [`Response::stream`](super::Response::stream). The connection
//! writes the head (chunked for HTTP/1.1, close-delimited for HTTP/1.0) and the body given so
//! far, then hands its socket to [`Service::adopt`](super::Service::adopt) as an [`OpenStream`]
//! and its coroutine ends: a quiet stream costs a socket and a few words, like a parked
//! connection, and no stack.
//!
//! Whoever holds the stream sends to it without ever waiting: [`OpenStream::send`] hands the
//! kernel what it takes now and keeps the rest, at most [`MAX_STREAM_PENDING_BYTES`]; past that
//! the subscriber is not reading and is cut off. A [`StreamWatch`] (one epoll instance per
//! worker, waited on through may like a parking lot) says when a stream's peer hung up or sent
//! input (which ends it: a stream's connection carries no further request) and when a stream with
//! pending bytes can take more. Shutdown wakes streams as it wakes idle connections: their read
//! side is shut, the watch reports them, and the holder ends them.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use may::io::CoIo;

use super::epoll;
use super::shared::Tracked;
use crate::placement::dup_for_worker;

/// Most bytes a stream keeps that the kernel would not take yet (beyond the socket's own send
/// buffer, [`STREAM_SEND_BUFFER_BYTES`]). 64 KiB is about a hundred bid events: a subscriber that
/// far behind has stopped reading, and holding more for it would let one stalled client grow the
/// server's memory without bound. It is cut off and resumes with `Last-Event-ID`.
pub const MAX_STREAM_PENDING_BYTES: usize = 64 * 1024;

/// The send buffer asked of the kernel for each stream's socket (it doubles what it is asked).
/// Events are small and a reading subscriber drains them at once; left to autotuning, 10 000
/// streams could each hold megabytes of kernel memory for subscribers that stopped reading. With
/// this, one that stopped costs at most 32 KiB of kernel memory and `MAX_STREAM_PENDING_BYTES`
/// of ours before it is cut off.
pub const STREAM_SEND_BUFFER_BYTES: usize = 16 * 1024;

/// Most input bytes read to tell a hang-up from input, per readiness report.
const PEEK_BYTES: usize = 64;

/// Streams reported per [`StreamWatch::ready`] call.
pub const READY_BATCH_EVENTS: usize = 64;

/// The subscriber is gone, misbehaved, or fell too far behind: drop the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut;

/// Whether everything sent so far is with the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Nothing pending.
    Done,
    /// Bytes are pending: watch for writability ([`StreamWatch::want_write`]).
    Pending,
}

/// What a [`StreamWatch`] reported for one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    pub token: u64,
    /// The peer hung up, sent input, or the server is shutting down: end the stream.
    pub ended: bool,
    /// The socket can take more bytes.
    pub writable: bool,
}

/// One open stream: the connection's socket and bookkeeping, and the bytes not yet sent.
pub struct OpenStream {
    tracked: Tracked,
    chunked: bool,
    pending: Vec<u8>,
}

impl OpenStream {
    /// Takes over a connection whose response head and first bytes are written. It counts as
    /// idle for shutdown, which then shuts its read side: the holder's watch reports it ended.
    pub(super) fn new(tracked: Tracked, chunked: bool) -> OpenStream {
        tracked
            .membership
            .slot
            .idle
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = socket2::SockRef::from(tracked.stream.inner())
            .set_send_buffer_size(STREAM_SEND_BUFFER_BYTES);
        OpenStream {
            tracked,
            chunked,
            pending: Vec::new(),
        }
    }

    /// The server is shutting down: end the stream (flag set before the read side is shut, so a
    /// holder woken by that sees it).
    pub fn draining(&self) -> bool {
        self.tracked.membership.shared.draining()
    }

    /// Sends `data` as the stream's next bytes, without waiting.
    pub fn send(&mut self, data: &[u8]) -> Result<Sent, Cut> {
        if data.is_empty() {
            return Ok(self.state());
        }
        let mut size = [0u8; 18];
        let head = self.chunk_head(&mut size, data.len());
        let tail: &[u8] = if self.chunked { b"\r\n" } else { b"" };
        if !self.pending.is_empty() {
            self.flush()?;
        }
        if self.pending.is_empty() {
            let written = send_parts(self.fd(), &[head, data, tail])?;
            let mut skip = written;
            for part in [head, data, tail] {
                let taken = skip.min(part.len());
                skip -= taken;
                self.keep(&part[taken..])?;
            }
        } else {
            for part in [head, data, tail] {
                self.keep(part)?;
            }
        }
        Ok(self.state())
    }

    /// Sends what is pending, without waiting (the socket became writable).
    pub fn flush(&mut self) -> Result<Sent, Cut> {
        if !self.pending.is_empty() {
            let written = send_parts(self.fd(), &[&self.pending])?;
            self.pending.drain(..written);
            if self.pending.is_empty() {
                // A stream that caught up holds no buffer while quiet.
                self.pending = Vec::new();
            }
        }
        Ok(self.state())
    }

    /// Sends `data` and the end of the body, as far as the kernel takes them now, and closes.
    pub fn end(mut self, data: &[u8]) {
        if self.send(data).is_ok() && self.chunked {
            let _ = self.keep_or_send(b"0\r\n\r\n");
        }
        let _ = self.flush();
    }

    /// Whether the peer hung up or sent input (read, at most [`PEEK_BYTES`], and dropped).
    pub fn peer_ended(&self) -> bool {
        let mut buf = [0u8; PEEK_BYTES];
        // SAFETY: `buf` is writable for its length; the fd is this stream's open socket.
        let n = unsafe {
            libc::recv(
                self.fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            );
        }
        true
    }

    pub fn fd(&self) -> RawFd {
        self.tracked.stream.as_raw_fd()
    }

    /// Bytes waiting for the kernel.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    fn keep_or_send(&mut self, data: &[u8]) -> Result<(), Cut> {
        if self.pending.is_empty() {
            let written = send_parts(self.fd(), &[data])?;
            return self.keep(&data[written..]);
        }
        self.keep(data)
    }

    fn keep(&mut self, rest: &[u8]) -> Result<(), Cut> {
        if self.pending.len() + rest.len() > MAX_STREAM_PENDING_BYTES {
            return Err(Cut);
        }
        self.pending.extend_from_slice(rest);
        Ok(())
    }

    fn state(&self) -> Sent {
        if self.pending.is_empty() {
            Sent::Done
        } else {
            Sent::Pending
        }
    }

    fn chunk_head<'b>(&self, buf: &'b mut [u8; 18], len: usize) -> &'b [u8] {
        if !self.chunked {
            return &buf[..0];
        }
        let n = write_chunk_size(buf, len);
        &buf[..n]
    }
}

/// Writes `len` in hex followed by CRLF into `buf`; returns the bytes used.
/// Without allocating: it runs for every event sent to every stream.
fn write_chunk_size(buf: &mut [u8; 18], len: usize) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    for i in 0..digits {
        buf[digits - 1 - i] = HEX[(len >> (4 * i)) & 0xf];
    }
    buf[digits..digits + 2].copy_from_slice(b"\r\n");
    digits + 2
}

/// Appends `data` to `out` as one chunk of a chunked body.
pub(crate) fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut buf = [0u8; 18];
    let n = write_chunk_size(&mut buf, data.len());
    out.extend_from_slice(&buf[..n]);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Hands the kernel as much of `parts` as it takes now; the byte count taken. A peer that is
/// gone, or any error but "would block", is a [`Cut`].
fn send_parts(fd: RawFd, parts: &[&[u8]]) -> Result<usize, Cut> {
    let mut iov: [libc::iovec; 3] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 3];
    let mut count = 0;
    for part in parts.iter().filter(|p| !p.is_empty()).take(3) {
        iov[count] = libc::iovec {
            iov_base: part.as_ptr() as *mut libc::c_void,
            iov_len: part.len(),
        };
        count += 1;
    }
    if count == 0 {
        return Ok(0);
    }
    loop {
        // SAFETY: `msg` points at `count` iovecs over live slices that the kernel only reads.
        let n = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = count as _;
            libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        match io::Error::last_os_error().kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(0),
            _ => return Err(Cut),
        }
    }
}

/// One worker's watch over its open streams: an epoll instance its holder waits on through may.
pub struct StreamWatch {
    epoll: OwnedFd,
}

impl StreamWatch {
    pub fn new() -> io::Result<StreamWatch> {
        Ok(StreamWatch {
            epoll: epoll::create()?,
        })
    }

    /// A may IO handle on the watch: waiting on it wakes when a stream is ready, and resumes the
    /// waiter on `worker`.
    pub fn waiter(&self, worker: usize) -> io::Result<CoIo<OwnedFd>> {
        Ok(CoIo::new(dup_for_worker(self.epoll.as_raw_fd(), worker)?)?)
    }

    /// Starts watching `stream` for its end, reported with `token`.
    pub fn add(&self, stream: &OpenStream, token: u64) -> io::Result<()> {
        epoll::ctl(
            &self.epoll,
            libc::EPOLL_CTL_ADD,
            stream.fd(),
            token,
            epoll::READABLE,
        )
    }

    /// Also watches for writability (while bytes are pending), or stops doing so.
    pub fn want_write(&self, stream: &OpenStream, token: u64, on: bool) -> io::Result<()> {
        let events = epoll::READABLE | if on { epoll::WRITABLE } else { 0 };
        epoll::ctl(&self.epoll, libc::EPOLL_CTL_MOD, stream.fd(), token, events)
    }

    /// Stops watching `stream` (before it is dropped or ended).
    pub fn remove(&self, stream: &OpenStream) {
        let _ = epoll::ctl(&self.epoll, libc::EPOLL_CTL_DEL, stream.fd(), 0, 0);
    }

    /// Streams ready now, at most [`READY_BATCH_EVENTS`]; never waits. Readiness is
    /// level-triggered: a stream still ready after its report is handled is reported again, so
    /// the holder handles each batch before asking for the next one.
    pub fn ready(&self) -> Vec<Ready> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; READY_BATCH_EVENTS];
        let n = epoll::ready_now(&self.epoll, &mut events);
        let ended = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        events[..n]
            .iter()
            .map(|e| Ready {
                token: e.u64,
                ended: e.events & ended != 0,
                writable: e.events & libc::EPOLLOUT as u32 != 0,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_framed_with_hex_sizes() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"");
        assert!(out.is_empty(), "an empty chunk would end the body");
        write_chunk(&mut out, &[b'x'; 26]);
        assert_eq!(&out[..4], b"1a\r\n");
        assert!(out.ends_with(b"x\r\n"));
        for len in [1, 9, 15, 16, 255, 4096, 65_535, usize::MAX] {
            let mut buf = [0u8; 18];
            let n = write_chunk_size(&mut buf, len);
            assert_eq!(&buf[..n], format!("{len:x}\r\n").as_bytes(), "{len}");
        }
    }
}
