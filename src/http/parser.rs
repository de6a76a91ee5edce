//! One request at a time out of a connection's unparsed bytes: head, then body, without IO.
//!
//! The connection calls [`RequestParser::advance`] after every read with the bytes not yet
//! consumed; positions are relative to the start of those bytes, so the caller may move them
//! (compact or grow its buffer) between calls.

use std::ops::Range;

use super::chunked::ChunkedDecoder;
use super::head::{downgrade_minor_version, parse_head, Framing, Head, HeadScanner};
use super::message::HttpError;
use super::{MAX_HEADER_BYTES, MAX_HEADER_LINES};

/// What the parser needs next, or the request it completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Progress {
    /// More bytes of the head.
    NeedHead,
    /// More bytes of the body; `total` is the buffer length that will complete it, when known.
    NeedBody { total: Option<usize> },
    /// A whole request: its body sits at `body`, and it occupies `len` bytes of the buffer.
    Complete { body: Range<usize>, len: usize },
}

#[derive(Debug)]
enum Body {
    Length {
        start: usize,
        end: usize,
    },
    Chunked {
        start: usize,
        decoder: ChunkedDecoder,
    },
}

#[derive(Debug, Default)]
pub(crate) struct RequestParser {
    scanner: HeadScanner,
    head: Option<(Head, Body)>,
}

impl RequestParser {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Forgets the request parsed last, ready for the next one.
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }

    /// Whether a byte of the current request has been seen.
    pub(crate) fn started(&self) -> bool {
        self.scanner.started() || self.head.is_some()
    }

    /// The head of the current request, once parsed.
    pub(crate) fn head(&self) -> Option<&Head> {
        self.head.as_ref().map(|(head, _)| head)
    }

    /// Chunk framing of the current body already decoded past, as a range of the buffer last
    /// given to [`advance`](Self::advance). The caller removes it from its buffer before the next
    /// call, so a chunked body costs its decoded size, not its size on the wire.
    pub(crate) fn take_spent(&mut self) -> Option<Range<usize>> {
        match &mut self.head {
            Some((_, Body::Chunked { start, decoder })) => {
                let spent = decoder.take_spent();
                (!spent.is_empty()).then(|| *start + spent.start..*start + spent.end)
            }
            _ => None,
        }
    }

    /// Advances over `buf`, the connection's unconsumed bytes starting at this request. A
    /// chunked body is decoded in place, so `buf` is modified.
    pub(crate) fn advance(&mut self, buf: &mut [u8]) -> Result<Progress, HttpError> {
        if self.head.is_none() {
            let Some(len) = self.scanner.scan(buf)? else {
                return Ok(Progress::NeedHead);
            };
            downgrade_minor_version(&mut buf[self.scanner.request_line()]);
            let head = parse_head(buf, len)?;
            let body = self.body_for(&head, len);
            self.head = Some((head, body));
        }
        match &mut self.head {
            Some((_, body)) => Ok(advance_body(body, buf)?),
            None => Ok(Progress::NeedHead),
        }
    }

    fn body_for(&self, head: &Head, len: usize) -> Body {
        match head.framing {
            Framing::Length(n) => Body::Length {
                start: len,
                end: len + n,
            },
            Framing::Chunked => Body::Chunked {
                start: len,
                decoder: ChunkedDecoder::new(
                    MAX_HEADER_BYTES.saturating_sub(self.scanner.section_len()),
                    MAX_HEADER_LINES.saturating_sub(head.header_count()),
                ),
            },
        }
    }
}

fn advance_body(body: &mut Body, buf: &mut [u8]) -> Result<Progress, HttpError> {
    match body {
        Body::Length { start, end } if buf.len() >= *end => Ok(Progress::Complete {
            body: *start..*end,
            len: *end,
        }),
        Body::Length { end, .. } => Ok(Progress::NeedBody { total: Some(*end) }),
        Body::Chunked { start, decoder } => {
            let done = decoder.decode(&mut buf[*start..])?;
            if done {
                Ok(Progress::Complete {
                    body: *start..*start + decoder.decoded_len(),
                    len: *start + decoder.raw_len(),
                })
            } else {
                Ok(Progress::NeedBody { total: None })
            }
        }
    }
}

#[cfg(test)]
#[path = "parser_tests.rs"]
mod tests;
