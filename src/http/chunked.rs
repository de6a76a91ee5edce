//! Chunked transfer coding (RFC 9112 §7.1), decoded in place.
//!
//! The decoder works on the buffer region that starts at the body: decoded bytes are moved down
//! over the chunk framing already consumed, and the caller cuts the framing it has passed out of
//! its buffer ([`ChunkedDecoder::take_spent`]), so the buffer holds the decoded body plus one
//! partial line, never the (possibly much larger) raw encoding. The body limit counts decoded
//! bytes; the framing has a limit of its own.

use super::head::is_token_byte;
use super::message::HttpError;
use std::ops::Range;

use super::{MAX_BODY_BYTES, MAX_CHUNK_FRAMING_BYTES, MAX_CHUNK_LINE_BYTES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    SizeLine,
    Data { left: usize },
    DataEnd,
    Trailers,
    Done,
}

/// Incremental in-place decoder for one chunked body.
#[derive(Debug)]
pub(crate) struct ChunkedDecoder {
    state: State,
    /// Raw bytes consumed, counted from the body start.
    read: usize,
    /// Decoded bytes, stored at the body start.
    written: usize,
    /// How far the current line has been searched for its LF (relative to `read`).
    line_scanned: usize,
    /// Chunk framing received so far: size lines and the CRLF after each chunk's data.
    framing: usize,
    /// Header-section bytes and lines the trailers may still use.
    trailer_bytes_left: usize,
    trailer_lines_left: usize,
}

impl ChunkedDecoder {
    /// A decoder whose trailers may use what the head left of the header limits.
    pub(crate) fn new(trailer_bytes_left: usize, trailer_lines_left: usize) -> Self {
        ChunkedDecoder {
            state: State::SizeLine,
            read: 0,
            written: 0,
            line_scanned: 0,
            framing: 0,
            trailer_bytes_left,
            trailer_lines_left,
        }
    }

    /// Decoded body length so far.
    pub(crate) fn decoded_len(&self) -> usize {
        self.written
    }

    /// Raw bytes consumed and not yet handed out by [`take_spent`](Self::take_spent), i.e. the
    /// length the encoded body occupies in the caller's buffer once done.
    pub(crate) fn raw_len(&self) -> usize {
        self.read
    }

    /// The framing decoded past since the last call, as a range of the body region: those
    /// bytes are no longer needed, and the caller removes them from its buffer (moving what
    /// follows down) before it passes the body region again.
    pub(crate) fn take_spent(&mut self) -> Range<usize> {
        let spent = self.written..self.read;
        self.read = self.written;
        spent
    }

    /// Decodes what `body` (the buffer from the body's first byte to the end of received data)
    /// allows. Returns true once the last chunk and trailers have been consumed.
    pub(crate) fn decode(&mut self, body: &mut [u8]) -> Result<bool, HttpError> {
        loop {
            let progressed = match self.state {
                State::SizeLine => self.size_line(body)?,
                State::Data { left } => self.data(body, left),
                State::DataEnd => self.data_end(body)?,
                State::Trailers => self.trailer_line(body)?,
                State::Done => return Ok(true),
            };
            if !progressed {
                return Ok(false);
            }
        }
    }

    fn size_line(&mut self, body: &[u8]) -> Result<bool, HttpError> {
        let start = self.read;
        let Some(line) = self.take_line(body, MAX_CHUNK_LINE_BYTES)? else {
            return Ok(false);
        };
        let size = parse_size_line(line)?;
        self.add_framing(self.read - start)?;
        if size > MAX_BODY_BYTES - self.written {
            return Err(HttpError::PayloadTooLarge);
        }
        self.state = match size {
            0 => State::Trailers,
            left => State::Data { left },
        };
        Ok(true)
    }

    fn data(&mut self, body: &mut [u8], left: usize) -> bool {
        let n = left.min(body.len() - self.read);
        if n == 0 {
            return false;
        }
        body.copy_within(self.read..self.read + n, self.written);
        self.read += n;
        self.written += n;
        self.state = match left - n {
            0 => State::DataEnd,
            left => State::Data { left },
        };
        true
    }

