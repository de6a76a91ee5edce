//! One pipelined connection: the shared queue, and the reader and writer coroutines that carry
//! many requests at once over one socket.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::marker::PhantomData;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use may::net::TcpStream;
use may::sync::mpsc::{channel, Sender};
use may::sync::Semphore;

use super::error::{Failure, LinkError, LinkFailure};
use super::handshake::{is_timeout, read_into, Handshake};
use super::protocol::{Decoder, ErrorOf, Observer, Protocol, RequestOf, Waiting};
use crate::placement::WorkerId;

/// Run once when a link breaks, with the reason, from its reader or writer coroutine.
pub type OnBreak = Box<dyn FnOnce(&str) + Send>;

/// One pipelined connection: many requests in flight, answered in order.
pub struct Link<P: Protocol> {
    shared: Arc<Shared<P>>,
    session: P::Session,
    worker: WorkerId,
    observer: Option<Arc<dyn Observer>>,
}

/// What the callers, the reader and the writer share.
struct Shared<P: Protocol> {
    state: Mutex<State<RequestOf<P>>>,
    /// Mirrors `State::down` so `is_broken` needs no lock.
    broken: AtomicBool,
    in_flight: AtomicUsize,
    /// Write calls made by the writer: with requests batched, fewer than requests sent.
    batches: AtomicU64,
    /// Posted when `State::out` goes from empty to non-empty, and on break and close.
    writer_wake: Semphore,
    /// A duplicate of the socket, used only to shut it down and so wake the reader and writer.
    socket: std::net::TcpStream,
    on_break: Mutex<Option<OnBreak>>,
    protocol: PhantomData<P>,
}

/// Guarded by a short `std::sync::Mutex`, never held across IO or a park.
struct State<R> {
    /// Encoded requests not yet handed to the writer, in the same order as `queue`.
    out: Vec<u8>,
    queue: VecDeque<Waiting<R>>,
    /// Why the link broke; set once.
    down: Option<String>,
    /// Dropped by its owner: the writer sends what is queued, then half-closes the socket.
    closing: bool,
}

/// Locks a mutex of the pipeline. No critical section here calls code that can panic halfway
/// through an update, so a poisoned lock still guards consistent data.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<P: Protocol> Link<P> {
    /// Connects and runs the protocol's handshake, all within the endpoint's connect timeout;
    /// then starts the reader and writer coroutines on `worker`. `on_break` runs when the link
    /// breaks (not when it is dropped).
    pub fn open(
        cfg: &P::Config,
        worker: WorkerId,
        on_break: Option<OnBreak>,
        observer: Option<Arc<dyn Observer>>,
    ) -> Result<Arc<Link<P>>, ErrorOf<P>> {
        let link = Link::establish(cfg, worker, on_break, observer);
        // Connecting blocked on a socket whose epoll may belong to another worker.
        worker.come_home();
        link
    }

    fn establish(
        cfg: &P::Config,
        worker: WorkerId,
        on_break: Option<OnBreak>,
        observer: Option<Arc<dyn Observer>>,
    ) -> Result<Arc<Link<P>>, ErrorOf<P>> {
        let (hs, session) = Link::<P>::first_taker(cfg, worker)?;
        let shared = start::<P>(hs, P::decoder(cfg), worker, on_break)?;
        Ok(Arc::new(Link {
            shared,
            session,
            worker,
            observer,
        }))
    }

    /// Dials the endpoints in order and runs the handshake on each until one takes. When every
    /// one fails for a reason that lets the next be tried, the error names each one's reason.
    fn first_taker(
        cfg: &P::Config,
        worker: WorkerId,
    ) -> Result<(Handshake, P::Session), ErrorOf<P>> {
        let endpoints = P::endpoints(cfg);
        debug_assert!(
            !endpoints.is_empty(),
            "a protocol gives at least one endpoint"
        );
        let mut passed = Vec::new();
        for (i, at) in endpoints.iter().enumerate() {
            let attempt = Handshake::dial(at, P::LIMITS, worker)
                .map_err(ErrorOf::<P>::from)
                .and_then(|mut hs| P::handshake(cfg, &mut hs).map(|session| (hs, session)));
            match attempt {
                Ok(taken) => return Ok(taken),
                Err(e) if i + 1 < endpoints.len() && P::try_next(&e) => {
                    passed.push(format!("{}:{}: {e}", at.host, at.port));
                }
                // A server's own answer (its SQLSTATE, say) is kept as it is: the caller may act on
                // it (create a missing database); only "could not get through" is summed up.
                Err(e)
                    if passed.is_empty() || !P::try_next(&e) || e.failure() == Failure::Server =>
                {
                    return Err(e)
                }
                Err(e) => {
                    passed.push(format!("{}:{}: {e}", at.host, at.port));
                    return Err(LinkError::Unavailable(format!(
                        "no server of {} took the connection: {}",
                        endpoints.len(),
                        passed.join("; ")
                    ))
                    .into());
                }
            }
        }
        Err(LinkError::Unavailable("no endpoint to connect to".into()).into())
    }

    /// Gives the link up: queued requests fail, the socket is shut, and the owner's break hook
    /// starts a reconnection.
    pub fn abandon(&self, why: String) {
        self.shared.break_down(why);
    }

    /// What the handshake learned.
    pub fn session(&self) -> &P::Session {
        &self.session
    }

    /// Queues a request and waits up to `patience` for its reply. `encode` appends the
    /// request's bytes; `request` makes its waiting slot from the reply channel. After a
    /// timeout the request stays in the pipeline and its reply, when it comes, is dropped.
    pub fn call<T: Send>(
        &self,
        encode: impl FnOnce(&mut Vec<u8>),
        request: impl FnOnce(Sender<Result<T, ErrorOf<P>>>) -> RequestOf<P>,
        patience: Duration,
    ) -> Result<T, ErrorOf<P>> {
        let (tx, rx) = channel();
        let queued = self.observer.as_ref().map(|_| Instant::now());
        self.shared.submit(encode, request(tx), patience)?;
        // A timed-out wait resumes on may's timer thread: the worker handle brings it home.
        match self.worker.recv_timeout(&rx, patience) {
            Ok(reply) => {
                // Only what the server answered is a round trip; a link that broke under the
                // request is counted as a failure by the client.
                if let (Some(o), Some(queued)) = (&self.observer, queued) {
                    if reply
                        .as_ref()
                        .err()
                        .is_none_or(|e| e.failure() == Failure::Server)
                    {
                        o.answered(queued.elapsed());
                    }
                }
                reply
            }
            Err(RecvTimeoutError::Timeout) => Err(LinkError::Timeout.into()),
            Err(RecvTimeoutError::Disconnected) => {
                Err(LinkError::Unavailable("connection lost before the reply".into()).into())
            }
        }
    }

    /// Queues a request and returns at once; `request` is answered in order like any other.
    /// The server's silence behind it counts towards a stall after `patience`.
    pub fn send_request(
        &self,
        encode: impl FnOnce(&mut Vec<u8>),
        request: RequestOf<P>,
        patience: Duration,
    ) -> Result<(), ErrorOf<P>> {
        self.shared.submit(encode, request, patience)
    }

    /// True once the socket failed, the server closed it, it stalled or it sent bytes the
    /// decoder cannot follow.
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
}

