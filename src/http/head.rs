//! Request heads: finding where one ends (with limits enforced while bytes trickle in), parsing
//! it, and the framing rules (`Content-Length`, `Transfer-Encoding`, `Connection`).

use std::ops::Range;

use super::message::{Header, HttpError, Request};
use super::MAX_REQUEST_LINE_BYTES as LINE_MAX;
use super::{
    MAX_BODY_BYTES, MAX_HEADER_BYTES, MAX_HEADER_LINES, MAX_LEADING_EMPTY_BYTES, MAX_METHOD_BYTES,
};

/// Finds the end of a request head incrementally: each call examines only bytes it has not seen,
/// so a client trickling bytes costs linear work, and limits are enforced before the head is
/// complete, so an endless head is refused at the limit instead of buffered.
#[derive(Debug, Default)]
pub(crate) struct HeadScanner {
    /// Next byte to examine.
    pos: usize,
    /// Start of the request line (after tolerated empty lines).
    line_start: usize,
    /// One past the request line's LF, once seen.
    section_start: Option<usize>,
    /// Start of the header line being scanned.
    cur_line: usize,
    /// Header lines completed so far.
    lines: usize,
    /// Bytes of the header lines (CRLFs included, the empty line that ends the head excluded),
    /// once the head is complete.
    section_bytes: usize,
}

impl HeadScanner {
    /// Whether any byte of a request has been seen.
    pub(crate) fn started(&self) -> bool {
        self.pos > 0
    }

    /// Bytes of the header section of the head found last: its header lines with their line
    /// ends, not the empty line that ends the head (what API.md's limit counts).
    pub(crate) fn section_len(&self) -> usize {
        self.section_bytes
    }

    /// Where the request line of the head found last sits, its line end included.
    pub(crate) fn request_line(&self) -> Range<usize> {
        self.line_start..self.section_start.unwrap_or(self.line_start)
    }

    /// Returns the length of the head (through its empty line) once `buf` holds all of it.
    pub(crate) fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, HttpError> {
        while self.pos < buf.len() {
            let b = buf[self.pos];
            if forbidden_in_head(b) {
                return Err(HttpError::BadRequest("invalid byte in request head"));
            }
            let step = match self.section_start {
                None => self.scan_request_line(buf)?,
                Some(start) => self.scan_header_byte(buf, start)?,
            };
            match step {
                Step::Advance(n) => self.pos += n,
                Step::Wait => return Ok(None),
                Step::Done => return Ok(Some(self.pos + 1)),
            }
        }
        Ok(None)
    }

    fn scan_request_line(&mut self, buf: &[u8]) -> Result<Step, HttpError> {
        let b = buf[self.pos];
        if self.pos == self.line_start {
            if let Some(step) = self.skip_empty_line(buf)? {
                return Ok(step);
            }
        }
        let rel = self.pos - self.line_start;
        if rel == MAX_METHOD_BYTES
            && is_token_byte(b)
            && buf[self.line_start..self.pos]
                .iter()
                .all(|&c| is_token_byte(c))
        {
            return Err(HttpError::MethodNotImplemented);
        }
        if b == b'\n' {
            let len = if buf[self.pos - 1] == b'\r' {
                rel - 1
            } else {
                rel
            };
            if len > LINE_MAX {
                return Err(HttpError::UriTooLong);
            }
            self.section_start = Some(self.pos + 1);
            self.cur_line = self.pos + 1;
            return Ok(Step::Advance(1));
        }
        // A CR at position LINE_MAX may still be the line's terminator; anything else there or
        // beyond proves the line too long.
        if rel > LINE_MAX || (rel == LINE_MAX && b != b'\r') {
            return Err(HttpError::UriTooLong);
        }
        Ok(Step::Advance(1))
    }

    /// Skips CRLF or LF at the start of the request line, within MAX_LEADING_EMPTY_BYTES.
    fn skip_empty_line(&mut self, buf: &[u8]) -> Result<Option<Step>, HttpError> {
        let n = match buf[self.pos] {
            b'\n' => 1,
            b'\r' => match buf.get(self.pos + 1) {
                None => return Ok(Some(Step::Wait)),
                Some(b'\n') => 2,
                Some(_) => return Err(HttpError::BadRequest("stray CR before request line")),
            },
            _ => return Ok(None),
        };
        self.line_start = self.pos + n;
        if self.line_start > MAX_LEADING_EMPTY_BYTES {
            return Err(HttpError::BadRequest("too many empty lines before request"));
        }
        Ok(Some(Step::Advance(n)))
    }

