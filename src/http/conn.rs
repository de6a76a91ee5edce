//! One connection: reads requests under deadlines, hands them to the service, writes responses
//! in order, and closes when the protocol, an error, a timeout or shutdown says so.

use std::io;
use std::ops::Range;
use std::time::{Duration, Instant};

use super::buffer::ReadBuf;
use super::cors;
use super::encode::{self, ResponseMeta, CONTINUE};
use super::head::Head;
use super::link::ConnLink;
use super::message::UNROUTED;
use super::message::{Header, HttpError};
use super::observe::Observer;
use super::parser::{Progress, RequestParser};
use super::request_id;
use super::service::Service;
use super::transport::Transport;
use super::{LINGER_MAX_BYTES, LINGER_TIMEOUT_MILLIS, MAX_HEADER_LINES, WRITE_BATCH_MAX_BYTES};

/// How a request ended for the connection.
enum Next {
    KeepAlive,
    /// Close after writing what is pending.
    Close,
    /// Close after writing, then discard input for a while so the response is not lost to a
    /// reset.
    Linger,
    /// The response opened a stream: write what is pending, then hand the socket over.
    Stream {
        chunked: bool,
    },
}

/// How a connection's coroutine ended.
pub(crate) enum Ended<S> {
    Closed,
    /// Idle past the park delay: park it with its service until input or this deadline.
    Park(S, Instant),
    /// Its last response opened a stream (chunked or not), written up to here: hand the socket
    /// to the service.
    Stream(S, bool),
}

/// How waiting for the next request ended.
enum Idle {
    Ready,
    Close,
    /// Still idle after the park delay: wait in the parking lot until this deadline.
    Park(Instant),
}

enum Waited {
    Ready,
    TimedOut,
    Closed,
}

enum ReadOutcome {
    Data,
    Eof,
    TimedOut,
    /// The buffer is at its cap; the request exceeds the limits.
    Full,
    Failed,
}

pub(crate) struct Conn<'a, S, T> {
    stream: &'a mut T,
    link: ConnLink<'a>,
    service: S,
    inbuf: ReadBuf,
    out: Vec<u8>,
    /// Timeouts last set on the socket: setting one is a syscall, so it is skipped when unchanged.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// The worker's observer; `None` when nothing observes the server.
    observer: Option<&'a dyn Observer>,
}

impl<'a, S: Service, T: Transport> Conn<'a, S, T> {
    pub(crate) fn new(stream: &'a mut T, link: ConnLink<'a>, service: S) -> Self {
        let observer = link.observer();
        Conn {
            stream,
            link,
            service,
            inbuf: ReadBuf::default(),
            out: Vec::new(),
            read_timeout: None,
            write_timeout: None,
            observer,
        }
    }

    /// Serves requests until the connection ends, or until it has been idle long enough to
    /// park: then it hands back the service and the idle deadline.
    pub(crate) fn run(mut self) -> Ended<S> {
        let mut parser = RequestParser::new();
        loop {
            if self.inbuf.is_empty() {
                if !self.flush() {
                    return Ended::Closed;
                }
                match self.wait_for_request() {
                    Idle::Ready => {}
                    Idle::Close => return Ended::Closed,
                    Idle::Park(deadline) => return Ended::Park(self.service, deadline),
                }
            }
            parser.reset();
            let next = self.serve_one(&mut parser);
            if self.out.len() > WRITE_BATCH_MAX_BYTES && !self.flush() {
                return Ended::Closed;
            }
            match next {
                Next::KeepAlive => self.inbuf.shrink(),
                Next::Close => return self.finish(false),
                Next::Linger => return self.finish(true),
                // Input after the stream's request is never answered: the stream never ends.
                Next::Stream { chunked } => match self.flush() {
                    true => return Ended::Stream(self.service, chunked),
                    false => return Ended::Closed,
                },
            }
        }
    }

    /// Idle between requests: waits for the next request's first bytes, reading them straight
    /// into the buffer kept from the last request (a busy keep-alive connection costs no
    /// allocation and no extra syscall per request). Shutdown is honoured, and the wait is bounded
    /// by the idle timeout, or by the park delay when that is shorter; a connection about to park
    /// releases its buffers first, so a parked connection holds none.
    fn wait_for_request(&mut self) -> Idle {
        if self.out.capacity() > WRITE_BATCH_MAX_BYTES {
            self.out = Vec::new();
        }
        if !self.link.enter_idle() {
            return Idle::Close;
        }
        let t = *self.link.timeouts();
        let idle_deadline = Instant::now() + t.idle;
        let parks = t.park < t.idle;
        match self.read_first(if parks { t.park } else { t.idle }) {
            Waited::Ready => {
                self.link.leave_idle();
                Idle::Ready
            }
            Waited::TimedOut if parks => {
                self.inbuf.release();
                self.out = Vec::new();
                Idle::Park(idle_deadline)
            }
            Waited::TimedOut | Waited::Closed => Idle::Close,
        }
    }

