//! What a connection needs of its socket: reads and writes under timeouts, and a half-close. The
//! server's connections run on `may`'s TCP streams; the in-memory stream lets the whole
//! connection logic run on bytes, with no socket, for property tests and fuzzing.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::Duration;

pub(crate) trait Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()>;
    fn set_write_timeout(&mut self, timeout: Duration) -> io::Result<()>;
    /// No more output: the peer reads end of stream after what was written.
    fn shutdown_write(&mut self) -> io::Result<()>;
}

impl Transport for may::net::TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(self, buf)
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Write::write(self, buf)
    }

    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        may::net::TcpStream::set_read_timeout(self, Some(timeout))
    }

    fn set_write_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        may::net::TcpStream::set_write_timeout(self, Some(timeout))
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// A peer that sends `pieces` one read at a time (a read larger than the rest of a piece gets the
/// rest, never bytes of the next one), then closes; everything written to it is kept.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) struct MemoryStream<'a> {
    pieces: std::collections::VecDeque<&'a [u8]>,
    pub(crate) written: Vec<u8>,
}

#[cfg(any(test, feature = "fuzzing"))]
impl<'a> MemoryStream<'a> {
    pub(crate) fn new(pieces: &[&'a [u8]]) -> Self {
        MemoryStream {
            pieces: pieces.iter().copied().filter(|p| !p.is_empty()).collect(),
            written: Vec::new(),
        }
    }
}

#[cfg(any(test, feature = "fuzzing"))]
impl Transport for MemoryStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(piece) = self.pieces.front_mut() else {
            return Ok(0);
        };
        let n = piece.len().min(buf.len());
        buf[..n].copy_from_slice(&piece[..n]);
        *piece = &piece[n..];
        if piece.is_empty() {
            self.pieces.pop_front();
        }
        Ok(n)
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn set_read_timeout(&mut self, _: Duration) -> io::Result<()> {
        Ok(())
    }

    fn set_write_timeout(&mut self, _: Duration) -> io::Result<()> {
        Ok(())
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }
}
