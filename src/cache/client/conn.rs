//! One pipelined connection: the handshake, and the reader and writer coroutines that carry many
//! commands at once over one socket.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use may::net::TcpStream;
use may::sync::mpsc::{channel, Sender};
use may::sync::Semphore;
use redis::{Cmd, Value};

use super::config::RedisConfig;
use super::error::CacheError;
use super::limits::{
    COROUTINE_STACK_WORDS, KEEPALIVE_IDLE_SECS, KEEPALIVE_INTERVAL_SECS, MAX_IN_FLIGHT,
    READER_POLL_MILLIS, READ_BUFFER_BYTES, READ_CHUNK_BYTES, RETAINED_BUFFER_BYTES,
    STALL_GRACE_MILLIS, WRITE_TIMEOUT_MILLIS,
};
use super::resp::{decode, Framer, Reply};
use crate::metrics::WorkerMetrics;
use crate::placement::{on_worker, return_to};

/// Run once when a connection breaks, with the reason, from its reader or writer coroutine.
pub(crate) type OnBreak = Box<dyn FnOnce(&str) + Send>;

/// One pipelined connection: many commands in flight, answered in order.
pub struct Connection {
    shared: Arc<Shared>,
    command_timeout: Duration,
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
    /// Write calls made by the writer: with commands batched, fewer than commands sent.
    batches: AtomicU64,
    /// Posted when `State::out` goes from empty to non-empty, and on break/close.
    writer_wake: Semphore,
    /// A duplicate of the socket, used only to shut it down and so wake the reader and writer.
    socket: std::net::TcpStream,
    on_break: Mutex<Option<OnBreak>>,
}

/// Guarded by a short `std::sync::Mutex`, never held across IO or a park.
struct State {
    /// Encoded commands not yet handed to the writer, in the same order as `queue`.
    out: Vec<u8>,
    queue: VecDeque<Pending>,
    /// Why the connection broke; set once.
    down: Option<String>,
    /// Dropped by its owner: the writer flushes what is queued, then half-closes the socket.
    closing: bool,
}

/// A command whose bytes are queued or sent and whose reply has not arrived.
struct Pending {
    /// `None` for `send`: the reply is read and dropped.
    tx: Option<Sender<Reply>>,
    sent_at: Instant,
    /// How long its caller waits; with the grace, how long silence is tolerated behind it.
    timeout: Duration,
}

impl Pending {
    /// A caller that already timed out is simply not there any more.
    fn complete(self, reply: Reply) {
        if let Some(tx) = self.tx {
            drop(tx.send(reply));
        }
    }
}