    fn scan_header_byte(&mut self, buf: &[u8], section_start: usize) -> Result<Step, HttpError> {
        let b = buf[self.pos];
        let line = &buf[self.cur_line..self.pos];
        // The empty line that ends the head is not part of the section the limit counts.
        let ends_head = match b {
            b'\r' => line.is_empty(),
            b'\n' => line.is_empty() || line == b"\r",
            _ => false,
        };
        if !ends_head && self.pos + 1 - section_start > MAX_HEADER_BYTES {
            return Err(HttpError::HeadersTooLarge);
        }
        if b != b'\n' {
            return Ok(Step::Advance(1));
        }
        if ends_head {
            self.section_bytes = self.cur_line - section_start;
            return Ok(Step::Done);
        }
        self.lines += 1;
        if self.lines > MAX_HEADER_LINES {
            return Err(HttpError::HeadersTooLarge);
        }
        self.cur_line = self.pos + 1;
        Ok(Step::Advance(1))
    }
}

enum Step {
    Advance(usize),
    Wait,
    Done,
}

/// `tchar` of RFC 9110 §5.6.2: the bytes of methods and header names.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 §2.5: a request of a higher HTTP/1.x minor version is served as HTTP/1.1. httparse
/// knows only 1.0 and 1.1, so the minor digit of such a request line is rewritten in place
/// before it parses the head; nothing after the request line is touched.
pub(crate) fn downgrade_minor_version(line: &mut [u8]) {
    let line = match line {
        [rest @ .., b'\r', b'\n'] | [rest @ .., b'\n'] => rest,
        other => other,
    };
    if let [.., b' ', b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor @ b'2'..=b'9'] = line {
        *minor = b'1';
    }
}

/// Control bytes other than HTAB, CR and LF are never valid in a request head; refusing them
/// while scanning rejects e.g. NUL injection before the head completes.
fn forbidden_in_head(b: u8) -> bool {
    (b < 0x20 && b != b'\t' && b != b'\r' && b != b'\n') || b == 0x7f
}

/// Position of a slice inside the connection buffer, so a parsed head survives the buffer
/// growing (reallocating) while the body is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn of(buf: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - buf.as_ptr() as usize;
        Span {
            start: start as u32,
            len: part.len() as u32,
        }
    }

    fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        let start = self.start as usize;
        buf.get(start..start + self.len as usize)
            .unwrap_or_default()
    }

    fn get_str<'a>(&self, buf: &'a [u8]) -> &'a str {
        // Spans only ever cover text httparse has already validated as UTF-8 (tokens, target).
        std::str::from_utf8(self.get(buf)).unwrap_or_default()
    }
}

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Length(usize),
    Chunked,
}

/// A parsed request head, stored as positions in the buffer it was parsed from.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    method: Span,
    path: Span,
    query: Option<Span>,
    pub(crate) version_minor: u8,
    headers: [(Span, Span); MAX_HEADER_LINES],
    header_count: usize,
    pub(crate) framing: Framing,
    /// The client asked to close (or is HTTP/1.0 without keep-alive).
    pub(crate) close: bool,
    /// HTTP/1.0 client that asked for keep-alive: the response must say so.
    pub(crate) keep_alive_10: bool,
    pub(crate) expect_continue: bool,
    pub(crate) is_head: bool,
}

impl Head {
    /// Rebuilds the borrowed request from the buffer the head was parsed from.
    pub(crate) fn request<'a>(
        &self,
        buf: &'a [u8],
        body: Range<usize>,
        scratch: &'a mut [Header<'a>; MAX_HEADER_LINES],
    ) -> Request<'a> {
        for (slot, (name, value)) in scratch.iter_mut().zip(&self.headers[..self.header_count]) {
            *slot = Header {
                name: name.get_str(buf),
                value: value.get(buf),
            };
        }
        Request {
            method: self.method.get_str(buf),
            path: self.path.get_str(buf),
            query: self.query.map(|q| q.get_str(buf)),
            version_minor: self.version_minor,
            headers: &scratch[..self.header_count],
            body: buf.get(body).unwrap_or_default(),
            request_id: "",
        }
    }

    /// The first header called `name`, looked up in the buffer the head was parsed from.
    pub(crate) fn find<'a>(&self, buf: &'a [u8], name: &str) -> Option<&'a [u8]> {
        self.headers[..self.header_count]
            .iter()
            .find(|(n, _)| n.get(buf).eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.get(buf))
    }

    pub(crate) fn header_count(&self) -> usize {
        self.header_count
    }
}

