//! The pipeline's ordering rules, on a toy line protocol against a real loopback server: replies
//! reach their callers in order, a break answers every waiting request exactly once, a decoding
//! error goes to its own request, the bounds hold, and a client heals.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use may::sync::mpsc::{channel, Receiver, Sender};

use super::*;
use crate::placement::WorkerId;

/// The worker the tests' coroutines and links run on.
const HOME: WorkerId = WorkerId::new(0);

/// What a call of the toy protocol can fail with.
#[derive(Debug, Clone, PartialEq)]
enum TestError {
    Link(LinkError),
    Protocol(String),
}

impl From<LinkError> for TestError {
    fn from(e: LinkError) -> TestError {
        TestError::Link(e)
    }
}

impl std::fmt::Display for TestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl LinkFailure for TestError {
    fn failure(&self) -> Failure {
        match self {
            TestError::Link(LinkError::Unavailable(_)) => Failure::Unavailable,
            TestError::Link(LinkError::Busy) => Failure::Busy,
            TestError::Link(LinkError::Timeout) => Failure::Timeout,
            TestError::Protocol(_) => Failure::Protocol,
        }
    }

    fn unavailable_reason(&self) -> Option<&str> {
        match self {
            TestError::Link(LinkError::Unavailable(why)) => Some(why),
            _ => None,
        }
    }
}

type Reply = Result<String, TestError>;

/// Requests and replies are lines; a reply line starting with `!` cannot be followed.
struct Lines;

const MAX_IN_FLIGHT: usize = 8;

impl Protocol for Lines {
    const NAME: &'static str = "lines";
    const LIMITS: Limits = Limits {
        max_in_flight: MAX_IN_FLIGHT,
        read_buffer_bytes: 64,
        read_chunk_bytes: 64,
        retained_buffer_bytes: 256,
        reader_poll_millis: 20,
        write_timeout_millis: 1_000,
        stall_grace_millis: 100,
        keepalive_idle_secs: 30,
        keepalive_interval_secs: 10,
        reconnect_backoff_min_millis: 10,
        reconnect_backoff_max_millis: 40,
        coroutine_stack_words: 16 * 1024,
    };
    type Config = u16;
    type Session = ();
    type Decoder = LineDecoder;

    fn endpoints(port: &u16) -> Vec<Endpoint<'_>> {
        vec![Endpoint {
            host: "127.0.0.1",
            port: *port,
            connect_timeout: Duration::from_secs(2),
        }]
    }

    fn handshake(_: &u16, hs: &mut Handshake) -> Result<(), TestError> {
        hs.send(b"hello\n")?;
        while !hs.buf.contains(&b'\n') {
            hs.fill()?;
        }
        let line = hs
            .buf
            .split_to(hs.buf.iter().position(|&b| b == b'\n').unwrap() + 1);
        match &line[..] {
            b"hello\n" => Ok(()),
            other => Err(TestError::Protocol(format!("greeting {other:?}"))),
        }
    }

    fn farewell(out: &mut Vec<u8>) {
        out.extend_from_slice(b"bye\n");
    }
}

#[derive(Default)]
struct LineDecoder {
    blamed: Option<Waiting<Sender<Reply>>>,
}

impl Decoder for LineDecoder {
    type Request = Sender<Reply>;
    type Error = TestError;

    fn fail(request: Sender<Reply>, e: TestError) {
        drop(request.send(Err(e)));
    }

    fn decode(
        &mut self,
        buf: &mut BytesMut,
        next: &mut dyn FnMut() -> Option<Waiting<Sender<Reply>>>,
        completed: &mut usize,
    ) -> Result<(), TestError> {
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.advance(end + 1);
            if line.starts_with('!') {
                self.blamed = next();
                return Err(TestError::Protocol(line));
            }
            let w = next().ok_or_else(|| TestError::Protocol("unasked".into()))?;
            drop(w.request.send(Ok(line)));
            *completed += 1;
        }
        Ok(())
    }

    fn in_progress(&self) -> Option<&Waiting<Sender<Reply>>> {
        self.blamed.as_ref()
    }

    fn fail_in_progress(&mut self, e: TestError) -> bool {
        match self.blamed.take() {
            Some(w) => {
                drop(w.request.send(Err(e)));
                true
            }
            None => false,
        }
    }
}

/// A loopback server that greets each connection, then hands it to `serve` with the lines that
/// follow (one thread a connection). Returns its port.
fn server(serve: impl Fn(usize, Conn) + Send + Sync + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let serve = Arc::new(serve);
    thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { return };
            let serve = serve.clone();
            thread::spawn(move || {
                let mut conn = Conn {
                    reader: BufReader::new(stream.try_clone().unwrap()),
                    writer: stream,
                };
                if conn.line().as_deref() == Some("hello") {
                    conn.reply("hello");
                    serve(n, conn);
                }
            });
        }
    });
    port
}

struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end().to_owned()),
        }
    }

    fn reply(&mut self, line: &str) {
        let _ = self.writer.write_all(format!("{line}\n").as_bytes());
    }
}

fn echo(_: usize, mut conn: Conn) {
    while let Some(line) = conn.line() {
        conn.reply(&line);
    }
}

/// Runs `f` in a coroutine of worker 0 and waits for it.
fn coroutine<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let builder = may::coroutine::Builder::new().id(0);
    // SAFETY: the closure owns everything it uses.
    unsafe { builder.spawn(f) }.unwrap().join().unwrap()
}

fn line(text: &str) -> impl FnOnce(&mut Vec<u8>) + '_ {
    move |out| {
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
    }
}

/// Queues `texts` in this order (without waiting) and returns their reply channels.
fn queue(link: &Link<Lines>, texts: &[&str]) -> Vec<Receiver<Reply>> {
    let patience = Duration::from_secs(5);
    texts
        .iter()
        .map(|t| {
            let (tx, rx) = channel();
            link.send_request(line(t), tx, patience).unwrap();
            rx
        })
        .collect()
}

/// A break hook, and how many times it ran.
fn counting_hook() -> (Arc<AtomicUsize>, OnBreak) {
    let breaks = Arc::new(AtomicUsize::new(0));
    let counted = breaks.clone();
    let hook: OnBreak = Box::new(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    (breaks, hook)
}

fn is_unavailable(r: &Reply) -> bool {
    matches!(r, Err(TestError::Link(LinkError::Unavailable(_))))
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if done() {
            return true;
        }
        may::coroutine::sleep(Duration::from_millis(5));
    }
    done()
}

#[test]
fn replies_reach_their_callers_in_order() {
    let port = server(echo);
    coroutine(move || {
        let link = Link::<Lines>::open(&port, HOME, None, None).unwrap();
        let handles: Vec<_> = (0..64)
            .map(|i| {
                let link = link.clone();
                let builder = may::coroutine::Builder::new().id(0);
                // SAFETY: the closure owns everything it uses.
                unsafe {
                    builder.spawn(move || {
                        let text = format!("request {i}");
                        let r = link.call(line(&text), |tx| tx, Duration::from_secs(5));
                        (text, r)
                    })
                }
                .unwrap()
            })
            .collect();
        let mut answered = 0;
        for h in handles {
            let (text, r) = h.join().unwrap();
            match r {
                Ok(reply) => {
                    assert_eq!(reply, text);
                    answered += 1;
                }
                // Past `MAX_IN_FLIGHT` at once the caller is told at once, never answered wrongly.
                Err(e) => assert_eq!(e, TestError::Link(LinkError::Busy)),
            }
        }
        assert!(
            answered >= MAX_IN_FLIGHT,
            "the first {MAX_IN_FLIGHT} always fit"
        );
        assert_eq!(link.in_flight(), 0);
        assert!(!link.is_broken());
    });
}

#[test]
fn a_break_answers_every_waiting_request_once() {
    // Answers two requests, then closes with three more unanswered.
    let port = server(|_, mut conn| {
        for _ in 0..2 {
            let l = conn.line().unwrap();
            conn.reply(&l);
        }
        for _ in 0..3 {
            conn.line();
        }
    });
    coroutine(move || {
        let (breaks, hook) = counting_hook();
        let link = Link::<Lines>::open(&port, HOME, Some(hook), None).unwrap();
        let rx = queue(&link, &["a", "b", "c", "d", "e"]);
        let replies: Vec<Reply> = rx.iter().map(|rx| rx.recv().unwrap()).collect();
        assert_eq!(replies[0], Ok("a".into()));
        assert_eq!(replies[1], Ok("b".into()));
        assert!(replies[2..].iter().all(is_unavailable), "{replies:?}");
        assert!(link.is_broken());
        assert_eq!(link.in_flight(), 0);
        // Each channel got exactly one answer.
        assert!(rx.iter().all(|rx| rx.try_recv().is_err()));
        assert_eq!(breaks.load(Ordering::SeqCst), 1);
        let late = link.call(line("f"), |tx| tx, Duration::from_secs(1));
        assert!(is_unavailable(&late));
    });
}