impl<P: Protocol> Drop for Link<P> {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl<P: Protocol> Shared<P> {
    /// Queues a request's bytes and its waiting slot under one lock, so the reader meets replies
    /// in exactly the order their requests reach the socket.
    fn submit(
        &self,
        encode: impl FnOnce(&mut Vec<u8>),
        request: RequestOf<P>,
        patience: Duration,
    ) -> Result<(), ErrorOf<P>> {
        let wake = {
            let mut st = lock(&self.state);
            if let Some(why) = &st.down {
                return Err(LinkError::Unavailable(why.clone()).into());
            }
            if st.closing {
                return Err(LinkError::Unavailable("connection is closing".into()).into());
            }
            if self.in_flight.load(Ordering::Acquire) >= P::LIMITS.max_in_flight {
                return Err(LinkError::Busy.into());
            }
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            let wake = st.out.is_empty();
            encode(&mut st.out);
            st.queue.push_back(Waiting::new(request, patience));
            debug_assert!(st.queue.len() <= P::LIMITS.max_in_flight);
            wake
        };
        if wake {
            self.writer_wake.post();
        }
        Ok(())
    }

    fn pop(&self) -> Option<Waiting<RequestOf<P>>> {
        lock(&self.state).queue.pop_front()
    }

    fn down_reason(&self) -> Option<String> {
        lock(&self.state).down.clone()
    }

    fn completed(&self, n: usize) {
        let before = self.in_flight.fetch_sub(n, Ordering::AcqRel);
        debug_assert!(before >= n, "more requests answered than sent");
    }