/// Parses a complete head (`buf[..len]`, as found by [`HeadScanner`]) and applies the framing
/// rules.
pub(crate) fn parse_head(buf: &[u8], len: usize) -> Result<Head, HttpError> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADER_LINES];
    let mut req = httparse::Request::new(&mut raw);
    match req.parse(&buf[..len]) {
        Ok(httparse::Status::Complete(n)) if n == len => {}
        Ok(_) => return Err(HttpError::BadRequest("malformed request head")),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadersTooLarge),
        Err(e) => return Err(HttpError::BadRequest(httparse_reason(e))),
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HttpError::BadRequest("malformed request line"));
    };
    let mut head = Head {
        method: Span::of(buf, method.as_bytes()),
        path: Span::default(),
        query: None,
        version_minor: version,
        headers: [(Span::default(), Span::default()); MAX_HEADER_LINES],
        header_count: req.headers.len(),
        framing: Framing::Length(0),
        close: false,
        keep_alive_10: false,
        expect_continue: false,
        is_head: method == "HEAD",
    };
    split_target(&mut head, buf, target)?;
    for (slot, h) in head.headers.iter_mut().zip(req.headers.iter()) {
        *slot = (Span::of(buf, h.name.as_bytes()), Span::of(buf, h.value));
    }
    check_host(req.headers, version)?;
    head.framing = framing(req.headers, version)?;
    apply_connection_options(&mut head, req.headers);
    Ok(head)
}

/// Splits the target into path and query. An absolute-form target (RFC 9112 §3.2.2, what a
/// client sends to a proxy) is served as its origin form: its authority must be valid and is
/// otherwise ignored, like the `Host` header beside it.
fn split_target(head: &mut Head, buf: &[u8], target: &str) -> Result<(), HttpError> {
    let target = match strip_http_scheme(target) {
        Some(rest) => {
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            if end == 0 || !valid_host(&rest.as_bytes()[..end]) {
                return Err(HttpError::BadRequest("invalid authority in request target"));
            }
            let (path, query) = rest[end..].split_once('?').unwrap_or((&rest[end..], ""));
            // An empty path is `/` (RFC 9112 §3.2.2): the span points at the last slash of
            // the scheme's `://`, which the buffer holds.
            let path = match path {
                "" => &target[target.len() - rest.len() - 1..target.len() - rest.len()],
                path => path,
            };
            debug_assert!(path.starts_with('/'));
            head.path = Span::of(buf, path.as_bytes());
            head.query = rest[end..]
                .contains('?')
                .then(|| Span::of(buf, query.as_bytes()));
            return Ok(());
        }
        None => target,
    };
    match target.split_once('?') {
        Some((path, query)) => {
            head.path = Span::of(buf, path.as_bytes());
            head.query = Some(Span::of(buf, query.as_bytes()));
        }
        None => head.path = Span::of(buf, target.as_bytes()),
    }
    Ok(())
}

/// The target after `http://` or `https://` (scheme case-insensitive), if it has one.
fn strip_http_scheme(target: &str) -> Option<&str> {
    ["http://", "https://"].iter().find_map(|scheme| {
        let head = target.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme)
            .then(|| &target[scheme.len()..])
    })
}