#[test]
fn a_reply_that_cannot_be_followed_fails_its_request_and_breaks_the_link() {
    let port = server(|_, mut conn| {
        let l = conn.line().unwrap();
        conn.reply(&l);
        conn.line();
        conn.reply("!garbled");
        while conn.line().is_some() {}
    });
    coroutine(move || {
        let link = Link::<Lines>::open(&port, HOME, None, None).unwrap();
        let rx = queue(&link, &["a", "b", "c"]);
        let replies: Vec<Reply> = rx.iter().map(|rx| rx.recv().unwrap()).collect();
        assert_eq!(replies[0], Ok("a".into()));
        assert_eq!(replies[1], Err(TestError::Protocol("!garbled".into())));
        assert!(is_unavailable(&replies[2]), "{replies:?}");
        assert_eq!(link.in_flight(), 0);
        assert!(link.is_broken());
    });
}

#[test]
fn busy_at_max_in_flight_and_not_before() {
    let port = server(|_, mut conn| while conn.line().is_some() {});
    coroutine(move || {
        let link = Link::<Lines>::open(&port, HOME, None, None).unwrap();
        let names: Vec<String> = (0..MAX_IN_FLIGHT).map(|i| i.to_string()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let _rx = queue(&link, &names);
        assert_eq!(link.in_flight(), MAX_IN_FLIGHT);
        let (tx, _rx) = channel();
        let past = link.send_request(line("one more"), tx, Duration::from_secs(5));
        assert_eq!(past, Err(TestError::Link(LinkError::Busy)));
    });
}

#[test]
fn a_silent_server_times_the_caller_out_then_breaks_the_link() {
    let port = server(|_, mut conn| while conn.line().is_some() {});
    coroutine(move || {
        let link = Link::<Lines>::open(&port, HOME, None, None).unwrap();
        let patience = Duration::from_millis(30);
        let r = link.call(line("anyone?"), |tx| tx, patience);
        assert_eq!(r, Err(TestError::Link(LinkError::Timeout)));
        assert!(!link.is_broken(), "within the grace the link stands");
        let grace = Duration::from_millis(Lines::LIMITS.stall_grace_millis);
        assert!(wait_until(grace * 10, || link.is_broken()));
        assert_eq!(link.in_flight(), 0);
    });
}

#[test]
fn closing_sends_what_is_queued_then_the_farewell_and_is_no_break() {
    let (seen_tx, seen_rx) = std_mpsc::channel();
    let port = server(move |_, mut conn| {
        let mut seen = Vec::new();
        while let Some(l) = conn.line() {
            seen.push(l);
        }
        let _ = seen_tx.send(seen);
    });
    coroutine(move || {
        let (breaks, hook) = counting_hook();
        let link = Link::<Lines>::open(&port, HOME, Some(hook), None).unwrap();
        let _rx = queue(&link, &["x", "y"]);
        drop(link);
        assert_eq!(breaks.load(Ordering::SeqCst), 0);
    });
    let seen = seen_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(seen, ["x", "y", "bye"]);
}

#[derive(Default)]
struct Counts {
    answered: AtomicUsize,
    failed: AtomicUsize,
    reconnected: AtomicUsize,
}

impl Observer for Counts {
    fn answered(&self, _: Duration) {
        self.answered.fetch_add(1, Ordering::SeqCst);
    }
    fn failed(&self, _: Failure) {
        self.failed.fetch_add(1, Ordering::SeqCst);
    }
    fn reconnected(&self) {
        self.reconnected.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_client_heals_after_its_link_breaks() {
    // The first connection answers one request and hangs up; later ones echo.
    let port = server(|n, mut conn| {
        if n == 0 {
            let l = conn.line().unwrap();
            conn.reply(&l);
        } else {
            echo(n, conn);
        }
    });
    coroutine(move || {
        let counts = Arc::new(Counts::default());
        let client =
            Client::<Lines>::start_connected(port, HOME, Some(counts.clone() as Arc<dyn Observer>))
                .unwrap();
        let ask = |text: &str| client.with(|l| l.call(line(text), |tx| tx, Duration::from_secs(2)));
        assert_eq!(ask("one"), Ok("one".into()));
        assert_eq!(client.generation(), 1);
        assert!(wait_until(Duration::from_secs(5), || client.generation() == 2));
        assert_eq!(ask("two"), Ok("two".into()));
        assert_eq!(counts.answered.load(Ordering::SeqCst), 2);
        assert_eq!(counts.reconnected.load(Ordering::SeqCst), 1);
        assert_eq!(counts.failed.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn a_client_without_a_server_fails_at_once_and_counts_it() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    coroutine(move || {
        let counts = Arc::new(Counts::default());
        let client = Client::<Lines>::start(port, HOME, Some(counts.clone() as Arc<dyn Observer>));
        let started = Instant::now();
        let r = client.with(|l| l.call(line("x"), |tx| tx, Duration::from_secs(5)));
        assert!(is_unavailable(&r), "{r:?}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "no call waits for a reconnection"
        );
        assert!(!client.is_up());
        assert_eq!(counts.failed.load(Ordering::SeqCst), 1);
        assert_eq!(client.generation(), 0);
    });
}