    /// Reads whatever arrives first, waiting `timeout` at most.
    fn read_first(&mut self, timeout: Duration) -> Waited {
        if !self.set_read_timeout(timeout) {
            return Waited::Closed;
        }
        let Some(spare) = self.inbuf.spare(None) else {
            return Waited::Closed;
        };
        loop {
            match self.stream.read(spare) {
                Ok(0) => return Waited::Closed,
                Ok(n) => {
                    self.inbuf.commit(n);
                    return Waited::Ready;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => return Waited::TimedOut,
                Err(_) => return Waited::Closed,
            }
        }
    }

    /// Reads, parses and answers one request (from bytes already buffered or yet to come).
    fn serve_one(&mut self, parser: &mut RequestParser) -> Next {
        let (body, len) = match self.receive(parser) {
            Ok(done) => done,
            Err(next) => return next,
        };
        match parser.head() {
            Some(head) => self.dispatch(head, body, len),
            None => Next::Close,
        }
    }

    /// Reads until `parser` holds a complete request (its body range and length in the
    /// buffer); otherwise says how the connection ends.
    fn receive(&mut self, parser: &mut RequestParser) -> Result<(Range<usize>, usize), Next> {
        let header_deadline = Instant::now() + self.link.timeouts().header;
        let mut body_deadline = None;
        loop {
            let outcome = match parser.advance(self.inbuf.unparsed_mut()) {
                Ok(Progress::Complete { body, len }) => return Ok((body, len)),
                Ok(Progress::NeedHead) => self.read_more(header_deadline, None),
                Ok(Progress::NeedBody { total }) => {
                    if let Some(spent) = parser.take_spent() {
                        self.inbuf.cut(spent);
                    }
                    let deadline = match body_deadline {
                        Some(deadline) => deadline,
                        None => *body_deadline.insert(self.start_body(parser.head())?),
                    };
                    self.read_more(deadline, total)
                }
                Err(e) => return Err(self.fail(&e, parser.head())),
            };
            let err = match outcome {
                ReadOutcome::Data => continue,
                ReadOutcome::Eof | ReadOutcome::Failed => return Err(Next::Close),
                ReadOutcome::TimedOut if !parser.started() => return Err(Next::Close),
                ReadOutcome::TimedOut => HttpError::RequestTimeout,
                ReadOutcome::Full => overflow_error(parser),
            };
            return Err(self.fail(&err, parser.head()));
        }
    }

    /// The head is in and the body is not: start the body's clock and, if the client waits for
    /// it, send `100 Continue` (after any responses still pending, to keep order).
    fn start_body(&mut self, head: Option<&Head>) -> Result<Instant, Next> {
        if head.is_some_and(|h| h.expect_continue && h.version_minor == 1) {
            self.out.extend_from_slice(CONTINUE);
            if !self.flush() {
                return Err(Next::Close);
            }
        }
        Ok(Instant::now() + self.link.timeouts().body)
    }

    /// Calls the service (or answers a preflight) and appends the response.
    fn dispatch(&mut self, head: &Head, body: Range<usize>, len: usize) -> Next {
        // The request is complete: its latency counts from here to its response being buffered
        // for the socket (a pipelined batch is then written together).
        let started = self.observer.map(|_| Instant::now());
        let mut scratch = [Header::EMPTY; MAX_HEADER_LINES];
        let id = request_id::for_request(head.find(self.inbuf.unparsed(), "x-request-id"));
        let mut req = head.request(self.inbuf.unparsed(), body, &mut scratch);
        req.request_id = &id;
        let cors = self.link.cors().headers_for(req.header("origin"));
        let mut resp = if cors::is_preflight(&req) {
            cors::preflight_response(&cors, &req)
        } else {
            self.service.call(&req)
        };
        resp.header(request_id::HEADER, id.clone());
        let stream = resp.stream && !head.is_head && (200..300).contains(&resp.status);
        let chunked = head.version_minor == 1;
        // Checked after the call, so a request in flight when shutdown starts says so. An
        // HTTP/1.0 stream's body ends with the connection.
        let close = head.close || self.link.draining() || (stream && !chunked);
        let meta = ResponseMeta {
            head_request: head.is_head,
            close,
            keep_alive_10: head.keep_alive_10 && !close,
            accepts_gzip: encode::accepts_gzip(req.headers_named("accept-encoding")),
            chunked,
            cors,
        };
        encode::write_response(&mut self.out, &resp, &meta, self.link.gzip());
        if let (Some(observer), Some(started)) = (self.observer, started) {
            observer.request(resp.route, resp.status, started.elapsed());
        }
        self.inbuf.consume(len);
        if stream {
            return Next::Stream { chunked };
        }
        match (close, self.inbuf.is_empty()) {
            (false, _) => Next::KeepAlive,
            (true, true) => Next::Close,
            (true, false) => Next::Linger,
        }
    }

    /// Asks the service to render `err` and marks the connection for closing: after a framing
    /// error the rest of the input cannot be trusted to start a request.
    fn fail(&mut self, err: &HttpError, head: Option<&Head>) -> Next {
        let started = self.observer.map(|_| Instant::now());
        let origin = head.and_then(|h| h.find(self.inbuf.unparsed(), "origin"));
        let meta = ResponseMeta {
            head_request: head.is_some_and(|h| h.is_head),
            close: true,
            cors: self.link.cors().headers_for(origin),
            ..ResponseMeta::default()
        };
        let client_id = head.and_then(|h| h.find(self.inbuf.unparsed(), "x-request-id"));
        let mut resp = self.service.error(err);
        resp.header(request_id::HEADER, request_id::for_request(client_id));
        encode::write_response(&mut self.out, &resp, &meta, self.link.gzip());
        // Refused before routing: there is no route to name.
        if let (Some(observer), Some(started)) = (self.observer, started) {
            observer.request(UNROUTED, resp.status, started.elapsed());
        }
        Next::Linger
    }

    /// Reads more input, waiting until `deadline` at most.
    fn read_more(&mut self, deadline: Instant, want: Option<usize>) -> ReadOutcome {
        if !self.out.is_empty() && !self.flush() {
            return ReadOutcome::Failed;
        }
        let Some(remaining) = remaining(deadline) else {
            return ReadOutcome::TimedOut;
        };
        if !self.set_read_timeout(remaining) {
            return ReadOutcome::Failed;
        }
        let Some(spare) = self.inbuf.spare(want) else {
            return ReadOutcome::Full;
        };
        loop {
            match self.stream.read(spare) {
                Ok(0) => return ReadOutcome::Eof,
                Ok(n) => {
                    self.inbuf.commit(n);
                    return ReadOutcome::Data;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => return ReadOutcome::TimedOut,
                Err(_) => return ReadOutcome::Failed,
            }
        }
    }

    /// Writes all pending output within the write timeout. False if the client is gone or too
    /// slow, which ends the connection.
    fn flush(&mut self) -> bool {
        let deadline = Instant::now() + self.link.timeouts().write;
        let mut written = 0;
        while written < self.out.len() {
            let timeout = match written {
                0 => self.link.timeouts().write,
                _ => match remaining(deadline) {
                    Some(t) => t,
                    None => return false,
                },
            };
            if !self.set_write_timeout(timeout) {
                return false;
            }
            match self.stream.write(&self.out[written..]) {
                Ok(0) => return false,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        self.out.clear();
        true
    }

    /// Writes what is pending and closes; with `linger`, first discards input for a bounded
    /// time so that closing with unread data does not reset the connection under the response.
    fn finish(mut self, linger: bool) -> Ended<S> {
        if self.flush() && linger && self.stream.shutdown_write().is_ok() {
            self.discard_input();
        }
        Ended::Closed
    }

    fn discard_input(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(LINGER_TIMEOUT_MILLIS);
        let mut discarded = 0;
        while discarded < LINGER_MAX_BYTES {
            let Some(remaining) = remaining(deadline) else {
                return;
            };
            if !self.set_read_timeout(remaining) {
                return;
            }
            match self.stream.read(self.inbuf.scratch()) {
                Ok(0) => return,
                Ok(n) => discarded += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn set_read_timeout(&mut self, timeout: Duration) -> bool {
        if self.read_timeout == Some(timeout) {
            return true;
        }
        self.read_timeout = Some(timeout);
        self.stream.set_read_timeout(timeout).is_ok()
    }

    fn set_write_timeout(&mut self, timeout: Duration) -> bool {
        if self.write_timeout == Some(timeout) {
            return true;
        }
        self.write_timeout = Some(timeout);
        self.stream.set_write_timeout(timeout).is_ok()
    }
}

/// Which limit a request hit when it filled the buffer to its cap (only reachable if the
/// parser's own limits let it get that far).
fn overflow_error(parser: &RequestParser) -> HttpError {
    match parser.head() {
        Some(_) => HttpError::PayloadTooLarge,
        None => HttpError::HeadersTooLarge,
    }
}

fn remaining(deadline: Instant) -> Option<Duration> {
    Some(deadline.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
}

/// may reports an expired IO timeout as `TimedOut`; a plain socket timeout would be `WouldBlock`.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}
