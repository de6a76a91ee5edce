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

    /// Free space to read into, so that the unconsumed bytes can reach at least `want` bytes
    /// (or just some room when `want` is not known). `None` when the cap is reached.
    pub(crate) fn spare(&mut self, want: Option<usize>) -> Option<&mut [u8]> {
        let held = self.end - self.start;
        let want = want.unwrap_or(0).max(held + 1).min(READ_BUFFER_MAX_BYTES);
        if held >= READ_BUFFER_MAX_BYTES {
            return None;
        }
        if self.data.len() - self.start < want || self.end == self.data.len() {
            self.make_room(want);
        }
        Some(&mut self.data[self.end..])
    }

    /// Records `n` bytes read into the slice [`spare`](Self::spare) returned.
    pub(crate) fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.data.len());
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

    /// Moves the unconsumed bytes to the front and grows (doubling, capped) until `want`
    /// bytes fit with room to spare.
    fn make_room(&mut self, want: usize) {
        self.data.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        let mut cap = self.data.len().max(READ_BUFFER_INITIAL_BYTES);
        while cap < want || cap == self.end {
            cap = (cap * 2).min(READ_BUFFER_MAX_BYTES);
            if cap == READ_BUFFER_MAX_BYTES {
                break;
            }
        }
        if cap > self.data.len() {
            self.data.resize(cap, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(buf: &mut ReadBuf, bytes: &[u8]) {
        let spare = buf.spare(None).expect("room");
        let n = bytes.len().min(spare.len());
        spare[..n].copy_from_slice(&bytes[..n]);
        buf.commit(n);
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
    fn grows_to_a_known_total_at_once() {
        let mut buf = ReadBuf::default();
        fill(&mut buf, b"head");
        let spare = buf.spare(Some(50_000)).expect("room").len();
        assert!(spare + 4 >= 50_000);
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
        fill(&mut buf, b"x");
        buf.spare(Some(40_000));
        assert!(buf.capacity() >= 40_000);
        buf.shrink();
        assert_eq!(buf.capacity(), READ_BUFFER_INITIAL_BYTES);
        assert_eq!(buf.unparsed(), b"x");
        buf.consume(1);
        buf.release();
        assert_eq!(buf.capacity(), 0);
    }
}
