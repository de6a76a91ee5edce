//! One pipelined connection: start-up, statement preparation, and the reader and writer
//! coroutines that carry many requests at once over one socket.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use may::net::TcpStream;
use may::sync::mpsc::{channel, Receiver};
use may::sync::Semphore;
use postgres_protocol::message::backend::{Message, RowDescriptionBody};
use postgres_types::{ToSql, Type};

use super::auth::{AuthStep, Authenticator};
use super::codec::{
    encode_prepare, encode_query, encode_simple, encode_startup, encode_terminate, next_message,
    Backend,
};
use super::config::Config;
use super::demux::{Demux, Pending};
use super::error::{server_error, PgError};
use super::limits::{
    COROUTINE_STACK_WORDS, KEEPALIVE_IDLE_SECS, KEEPALIVE_INTERVAL_SECS, MAX_IN_FLIGHT,
    READER_POLL_MILLIS, READ_BUFFER_BYTES, READ_CHUNK_BYTES, RETAINED_BUFFER_BYTES,
    STALL_GRACE_MILLIS, WRITE_TIMEOUT_MILLIS,
};
use super::row::Row;
use crate::metrics::WorkerMetrics;
use crate::placement::{on_worker, return_to};

/// A statement prepared on every (re)connection, referred to by its index in the slice given to
/// `connect`. `name` is the server-side name: non-empty and unique within the slice.
pub struct StatementDef {
    pub name: &'static str,
    pub sql: &'static str,
    /// May be shorter than the statement's parameters (or empty): the server infers the rest.
    pub param_types: &'static [Type],
}

/// Run once when a connection breaks, with the reason, from its reader or writer coroutine.
pub(crate) type OnBreak = Box<dyn FnOnce(&str) + Send>;

/// A prepared statement as the server described it.
struct Prepared {
    name: &'static str,
    params: Vec<Type>,
    columns: Arc<[Type]>,
}

/// One pipelined connection: many requests in flight, answered in order.
pub struct Connection {
    shared: Arc<Shared>,
    statements: Vec<Prepared>,
    query_timeout: Duration,
    backend_pid: i32,
    worker: usize,
    /// The worker's metrics slot; `None` when metrics are off.
    metrics: Option<&'static WorkerMetrics>,
}

/// What the callers, the reader and the writer share.
struct Shared {
    state: Mutex<State>,
    /// Mirrors `State::down` so `is_broken` needs no lock.
    broken: AtomicBool,
    in_flight: AtomicUsize,
    /// Write calls made by the writer: with requests batched, fewer than requests sent.
    batches: AtomicU64,
    /// Posted when `State::out` goes from empty to non-empty, and on break/close.
    writer_wake: Semphore,
    /// A duplicate of the socket, used only to shut it down and so wake the reader and writer.
    socket: std::net::TcpStream,
    on_break: Mutex<Option<OnBreak>>,
}

/// Guarded by a short `std::sync::Mutex`, never held across IO or a park.
struct State {
    /// Encoded requests not yet handed to the writer, in the same order as `queue`.
    out: BytesMut,
    queue: VecDeque<Pending>,
    /// Why the connection broke; set once.
    down: Option<String>,
    /// Terminate queued: the writer shuts the socket after sending it.
    closing: bool,
}

