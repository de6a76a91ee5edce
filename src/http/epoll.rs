//! The few epoll calls the layer's own watch sets make (the parking lot, the stream watch):
//! instances that one coroutine of a worker waits on through may, and that are asked without
//! waiting what is ready.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Readable, or the peer hung up: what both watch sets always watch for.
pub(super) const READABLE: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;

/// The socket can take more bytes.
pub(super) const WRITABLE: u32 = libc::EPOLLOUT as u32;

/// A new epoll instance.
pub(super) fn create() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall without pointers.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds, changes (level-triggered, for `events`) or removes `fd` in `epoll`.
pub(super) fn ctl(
    epoll: &OwnedFd,
    op: libc::c_int,
    fd: RawFd,
    token: u64,
    events: u32,
) -> io::Result<()> {
    let mut event = libc::epoll_event { events, u64: token };
    // SAFETY: plain syscall; `event` outlives the call and is only read by it.
    let rc = unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd, &mut event) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Fills `events` with what is ready now, never waiting; the count filled.
pub(super) fn ready_now(epoll: &OwnedFd, events: &mut [libc::epoll_event]) -> usize {
    let max = i32::try_from(events.len()).unwrap_or(i32::MAX);
    loop {
        // SAFETY: `events` is writable for `max` entries; timeout 0 never blocks.
        let n = unsafe { libc::epoll_wait(epoll.as_raw_fd(), events.as_mut_ptr(), max, 0) };
        if n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return usize::try_from(n).unwrap_or(0);
        }
    }
}