/// Locks a mutex of this module. No critical section here calls code that can panic halfway
/// through an update, so a poisoned lock still guards consistent data.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Connection {
    /// Connects, authenticates (AUTH, with the username when one is given), selects the
    /// database when it is not 0 and checks the server with PING, all within
    /// `cfg.connect_timeout`; then starts the reader and writer coroutines on `worker`.
    pub fn connect(cfg: &RedisConfig, worker: usize) -> Result<Arc<Connection>, CacheError> {
        Connection::open(cfg, worker, None)
    }

    pub(crate) fn open(
        cfg: &RedisConfig,
        worker: usize,
        on_break: Option<OnBreak>,
    ) -> Result<Arc<Connection>, CacheError> {
        let conn = Connection::establish(cfg, worker, on_break);
        // Connecting blocked on a socket whose epoll may belong to another worker.
        return_to(worker);
        conn
    }

    fn establish(
        cfg: &RedisConfig,
        worker: usize,
        on_break: Option<OnBreak>,
    ) -> Result<Arc<Connection>, CacheError> {
        let deadline = Instant::now() + cfg.connect_timeout;
        let mut hs = Handshake {
            stream: dial(cfg, deadline)?,
            buf: BytesMut::with_capacity(READ_BUFFER_BYTES),
            framer: Framer::default(),
            deadline,
        };
        handshake(&mut hs, cfg)?;
        let shared = start(hs, worker, on_break)?;
        Ok(Arc::new(Connection {
            shared,
            command_timeout: cfg.command_timeout,
            worker,
            metrics: crate::metrics::worker(worker),
        }))
    }

    /// Runs `cmd` and waits up to the configured command timeout for its reply.
    pub fn query(&self, cmd: &Cmd) -> Result<Value, CacheError> {
        self.query_timeout(cmd, self.command_timeout)
    }

    /// Runs `cmd` and waits up to `timeout` for its reply. After a timeout the command stays in
    /// the pipeline and its reply, when it comes, is dropped.
    pub fn query_timeout(&self, cmd: &Cmd, timeout: Duration) -> Result<Value, CacheError> {
        let (tx, rx) = channel();
        let queued = self.metrics.map(|_| Instant::now());
        self.shared.submit(cmd, Some(tx), timeout)?;
        match rx.recv_timeout(timeout) {
            Ok(reply) => {
                // Only what the server answered is a round trip; a connection that broke under
                // the command is counted as an error by the client.
                if let (Some(m), Some(queued), Ok(_) | Err(CacheError::Server(_))) =
                    (self.metrics, queued, &reply)
                {
                    m.redis_command(queued.elapsed());
                }
                reply
            }
            Err(RecvTimeoutError::Timeout) => {
                // may's timer thread resumes timed-out coroutines on an arbitrary worker.
                return_to(self.worker);
                Err(CacheError::Timeout)
            }
            Err(RecvTimeoutError::Disconnected) => Err(CacheError::Unavailable(
                "connection lost before the reply".into(),
            )),
        }
    }

    /// Queues the command and returns at once; its reply, even an error reply, is read and
    /// discarded in order. For cache writes off the hot path. Not for slow or blocking commands:
    /// silence behind it for longer than the command timeout plus `STALL_GRACE_MILLIS` counts as
    /// a stalled server.
    pub fn send(&self, cmd: &Cmd) -> Result<(), CacheError> {
        self.shared.submit(cmd, None, self.command_timeout)
    }

    /// True once the socket failed, the server closed it, it stalled or it sent bytes this
    /// client cannot follow.
    pub fn is_broken(&self) -> bool {
        self.shared.broken.load(Ordering::Acquire)
    }

    /// Commands accepted and not yet answered (including ones whose callers timed out).
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    /// Batches written so far; each carries every command queued while the previous was written.
    pub fn batches_written(&self) -> u64 {
        self.shared.batches.load(Ordering::Relaxed)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl Shared {
    /// Queues a command's bytes and its reply slot under one lock, so the reader meets replies
    /// in exactly the order their commands reach the socket.
    fn submit(
        &self,
        cmd: &Cmd,
        tx: Option<Sender<Reply>>,
        timeout: Duration,
    ) -> Result<(), CacheError> {
        // The server answers nothing to an empty command, which would shift every later reply
        // onto the wrong caller.
        if cmd.args_iter().len() == 0 {
            return Err(CacheError::Protocol("empty command".into()));
        }
        let wake = {
            let mut st = lock(&self.state);
            if let Some(why) = &st.down {
                return Err(CacheError::Unavailable(why.clone()));
            }
            if st.closing {
                return Err(CacheError::Unavailable("connection is closing".into()));
            }
            if self.in_flight.load(Ordering::Acquire) >= MAX_IN_FLIGHT {
                return Err(CacheError::Busy);
            }
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            let wake = st.out.is_empty();
            cmd.write_packed_command(&mut st.out);
            st.queue.push_back(Pending {
                tx,
                sent_at: Instant::now(),
                timeout,
            });
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

    fn completed(&self, n: usize) {
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
    }

    /// Marks the connection broken (first reason wins), fails every queued command, and shuts
    /// the socket so the other coroutine wakes up and exits. A protocol error goes to the oldest
    /// command, whose reply it was; the others learn that the connection is gone.
    fn break_down(&self, reason: CacheError) {
        let why = match &reason {
            CacheError::Unavailable(why) => why.clone(),
            other => other.to_string(),
        };
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
        for (i, p) in queue.into_iter().enumerate() {
            p.complete(match &reason {
                CacheError::Protocol(_) if i == 0 => Err(reason.clone()),
                _ => Err(CacheError::Unavailable(why.clone())),
            });
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

    /// Lets commands already queued (`send`s especially) reach the server, then ends the
    /// connection. A deliberate close is no break: the owner is not told.
    fn close(&self) {
        drop(lock(&self.on_break).take());
        {
            let mut st = lock(&self.state);
            if st.down.is_some() || st.closing {
                return;
            }
            st.closing = true;
        }
        self.writer_wake.post();
    }
}

/// Handshake IO: everything bounded by one deadline.
struct Handshake {
    stream: TcpStream,
    buf: BytesMut,
    framer: Framer,
    deadline: Instant,
}

impl Handshake {
    fn remaining(&self) -> Result<Duration, CacheError> {
        match self.deadline.checked_duration_since(Instant::now()) {
            Some(d) if !d.is_zero() => Ok(d),
            _ => Err(CacheError::Unavailable(
                "connect timeout reached during the handshake".into(),
            )),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), CacheError> {
        let left = self.remaining()?;
        self.stream
            .set_write_timeout(Some(left))
            .and_then(|_| self.stream.write_all(bytes))
            .map_err(|e| CacheError::Unavailable(format!("write during the handshake failed: {e}")))
    }

    fn recv(&mut self) -> Result<Reply, CacheError> {
        loop {
            if let Some(len) = self.framer.frame(&self.buf)? {
                let reply = decode(&self.buf[..len])?;
                self.buf.advance(len);
                return Ok(reply);
            }
            let left = self.remaining()?;
            let read = self
                .stream
                .set_read_timeout(Some(left))
                .and_then(|_| read_into(&mut self.stream, &mut self.buf));
            match read {
                Ok(0) => {
                    return Err(CacheError::Unavailable(
                        "server closed the connection during the handshake".into(),
                    ))
                }
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {
                    return Err(CacheError::Unavailable(
                        "connect timeout reached during the handshake".into(),
                    ))
                }
                Err(e) => {
                    return Err(CacheError::Unavailable(format!(
                        "read during the handshake failed: {e}"
                    )))
                }
            }
        }
    }
}

/// AUTH and SELECT when needed, then PING, in one write. The first error reply is returned as
/// it is (`Server`), so that WRONGPASS or NOAUTH reach the log unchanged.
fn handshake(hs: &mut Handshake, cfg: &RedisConfig) -> Result<(), CacheError> {
    let mut out = Vec::new();
    let mut expect = Vec::new();
    if cfg.username.is_some() || cfg.password.is_some() {
        let mut auth = redis::cmd("AUTH");
        if let Some(user) = &cfg.username {
            auth.arg(user);
        }
        // An ACL user marked `nopass` accepts any password, the empty one included.
        auth.arg(cfg.password.as_deref().unwrap_or(""));
        auth.write_packed_command(&mut out);
        expect.push("AUTH");
    }
    if cfg.db != 0 {
        redis::cmd("SELECT")
            .arg(cfg.db)
            .write_packed_command(&mut out);
        expect.push("SELECT");
    }
    redis::cmd("PING").write_packed_command(&mut out);
    expect.push("PING");
    hs.send(&out)?;
    for what in expect {
        match (what, hs.recv()??) {
            ("AUTH" | "SELECT", Value::Okay) => {}
            ("PING", Value::SimpleString(s)) if s == "PONG" => {}
            (what, other) => {
                return Err(CacheError::Protocol(format!(
                    "unexpected reply to {what}: {other:?}"
                )))
            }
        }
    }
    Ok(())
}

/// Reads what is available, in this client's buffer sizes.
fn read_into(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    crate::sockets::read_into(stream, buf, READ_BUFFER_BYTES, READ_CHUNK_BYTES)
}

fn dial(cfg: &RedisConfig, deadline: Instant) -> Result<TcpStream, CacheError> {
    let keepalive = crate::sockets::Keepalive {
        idle: Duration::from_secs(KEEPALIVE_IDLE_SECS),
        interval: Duration::from_secs(KEEPALIVE_INTERVAL_SECS),
    };
    crate::sockets::dial(&cfg.host, cfg.port, deadline, keepalive).map_err(CacheError::Unavailable)
}

/// Hands the socket to a reader and a writer coroutine on `worker`.
fn start(
    hs: Handshake,
    worker: usize,
    on_break: Option<OnBreak>,
) -> Result<Arc<Shared>, CacheError> {
    let setup = |e: io::Error| CacheError::Unavailable(format!("cannot set up the socket: {e}"));
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
            out: Vec::with_capacity(READ_BUFFER_BYTES),
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
    spawn_on(worker, "redis-reader", move || reader_loop(r, reader, buf))?;
    if let Err(e) = spawn_on(worker, "redis-writer", move || writer_loop(w, writer)) {
        shared.break_down(e.clone());
        return Err(e);
    }
    Ok(shared)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

fn reader_loop(shared: Arc<Shared>, mut stream: TcpStream, mut buf: BytesMut) {
    let mut framer = Framer::default();
    let mut last_read = Instant::now();
    let reason = loop {
        if let Err(e) = drain(&shared, &mut framer, &mut buf) {
            break e;
        }
        match read_into(&mut stream, &mut buf) {
            Ok(0) => break CacheError::Unavailable("server closed the connection".into()),
            Ok(_) => last_read = Instant::now(),
            Err(e) if is_timeout(&e) => {
                if let Some(done) = idle_check(&shared, last_read) {
                    break done;
                }
            }
            Err(e) => break CacheError::Unavailable(format!("read failed: {e}")),
        }
    };
    shared.break_down(reason);
}

/// Answers the command of every complete reply in `buf`, oldest first.
fn drain(shared: &Shared, framer: &mut Framer, buf: &mut BytesMut) -> Result<(), CacheError> {
    while let Some(len) = framer.frame(buf)? {
        let reply = decode(&buf[..len])?;
        buf.advance(len);
        let pending = shared.pop().ok_or_else(|| {
            CacheError::Protocol("a reply arrived with no command waiting for it".into())
        })?;
        pending.complete(reply);
        shared.completed(1);
    }
    if buf.is_empty() && buf.capacity() > RETAINED_BUFFER_BYTES {
        *buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    }
    Ok(())
}

/// Why the reader should stop while no bytes arrive, if it should: the server has been silent
/// for longer than the oldest outstanding command's timeout plus `STALL_GRACE_MILLIS` (its
/// caller has given up already, and everyone behind it waits on a server that is not
/// answering), or the owner closed the connection and every reply is in.
fn idle_check(shared: &Shared, last_read: Instant) -> Option<CacheError> {
    let st = lock(&shared.state);
    let Some(oldest) = st.queue.front() else {
        return st
            .closing
            .then(|| CacheError::Unavailable("connection closed".into()));
    };
    let quiet = last_read.max(oldest.sent_at).elapsed();
    (quiet > oldest.timeout + Duration::from_millis(STALL_GRACE_MILLIS)).then(|| {
        CacheError::Unavailable(format!(
            "server stalled: no reply for {} ms",
            quiet.as_millis()
        ))
    })
}

/// Sends everything queued since the last write in one write, so concurrent commands share
/// system calls and packets.
fn writer_loop(shared: Arc<Shared>, mut stream: TcpStream) {
    let mut batch = Vec::with_capacity(READ_BUFFER_BYTES);
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
                shared.break_down(CacheError::Unavailable(format!("write failed: {e}")));
                return;
            }
            shared.batches.fetch_add(1, Ordering::Relaxed);
        }
        batch.clear();
        if batch.capacity() > RETAINED_BUFFER_BYTES {
            batch = Vec::with_capacity(READ_BUFFER_BYTES);
        }
        if closing {
            // The server answers what it got, then sees the end of input and closes; the reader
            // reads up to that close and finishes the teardown.
            let _ = stream.shutdown(Shutdown::Write);
            return;
        }
    }
}

/// Spawns one of the client's coroutines on `worker`, where it stays.
pub(crate) fn spawn_on(
    worker: usize,
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> Result<(), CacheError> {
    crate::placement::spawn_on(worker, name, COROUTINE_STACK_WORDS, f)
        .map_err(|e| CacheError::Unavailable(format!("cannot start the {name} coroutine: {e}")))
}