/// RFC 9112 §3.2: an HTTP/1.1 request has exactly one `Host` line, and its value is a valid
/// `uri-host [ ":" port ]` (empty allowed); HTTP/1.0 may leave it out.
fn check_host(headers: &[httparse::Header<'_>], version: u8) -> Result<(), HttpError> {
    let mut hosts = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"));
    match (hosts.next(), hosts.next()) {
        (None, _) if version == 0 => Ok(()),
        (None, _) => Err(HttpError::BadRequest("missing Host header")),
        (Some(_), Some(_)) => Err(HttpError::BadRequest("more than one Host header")),
        (Some(h), None) if h.value.is_empty() || valid_host(h.value) => Ok(()),
        (Some(_), None) => Err(HttpError::BadRequest("invalid Host header")),
    }
}

/// `uri-host [ ":" port ]` of RFC 3986: a bracketed IP literal or a reg-name (unreserved,
/// percent-encoded and sub-delims bytes, which covers IPv4 addresses), then optional digits.
/// No userinfo, no spaces.
pub(crate) fn valid_host(value: &[u8]) -> bool {
    let (host_ok, port) = match value {
        [b'[', rest @ ..] => match rest.iter().position(|&b| b == b']') {
            Some(close) => (valid_ip_literal(&rest[..close]), &rest[close + 1..]),
            None => return false,
        },
        _ => {
            let colon = value.iter().position(|&b| b == b':').unwrap_or(value.len());
            (
                colon > 0 && valid_reg_name(&value[..colon]),
                &value[colon..],
            )
        }
    };
    host_ok
        && match port {
            [] => true,
            [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
            _ => false,
        }
}

/// The inside of `[...]`: an IPv6 address or an `IPvFuture`, by their alphabets.
fn valid_ip_literal(literal: &[u8]) -> bool {
    !literal.is_empty()
        && literal
            .iter()
            .all(|&b| b == b':' || is_unreserved(b) || is_sub_delim(b))
}

fn valid_reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        let b = name[i];
        if b == b'%' {
            let hex = name.get(i + 1..i + 3);
            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
        } else if is_unreserved(b) || is_sub_delim(b) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

fn is_sub_delim(b: u8) -> bool {
    b"!$&'()*+,;=".contains(&b)
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Token => "invalid request line",
        httparse::Error::Version => "unsupported HTTP version",
        _ => "malformed request head",
    }
}

/// RFC 9112 §6: a request with both framings is refused (it is how requests are smuggled past
/// proxies), only a lone `chunked` coding is supported, and every Content-Length must be the
/// same plain decimal number.
fn framing(headers: &[httparse::Header<'_>], version: u8) -> Result<Framing, HttpError> {
    let mut te = TransferCodings::default();
    let mut length: Option<Result<u64, HttpError>> = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te.add(h.value);
        } else if h.name.eq_ignore_ascii_case("content-length") {
            length = Some(merge_length(length, h.value));
        }
    }
    if te.seen && length.is_some() {
        return Err(HttpError::ConflictingFraming);
    }
    if te.seen {
        return te.framing(version);
    }
    match length {
        None => Ok(Framing::Length(0)),
        Some(Err(e)) => Err(e),
        Some(Ok(n)) if n > MAX_BODY_BYTES as u64 => Err(HttpError::PayloadTooLarge),
        Some(Ok(n)) => Ok(Framing::Length(n as usize)),
    }
}

fn merge_length(prev: Option<Result<u64, HttpError>>, value: &[u8]) -> Result<u64, HttpError> {
    let n = parse_content_length(value)?;
    match prev {
        None => Ok(n),
        Some(Ok(p)) if p == n => Ok(n),
        Some(_) => Err(HttpError::InvalidContentLength),
    }
}

/// A plain decimal number: digits only (no sign, no list, no inner spaces), fitting in a u64.
pub(crate) fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    let digits = trim_ows(value);
    if digits.is_empty() {
        return Err(HttpError::InvalidContentLength);
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return Err(HttpError::InvalidContentLength);
        }
        acc.checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(HttpError::InvalidContentLength)
    })
}

#[derive(Default)]
struct TransferCodings {
    seen: bool,
    count: usize,
    only_chunked: bool,
}

impl TransferCodings {
    fn add(&mut self, value: &[u8]) {
        self.seen = true;
        for coding in list_items(value) {
            self.count += 1;
            self.only_chunked = self.count == 1 && coding.eq_ignore_ascii_case(b"chunked");
        }
    }

    fn framing(&self, version: u8) -> Result<Framing, HttpError> {
        if version == 0 {
            // RFC 9112 §6.1: HTTP/1.0 has no transfer codings; treat the framing as faulty.
            return Err(HttpError::BadRequest(
                "transfer-encoding in HTTP/1.0 request",
            ));
        }
        if self.count == 0 {
            return Err(HttpError::BadRequest("empty transfer-encoding"));
        }
        if self.only_chunked {
            Ok(Framing::Chunked)
        } else {
            Err(HttpError::UnsupportedTransferEncoding)
        }
    }
}

fn apply_connection_options(head: &mut Head, headers: &[httparse::Header<'_>]) {
    let (mut close, mut keep_alive) = (false, false);
    for h in headers {
        if h.name.eq_ignore_ascii_case("connection") {
            for option in list_items(h.value) {
                close |= option.eq_ignore_ascii_case(b"close");
                keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if h.name.eq_ignore_ascii_case("expect") {
            head.expect_continue |= trim_ows(h.value).eq_ignore_ascii_case(b"100-continue");
        }
    }
    // HTTP/1.0 closes unless the client opted in to keep-alive.
    head.close = close || (head.version_minor == 0 && !keep_alive);
    head.keep_alive_10 = head.version_minor == 0 && !head.close;
}

/// The non-empty elements of a comma-separated header list, whitespace trimmed.
pub(crate) fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|item| !item.is_empty())
}

pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
#[path = "head_tests.rs"]
mod tests;
