//! A connection's read buffer: grows only as far as the request limits allow, shrinks back
//! after a large request, and can be released entirely while the connection is idle.

use super::{READ_BUFFER_INITIAL_BYTES, READ_BUFFER_MAX_BYTES};

#[derive(Debug, Default)]
pub(crate) struct ReadBuf {
    /// Always fully initialised; its length is the buffer's capacity.
    data: Vec<u8>,
    /// Unconsumed bytes are `data[start..end]`.
    start: usize,
    end: usize,
}

impl ReadBuf {
    /// Bytes received and not yet consumed.
    pub(crate) fn unparsed(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub(crate) fn unparsed_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Drops `n` bytes from the front of the unconsumed bytes.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Removes `range` (relative to the unconsumed bytes) from the buffer, moving what follows
    /// it down: decoded-past chunk framing.
    pub(crate) fn cut(&mut self, range: std::ops::Range<usize>) {
        let (from, to) = (self.start + range.start, self.start + range.end);
        debug_assert!(from <= to && to <= self.end);
        let to = to.min(self.end);
        let from = from.min(to);
        self.data.copy_within(to..self.end, from);
        self.end -= to - from;
    }

    /// Free space to read into, so that the unconsumed bytes can reach `want` bytes (or just
    /// some room when `want` is not known). `None` when the cap is reached.
    ///
    /// The buffer grows as bytes arrive, never to more than twice what it holds (or the initial
    /// size), whatever `want` says: a client that declares a 64 KiB body and sends a byte of it
    /// costs a few KiB, not 64.
    pub(crate) fn spare(&mut self, want: Option<usize>) -> Option<&mut [u8]> {
        let held = self.end - self.start;
        if held >= READ_BUFFER_MAX_BYTES {
            return None;
        }
        let step = (2 * held).clamp(READ_BUFFER_INITIAL_BYTES, READ_BUFFER_MAX_BYTES);
        let size = match want {
            Some(total) => total.clamp(held + 1, step),
            None => step,
        };
        let short = want.is_some() && self.data.len() - self.start < size;
        if short || self.end == self.data.len() {
            self.make_room(size);
        }
        Some(&mut self.data[self.end..])
    }

    /// Records `n` bytes read into the slice [`spare`](Self::spare) returned.
    pub(crate) fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.data.len());
        debug_assert!(self.start <= self.end);
        debug_assert!(self.end - self.start <= READ_BUFFER_MAX_BYTES);
    }

    /// Frees the allocation; only meaningful while nothing is buffered.
    pub(crate) fn release(&mut self) {
        if self.is_empty() {
            *self = ReadBuf::default();
        }
    }

    /// After a request that needed a large buffer, goes back to the initial size if what is
    /// left fits, so a connection does not keep the peak allocation.
    pub(crate) fn shrink(&mut self) {
        let held = self.end - self.start;
        if self.data.len() > READ_BUFFER_INITIAL_BYTES && held <= READ_BUFFER_INITIAL_BYTES {
            let mut data = vec![0; READ_BUFFER_INITIAL_BYTES];
            data[..held].copy_from_slice(self.unparsed());
            *self = ReadBuf {
                data,
                start: 0,
                end: held,
            };
        }
    }

    /// The whole allocation as scratch space for discarding input; forgets buffered bytes.
    pub(crate) fn scratch(&mut self) -> &mut [u8] {
        self.start = 0;
        self.end = 0;
        if self.data.is_empty() {
            self.data = vec![0; READ_BUFFER_INITIAL_BYTES];
        }
        &mut self.data
    }

    /// Moves the unconsumed bytes to the front and grows the buffer to `size` if it is smaller.
    fn make_room(&mut self, size: usize) {
        self.data.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.data.len() < size {
            self.data.resize(size, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(buf: &mut ReadBuf, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let spare = buf.spare(None).expect("room");
            let n = bytes.len().min(spare.len());
            spare[..n].copy_from_slice(&bytes[..n]);
            buf.commit(n);
            bytes = &bytes[n..];
        }
    }

    #[test]
    fn starts_empty_and_allocates_the_initial_size() {
        let mut buf = ReadBuf::default();
        assert_eq!(buf.capacity(), 0);
        fill(&mut buf, b"GET / HTTP/1.1\r\n");
        assert_eq!(buf.capacity(), READ_BUFFER_INITIAL_BYTES);
        assert_eq!(buf.unparsed(), b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn never_grows_past_the_cap() {
        let mut buf = ReadBuf::default();
        let chunk = vec![b'x'; 10_000];
        while let Some(spare) = buf.spare(None) {
            let n = spare.len().min(chunk.len());
            spare[..n].copy_from_slice(&chunk[..n]);
            buf.commit(n);
        }
        assert_eq!(buf.capacity(), READ_BUFFER_MAX_BYTES);
        assert_eq!(buf.unparsed().len(), READ_BUFFER_MAX_BYTES);
    }

    #[test]
    fn grows_with_what_arrives_not_with_what_is_announced() {
        let mut buf = ReadBuf::default();
        fill(&mut buf, b"head");
        buf.spare(Some(50_000)).expect("room");
        assert_eq!(buf.capacity(), READ_BUFFER_INITIAL_BYTES);
        let mut held = 4;
        while held < 50_000 {
            let spare = buf.spare(Some(50_000)).expect("room");
            let n = spare.len().min(50_000 - held);
            spare[..n].fill(b'x');
            buf.commit(n);
            held += n;
            assert!(buf.capacity() <= (2 * held).max(READ_BUFFER_INITIAL_BYTES));
        }
        assert_eq!(buf.unparsed().len(), 50_000);
    }

    #[test]
    fn partial_reads_never_grow_it_past_twice_what_it_holds() {
        let mut buf = ReadBuf::default();
        fill(&mut buf, &[b'x'; 2049]);
        assert_eq!(buf.capacity(), READ_BUFFER_INITIAL_BYTES);
        buf.spare(Some(65_536)).expect("room");
        assert!(buf.capacity() <= 2 * 2049, "{}", buf.capacity());
        fill(&mut buf, &[b'y'; 100]);
        buf.spare(Some(65_536)).expect("room");
        assert!(buf.capacity() <= 2 * 2149, "{}", buf.capacity());
    }

    #[test]
    fn cut_removes_a_middle_range() {
        let mut buf = ReadBuf::default();
        fill(&mut buf, b"..head|framing|body|next");
        buf.consume(2);
        buf.cut(5..13);
        assert_eq!(buf.unparsed(), b"head|body|next");
        buf.cut(0..0);
        assert_eq!(buf.unparsed(), b"head|body|next");
    }

    #[test]
    fn consuming_everything_rewinds_and_compaction_keeps_bytes() {
        let mut buf = ReadBuf::default();
        fill(&mut buf, &vec![b'a'; READ_BUFFER_INITIAL_BYTES]);
        buf.consume(READ_BUFFER_INITIAL_BYTES - 3);
        fill(&mut buf, b"bcd");
        assert_eq!(buf.unparsed(), b"aaabcd");
        buf.consume(6);
        assert!(buf.is_empty());
    }

    #[test]
    fn shrinks_after_a_large_request_and_releases_when_idle() {
        let mut buf = ReadBuf::default();
        fill(&mut buf, &vec![b'x'; 30_000]);
        assert!(buf.capacity() >= 30_000);
        buf.consume(29_999);
        buf.shrink();
        assert_eq!(buf.capacity(), READ_BUFFER_INITIAL_BYTES);
        assert_eq!(buf.unparsed(), b"x");
        buf.consume(1);
        buf.release();
        assert_eq!(buf.capacity(), 0);
    }
}