    /// Marks the link broken (first reason wins), fails every queued request, and shuts the
    /// socket so the other coroutine wakes up and exits.
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
        for w in queue {
            P::Decoder::fail(w.request, LinkError::Unavailable(why.clone()).into());
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

    /// Lets requests already queued reach the server, then the protocol's farewell, then ends
    /// the link. A deliberate close is no break: the owner is not told.
    fn close(&self) {
        drop(lock(&self.on_break).take());
        {
            let mut st = lock(&self.state);
            if st.down.is_some() || st.closing {
                return;
            }
            st.closing = true;
            P::farewell(&mut st.out);
        }
        self.writer_wake.post();
    }
}

/// Hands the socket to a reader and a writer coroutine on `worker`.
fn start<P: Protocol>(
    hs: Handshake,
    decoder: P::Decoder,
    worker: WorkerId,
    on_break: Option<OnBreak>,
) -> Result<Arc<Shared<P>>, LinkError> {
    let setup = |e: io::Error| LinkError::Unavailable(format!("cannot set up the socket: {e}"));
    let limits = P::LIMITS;
    let reader = worker.own(&hs.stream).map_err(setup)?;
    let writer = worker.own(&hs.stream).map_err(setup)?;
    let socket = hs.stream.inner().try_clone().map_err(setup)?;
    drop(hs.stream);
    reader
        .set_read_timeout(Some(Duration::from_millis(limits.reader_poll_millis)))
        .map_err(setup)?;
    writer
        .set_write_timeout(Some(Duration::from_millis(limits.write_timeout_millis)))
        .map_err(setup)?;
    let shared = Arc::new(Shared::<P> {
        state: Mutex::new(State {
            out: Vec::with_capacity(limits.read_buffer_bytes),
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
        protocol: PhantomData,
    });
    let (r, w) = (shared.clone(), shared.clone());
    let buf = hs.buf;
    spawn_on::<P>(worker, "reader", move || {
        reader_loop(r, reader, buf, decoder)
    })?;
    if let Err(e) = spawn_on::<P>(worker, "writer", move || writer_loop(w, writer)) {
        shared.break_down(e.to_string());
        return Err(e);
    }
    Ok(shared)
}

/// Spawns one of the protocol's coroutines (`role`: reader, writer, reconnect) on `worker`,
/// where it stays (may runs without work stealing).
pub(super) fn spawn_on<P: Protocol>(
    worker: WorkerId,
    role: &str,
    f: impl FnOnce() + Send + 'static,
) -> Result<(), LinkError> {
    let name = format!("{}-{role}", P::NAME);
    worker
        .spawn(&name, P::LIMITS.coroutine_stack_words, f)
        .map_err(|e| LinkError::Unavailable(format!("cannot start the {name} coroutine: {e}")))
}

fn reader_loop<P: Protocol>(
    shared: Arc<Shared<P>>,
    mut stream: TcpStream,
    mut buf: BytesMut,
    mut decoder: P::Decoder,
) {
    let mut last_read = Instant::now();
    let reason: ErrorOf<P> = loop {
        if let Err(e) = drain(&shared, &mut decoder, &mut buf) {
            break e;
        }
        match read_into(&mut stream, &mut buf, &P::LIMITS) {
            Ok(0) => break LinkError::Unavailable("server closed the connection".into()).into(),
            Ok(_) => last_read = Instant::now(),
            Err(e) if is_timeout(&e) => {
                if let Some(done) = idle_check(&shared, &decoder, last_read) {
                    break done.into();
                }
            }
            Err(e) => break LinkError::Unavailable(format!("read failed: {e}")).into(),
        }
    };
    // When the writer broke the link first, its reason is the real one.
    let reason = match shared.down_reason() {
        Some(why) => LinkError::Unavailable(why).into(),
        None => reason,
    };
    let why = match reason.unavailable_reason() {
        Some(why) => why.to_owned(),
        None => reason.to_string(),
    };
    // Broken first, so a caller woken with the error already sees `is_broken`.
    shared.break_down(why);
    if decoder.fail_in_progress(reason) {
        shared.completed(1);
    }
}

/// Answers the requests of every complete reply in `buf`.
fn drain<P: Protocol>(
    shared: &Shared<P>,
    decoder: &mut P::Decoder,
    buf: &mut BytesMut,
) -> Result<(), ErrorOf<P>> {
    let mut completed = 0;
    let decoded = decoder.decode(buf, &mut || shared.pop(), &mut completed);
    shared.completed(completed);
    decoded?;
    if buf.is_empty() && buf.capacity() > P::LIMITS.retained_buffer_bytes {
        *buf = BytesMut::with_capacity(P::LIMITS.read_buffer_bytes);
    }
    Ok(())
}

/// Why the reader should stop while no bytes arrive, if it should: the server has been silent
/// for longer than the oldest outstanding request's patience plus the stall grace (its caller
/// has given up already, and everyone behind it waits on a server that is not answering), or
/// the owner closed the link and every reply is in.
fn idle_check<P: Protocol>(
    shared: &Shared<P>,
    decoder: &P::Decoder,
    last_read: Instant,
) -> Option<LinkError> {
    let st = lock(&shared.state);
    let oldest = decoder
        .in_progress()
        .or_else(|| st.queue.front())
        .map(|w| (w.sent_at, w.patience));
    let Some((sent_at, patience)) = oldest else {
        return st
            .closing
            .then(|| LinkError::Unavailable("connection closed".into()));
    };
    let quiet = last_read.max(sent_at).elapsed();
    let grace = Duration::from_millis(P::LIMITS.stall_grace_millis);
    (quiet > patience + grace).then(|| {
        LinkError::Unavailable(format!(
            "server stalled: no reply for {} ms",
            quiet.as_millis()
        ))
    })
}

/// Sends everything queued since the last write in one write, so concurrent requests share
/// system calls and packets.
fn writer_loop<P: Protocol>(shared: Arc<Shared<P>>, mut stream: TcpStream) {
    let mut batch = Vec::with_capacity(P::LIMITS.read_buffer_bytes);
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
        if batch.capacity() > P::LIMITS.retained_buffer_bytes {
            batch = Vec::with_capacity(P::LIMITS.read_buffer_bytes);
        }
        if closing {
            // The server answers what it got, then sees the end of input and closes; the reader
            // reads up to that close and finishes the teardown.
            let _ = stream.shutdown(Shutdown::Write);
            return;
        }
    }
}