/// Locks a mutex of this module. No critical section here calls code that can panic halfway
/// through an update, so a poisoned lock still guards consistent data.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Connection {
    /// Connects, authenticates, waits for ReadyForQuery and prepares every statement, all within
    /// `cfg.connect_timeout`; then starts the reader and writer coroutines on `worker`.
    pub fn connect(
        cfg: &Config,
        statements: &'static [StatementDef],
        worker: usize,
    ) -> Result<Arc<Connection>, PgError> {
        Connection::open(cfg, statements, worker, None)
    }

    pub(crate) fn open(
        cfg: &Config,
        statements: &'static [StatementDef],
        worker: usize,
        on_break: Option<OnBreak>,
    ) -> Result<Arc<Connection>, PgError> {
        let conn = Connection::establish(cfg, statements, worker, on_break);
        // Connecting blocked on a socket whose epoll may belong to another worker.
        return_to(worker);
        conn
    }

    fn establish(
        cfg: &Config,
        statements: &'static [StatementDef],
        worker: usize,
        on_break: Option<OnBreak>,
    ) -> Result<Arc<Connection>, PgError> {
        let deadline = Instant::now() + cfg.connect_timeout;
        let mut hs = Handshake {
            stream: dial(cfg, deadline)?,
            buf: BytesMut::with_capacity(READ_BUFFER_BYTES),
            deadline,
        };
        let backend_pid = startup(&mut hs, cfg)?;
        let prepared = prepare(&mut hs, statements)?;
        let shared = start(hs, worker, stall_limit(cfg), on_break)?;
        Ok(Arc::new(Connection {
            shared,
            statements: prepared,
            query_timeout: cfg.query_timeout,
            backend_pid,
            worker,
            metrics: crate::metrics::worker(worker),
        }))
    }

    /// Runs prepared statement number `stmt` with `params` (binary in, binary out).
    pub fn query(&self, stmt: usize, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, PgError> {
        let st = self.statements.get(stmt).ok_or_else(|| {
            PgError::Protocol(format!(
                "no statement number {stmt}; {} are prepared",
                self.statements.len()
            ))
        })?;
        let bytes = encode_query(st.name, &st.params, params)?;
        let (tx, rx) = channel();
        let queued = self.metrics.map(|_| Instant::now());
        self.shared
            .submit(&bytes, Pending::rows(st.columns.clone(), tx))?;
        self.await_reply(&rx, queued)
    }

    /// Simple query protocol: may hold several statements; returns all their rows as text.
    pub fn simple_query(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, PgError> {
        let bytes = encode_simple(sql)?;
        let (tx, rx) = channel();
        let queued = self.metrics.map(|_| Instant::now());
        self.shared.submit(&bytes, Pending::text(tx))?;
        self.await_reply(&rx, queued)
    }

    /// True once the socket failed or the server closed it.
    pub fn is_broken(&self) -> bool {
        self.shared.broken.load(Ordering::Acquire)
    }

    /// Requests accepted and not yet answered (including ones whose callers timed out).
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    /// Batches written so far; each carries every request queued while the previous was written.
    pub fn batches_written(&self) -> u64 {
        self.shared.batches.load(Ordering::Relaxed)
    }

    /// The server process serving this connection (for `pg_cancel_backend`, logs).
    pub fn backend_pid(&self) -> i32 {
        self.backend_pid
    }

    /// Waits for the reply; `queued` (set when metrics are on) times the round trip.
    fn await_reply<T>(
        &self,
        rx: &Receiver<Result<T, PgError>>,
        queued: Option<Instant>,
    ) -> Result<T, PgError> {
        match rx.recv_timeout(self.query_timeout) {
            Ok(reply) => {
                // Only what the server answered is a round trip; a connection that broke under
                // the request is counted as an error by the client.
                if let (Some(m), Some(queued), Ok(_) | Err(PgError::Db { .. })) =
                    (self.metrics, queued, &reply)
                {
                    m.pg_query(queued.elapsed());
                }
                reply
            }
            Err(RecvTimeoutError::Timeout) => {
                // may's timer thread resumes timed-out coroutines on an arbitrary worker.
                return_to(self.worker);
                Err(PgError::Timeout)
            }
            Err(RecvTimeoutError::Disconnected) => Err(PgError::Unavailable(
                "connection lost before the reply".into(),
            )),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// Every caller has given up on the oldest request by `query_timeout`; the grace covers a reply
/// that is merely slow to arrive.
fn stall_limit(cfg: &Config) -> Duration {
    cfg.query_timeout + Duration::from_millis(STALL_GRACE_MILLIS)
}

impl Shared {
    /// Queues a request's bytes and its reply slot under one lock, so the reader meets replies
    /// in exactly the order their requests reach the socket.
    fn submit(&self, bytes: &[u8], pending: Pending) -> Result<(), PgError> {
        let wake = {
            let mut st = lock(&self.state);
            if let Some(why) = &st.down {
                return Err(PgError::Unavailable(why.clone()));
            }
            if st.closing {
                return Err(PgError::Unavailable("connection is closing".into()));
            }
            if self.in_flight.load(Ordering::Acquire) >= MAX_IN_FLIGHT {
                return Err(PgError::Busy);
            }
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            let wake = st.out.is_empty();
            st.out.extend_from_slice(bytes);
            st.queue.push_back(pending);
            wake
        };
        if wake {
            self.writer_wake.post();
        }
        Ok(())
    }

    fn pop(&self) -> Option<Pending> {
        lock(&self.state).queue.pop_front()
    }

    fn oldest_queued(&self) -> Option<Instant> {
        lock(&self.state).queue.front().map(|p| p.sent_at)
    }

    fn down_reason(&self) -> Option<String> {
        lock(&self.state).down.clone()
    }

    fn completed(&self, n: usize) {
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
    }

    /// Marks the connection broken (first reason wins), fails every queued request, and shuts
    /// the socket so the other coroutine wakes up and exits.
    fn break_down(&self, why: String) {
        let (queue, first) = {
            let mut st = lock(&self.state);
            let first = st.down.is_none();
            if first {
                st.down = Some(why.clone());
            }
            st.out.clear();
            (std::mem::take(&mut st.queue), first)
        };
        self.broken.store(true, Ordering::Release);
        let failed = queue.len();
        for p in queue {
            p.fail(PgError::Unavailable(why.clone()));
        }
        self.completed(failed);
        // Already shut down by the other side or by us: nothing more to do about it.
        let _ = self.socket.shutdown(Shutdown::Both);
        self.writer_wake.post();
        if first {
            let hook = lock(&self.on_break).take();
            if let Some(hook) = hook {
                hook(&why);
            }
        }
    }

    /// Queues Terminate so the server ends the session cleanly instead of logging an EOF.
    fn close(&self) {
        {
            let mut st = lock(&self.state);
            if st.down.is_some() || st.closing {
                return;
            }
            st.closing = true;
            st.out.extend_from_slice(&encode_terminate());
        }
        self.writer_wake.post();
    }
}

/// Start-up IO: everything bounded by one deadline.
struct Handshake {
    stream: TcpStream,
    buf: BytesMut,
    deadline: Instant,
}

impl Handshake {
    fn remaining(&self) -> Result<Duration, PgError> {
        match self.deadline.checked_duration_since(Instant::now()) {
            Some(d) if !d.is_zero() => Ok(d),
            _ => Err(PgError::Unavailable(
                "connect timeout reached during start-up".into(),
            )),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), PgError> {
        let left = self.remaining()?;
        self.stream
            .set_write_timeout(Some(left))
            .and_then(|_| self.stream.write_all(bytes))
            .map_err(|e| PgError::Unavailable(format!("write during start-up failed: {e}")))
    }

    fn recv(&mut self) -> Result<Message, PgError> {
        loop {
            match next_message(&mut self.buf)? {
                Some(Backend::Other(m)) => return Ok(m),
                Some(Backend::DataRow(_)) => {
                    return Err(PgError::Protocol("data row during start-up".into()))
                }
                None => {}
            }
            let left = self.remaining()?;
            let read = self
                .stream
                .set_read_timeout(Some(left))
                .and_then(|_| read_into(&mut self.stream, &mut self.buf));
            match read {
                Ok(0) => {
                    return Err(PgError::Unavailable(
                        "server closed the connection during start-up".into(),
                    ))
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(PgError::Unavailable(format!(
                        "read during start-up failed: {e}"
                    )))
                }
            }
        }
    }
}

/// Reads what is available, in this client's buffer sizes.
fn read_into(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    crate::sockets::read_into(stream, buf, READ_BUFFER_BYTES, READ_CHUNK_BYTES)
}

fn dial(cfg: &Config, deadline: Instant) -> Result<TcpStream, PgError> {
    let keepalive = crate::sockets::Keepalive {
        idle: Duration::from_secs(KEEPALIVE_IDLE_SECS),
        interval: Duration::from_secs(KEEPALIVE_INTERVAL_SECS),
    };
    crate::sockets::dial(&cfg.host, cfg.port, deadline, keepalive).map_err(PgError::Unavailable)
}

fn is_auth_message(m: &Message) -> bool {
    matches!(
        m,
        Message::AuthenticationOk
            | Message::AuthenticationCleartextPassword
            | Message::AuthenticationMd5Password(_)
            | Message::AuthenticationSasl(_)
            | Message::AuthenticationSaslContinue(_)
            | Message::AuthenticationSaslFinal(_)
            | Message::AuthenticationGss
            | Message::AuthenticationGssContinue(_)
            | Message::AuthenticationKerberosV5
            | Message::AuthenticationScmCredential
            | Message::AuthenticationSspi
    )
}

/// Start-up and authentication up to the first ReadyForQuery; returns the backend's pid.
fn startup(hs: &mut Handshake, cfg: &Config) -> Result<i32, PgError> {
    hs.send(&encode_startup(cfg)?)?;
    let mut auth = Authenticator::new(&cfg.user, cfg.password.as_deref());
    let mut authenticated = false;
    let mut pid = 0;
    loop {
        match hs.recv()? {
            m if is_auth_message(&m) && !authenticated => match auth.step(&m)? {
                AuthStep::Send(bytes) => hs.send(&bytes)?,
                AuthStep::Wait => {}
                AuthStep::Done => authenticated = true,
            },
            Message::ErrorResponse(body) => return Err(server_error(body.fields())?.error),
            Message::BackendKeyData(key) => pid = key.process_id(),
            Message::ParameterStatus(_) | Message::NoticeResponse(_) => {}
            Message::ReadyForQuery(_) if authenticated => return Ok(pid),
            _ => {
                return Err(PgError::Protocol(
                    "unexpected message during start-up".into(),
                ))
            }
        }
    }
}

/// Prepares every statement in one round trip and records each one's parameter and column
/// types as the server describes them.
fn prepare(hs: &mut Handshake, defs: &'static [StatementDef]) -> Result<Vec<Prepared>, PgError> {
    check_names(defs)?;
    if defs.is_empty() {
        return Ok(Vec::new());
    }
    hs.send(&encode_prepare(
        defs.iter().map(|d| (d.name, d.sql, d.param_types)),
    )?)?;
    let mut prepared = Vec::with_capacity(defs.len());
    let mut params = Vec::new();
    let mut error = None;
    loop {
        let def = defs.get(prepared.len());
        let name = def.map_or("?", |d| d.name);
        match (hs.recv()?, def) {
            (Message::ParseComplete, _) => {}
            (Message::ParameterDescription(body), Some(_)) => {
                let oids: Vec<u32> = body.parameters().collect().map_err(malformed)?;
                params = types_of(name, &oids)?;
            }
            (Message::RowDescription(body), Some(d)) => {
                let columns = column_types(name, &body)?;
                prepared.push(described(d, &mut params, columns));
            }
            (Message::NoData, Some(d)) => prepared.push(described(d, &mut params, Vec::new())),
            (Message::ErrorResponse(body), _) => {
                let e = server_error(body.fields())?.error;
                error.get_or_insert(in_statement(name, e));
            }
            (Message::ParameterStatus(_) | Message::NoticeResponse(_), _) => {}
            (Message::ReadyForQuery(_), _) => {
                return match error {
                    Some(e) => Err(e),
                    None if prepared.len() == defs.len() => Ok(prepared),
                    None => Err(PgError::Protocol("statement descriptions missing".into())),
                };
            }
            _ => {
                return Err(PgError::Protocol(
                    "unexpected message while preparing statements".into(),
                ))
            }
        }
    }
}

fn described(d: &StatementDef, params: &mut Vec<Type>, columns: Vec<Type>) -> Prepared {
    Prepared {
        name: d.name,
        params: std::mem::take(params),
        columns: columns.into(),
    }
}

/// An empty name is the unnamed statement, which the next Parse would replace; a duplicate
/// would fail on the server with a less helpful message.
fn check_names(defs: &[StatementDef]) -> Result<(), PgError> {
    for (i, d) in defs.iter().enumerate() {
        if d.name.is_empty() || defs[..i].iter().any(|e| e.name == d.name) {
            return Err(PgError::Protocol(format!(
                "statement {i}: name {:?} is empty or used twice",
                d.name
            )));
        }
    }
    Ok(())
}

fn in_statement(name: &str, e: PgError) -> PgError {
    match e {
        PgError::Db {
            code,
            message,
            constraint,
        } => PgError::Db {
            code,
            message: format!("preparing statement {name}: {message}"),
            constraint,
        },
        other => other,
    }
}

fn malformed(e: io::Error) -> PgError {
    PgError::Protocol(format!("malformed statement description: {e}"))
}

fn column_types(name: &str, body: &RowDescriptionBody) -> Result<Vec<Type>, PgError> {
    let oids: Vec<u32> = body
        .fields()
        .map(|f| Ok(f.type_oid()))
        .collect()
        .map_err(malformed)?;
    types_of(name, &oids)
}

/// Only built-in types can be encoded and decoded without asking the server about them.
fn types_of(name: &str, oids: &[u32]) -> Result<Vec<Type>, PgError> {
    oids.iter()
        .map(|&oid| {
            Type::from_oid(oid).ok_or_else(|| {
                PgError::Protocol(format!(
                    "statement {name} uses type oid {oid}, which is not built in; \
                     cast it to a built-in type (e.g. ::text)"
                ))
            })
        })
        .collect()
}

/// Hands the socket to a reader and a writer coroutine on `worker`.
fn start(
    hs: Handshake,
    worker: usize,
    stall_after: Duration,
    on_break: Option<OnBreak>,
) -> Result<Arc<Shared>, PgError> {
    let setup = |e: io::Error| PgError::Unavailable(format!("cannot set up the socket: {e}"));
    let reader = on_worker(&hs.stream, worker).map_err(setup)?;
    let writer = on_worker(&hs.stream, worker).map_err(setup)?;
    let socket = hs.stream.inner().try_clone().map_err(setup)?;
    drop(hs.stream);
    reader
        .set_read_timeout(Some(Duration::from_millis(READER_POLL_MILLIS)))
        .map_err(setup)?;
    writer
        .set_write_timeout(Some(Duration::from_millis(WRITE_TIMEOUT_MILLIS)))
        .map_err(setup)?;
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            out: BytesMut::with_capacity(READ_BUFFER_BYTES),
            queue: VecDeque::new(),
            down: None,
            closing: false,
        }),
        broken: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        batches: AtomicU64::new(0),
        writer_wake: Semphore::new(0),
        socket,
        on_break: Mutex::new(on_break),
    });
    let (r, w) = (shared.clone(), shared.clone());
    let buf = hs.buf;
    spawn_on(worker, "pg-reader", move || {
        reader_loop(r, reader, buf, stall_after)
    })?;
    if let Err(e) = spawn_on(worker, "pg-writer", move || writer_loop(w, writer)) {
        shared.break_down(e.to_string());
        return Err(e);
    }
    Ok(shared)
}

/// Spawns on the given worker so the coroutine never leaves it (may runs without work stealing).
pub(crate) fn spawn_on(
    worker: usize,
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> Result<(), PgError> {
    crate::placement::spawn_on(worker, name, COROUTINE_STACK_WORDS, f)
        .map_err(|e| PgError::Unavailable(format!("cannot start the {name} coroutine: {e}")))
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

fn reader_loop(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    mut buf: BytesMut,
    stall_after: Duration,
) {
    let mut demux = Demux::default();
    let mut last_read = Instant::now();
    let reason = loop {
        if let Err(e) = drain(&shared, &mut demux, &mut buf) {
            break e;
        }
        match read_into(&mut stream, &mut buf) {
            Ok(0) => break PgError::Unavailable("server closed the connection".into()),
            Ok(_) => last_read = Instant::now(),
            Err(e) if is_timeout(&e) => {
                if stalled(&shared, &demux, last_read, stall_after) {
                    break PgError::Unavailable(format!(
                        "no reply from the server in {stall_after:?}"
                    ));
                }
            }
            Err(e) => break PgError::Unavailable(format!("read failed: {e}")),
        }
    };
    // When the writer broke the connection first, its reason is the real one.
    let reason = match shared.down_reason() {
        Some(why) => PgError::Unavailable(why),
        None => reason,
    };
    // Broken first, so a caller woken with the error already sees `is_broken`.
    shared.break_down(match &reason {
        PgError::Unavailable(why) => why.clone(),
        other => format!("connection reset after: {other}"),
    });
    if demux.fail_current(reason) {
        shared.completed(1);
    }
}

/// Handles every complete message in `buf`.
fn drain(shared: &Shared, demux: &mut Demux, buf: &mut BytesMut) -> Result<(), PgError> {
    while let Some(msg) = next_message(buf)? {
        if demux.on_message(msg, || shared.pop())? {
            shared.completed(1);
        }
    }
    if buf.is_empty() && buf.capacity() > RETAINED_BUFFER_BYTES {
        *buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    }
    Ok(())
}

/// Requests are outstanding and nothing has arrived since the oldest was queued (or since the
/// last read, whichever is later) for longer than `limit`.
fn stalled(shared: &Shared, demux: &Demux, last_read: Instant, limit: Duration) -> bool {
    let oldest = demux.current_sent_at().or_else(|| shared.oldest_queued());
    oldest.is_some_and(|sent| last_read.max(sent).elapsed() > limit)
}

/// Sends everything queued since the last write in one write, so concurrent requests share
/// system calls and packets.
fn writer_loop(shared: Arc<Shared>, mut stream: TcpStream) {
    let mut batch = BytesMut::with_capacity(READ_BUFFER_BYTES);
    loop {
        shared.writer_wake.wait();
        let closing = {
            let mut st = lock(&shared.state);
            if st.down.is_some() {
                return;
            }
            std::mem::swap(&mut st.out, &mut batch);
            st.closing
        };
        if !batch.is_empty() {
            if let Err(e) = stream.write_all(&batch) {
                shared.break_down(format!("write failed: {e}"));
                return;
            }
            shared.batches.fetch_add(1, Ordering::Relaxed);
        }
        batch.clear();
        if batch.capacity() > RETAINED_BUFFER_BYTES {
            batch = BytesMut::with_capacity(READ_BUFFER_BYTES);
        }
        if closing {
            // Terminate is out; the reader sees EOF and finishes the teardown.
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    }
}