    fn data_end(&mut self, body: &[u8]) -> Result<bool, HttpError> {
        match body.get(self.read..self.read + 2) {
            Some(b"\r\n") => {
                self.read += 2;
                self.add_framing(2)?;
                self.state = State::SizeLine;
                Ok(true)
            }
            Some(_) => Err(HttpError::BadRequest("chunk data not followed by CRLF")),
            None if body.get(self.read).is_some_and(|&b| b != b'\r') => {
                Err(HttpError::BadRequest("chunk data not followed by CRLF"))
            }
            None => Ok(false),
        }
    }

    fn add_framing(&mut self, n: usize) -> Result<(), HttpError> {
        self.framing += n;
        if self.framing > MAX_CHUNK_FRAMING_BYTES {
            return Err(HttpError::BadRequest("too much chunk framing for the body"));
        }
        Ok(())
    }

    fn trailer_line(&mut self, body: &[u8]) -> Result<bool, HttpError> {
        let start = self.read;
        // The CRLF ending the body is not a trailer: it fits even when the budget is spent.
        let Some(line) = self.take_line(body, self.trailer_bytes_left.max(2))? else {
            return Ok(false);
        };
        if line.is_empty() {
            self.state = State::Done;
            return Ok(true);
        }
        validate_trailer(line)?;
        self.trailer_bytes_left = self.trailer_bytes_left.saturating_sub(self.read - start);
        if self.trailer_lines_left == 0 {
            return Err(HttpError::HeadersTooLarge);
        }
        self.trailer_lines_left -= 1;
        Ok(true)
    }

    /// Takes the next CRLF-terminated line (without CRLF) if complete. A line that cannot end
    /// within `limit` bytes (CRLF included) is refused: an oversized chunk-size line is malformed,
    /// oversized trailers exceed the header budget.
    fn take_line<'b>(
        &mut self,
        body: &'b [u8],
        limit: usize,
    ) -> Result<Option<&'b [u8]>, HttpError> {
        let rest = &body[self.read..];
        let from = self.line_scanned.min(rest.len());
        let Some(lf) = rest[from..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| i + from)
        else {
            self.line_scanned = rest.len();
            return if rest.len() >= limit {
                Err(self.line_too_long())
            } else {
                Ok(None)
            };
        };
        if lf + 1 > limit {
            return Err(self.line_too_long());
        }
        let Some(line) = rest[..lf].strip_suffix(b"\r") else {
            return Err(HttpError::BadRequest("chunked line not terminated by CRLF"));
        };
        self.read += lf + 1;
        self.line_scanned = 0;
        Ok(Some(line))
    }

    fn line_too_long(&self) -> HttpError {
        match self.state {
            State::Trailers => HttpError::HeadersTooLarge,
            _ => HttpError::BadRequest("chunk size line too long"),
        }
    }
}

/// `1*HEXDIG [ BWS ";" extensions ]`; extensions are ignored but must not contain control bytes.
/// A size too large to represent is certainly over the body limit.
fn parse_size_line(line: &[u8]) -> Result<usize, HttpError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(HttpError::BadRequest("missing chunk size"));
    }
    let size = line[..digits].iter().try_fold(0usize, |acc, &b| {
        let d = (b as char).to_digit(16).unwrap_or(0) as usize;
        acc.checked_mul(16)
            .and_then(|v| v.checked_add(d))
            .ok_or(HttpError::PayloadTooLarge)
    })?;
    let ext = super::head::trim_ows(&line[digits..]);
    if !(ext.is_empty() || ext[0] == b';') {
        return Err(HttpError::BadRequest("invalid chunk size"));
    }
    if ext.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(HttpError::BadRequest("invalid byte in chunk extension"));
    }
    Ok(size)
}

/// `field-name ":" field-value` with a token name and no control bytes; trailers are otherwise
/// ignored.
fn validate_trailer(line: &[u8]) -> Result<(), HttpError> {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Err(HttpError::BadRequest("malformed trailer"));
    };
    let name_ok = colon > 0 && line[..colon].iter().all(|&b| is_token_byte(b));
    let value_ok = line[colon + 1..]
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f));
    if name_ok && value_ok {
        Ok(())
    } else {
        Err(HttpError::BadRequest("malformed trailer"))
    }
}

#[cfg(test)]
#[path = "chunked_tests.rs"]
mod tests;
